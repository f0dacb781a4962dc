import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { Busboy, type BusboyInstance } from '@fastify/busboy';
import { ApiError, invalidRequest } from '@spot/contract';
import { UploadSpool } from './upload-spool';

/** Bytes of an upload's file kept in memory before the rest is spooled to disk. */
export const SPOOL_MEMORY_BYTES = 256 * 1024;
/** Bytes of one text field (`prompt` is the longest OpenAI takes: 224 tokens). */
export const FIELD_BYTES_MAX = 64 * 1024;
const FIELDS_MAX = 100;

/** The fields the gateway writes itself in the engine's form: the engine's model name, the stream flags. */
const OWN_FIELDS = new Set(['model', 'stream', 'stream_include_usage', 'stream_continuous_usage_stats']);

/** vLLM's (pydantic's) true spellings of a form boolean. */
function formTrue(v: string): boolean {
  const l = v.trim().toLowerCase();
  return l === 'true' || l === '1' || l === 'yes' || l === 'on';
}

/** The multipart boundary of a `multipart/form-data` content type, or undefined when it is not one. */
export function formBoundary(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const [media, ...params] = contentType.split(';');
  if (media.trim().toLowerCase() !== 'multipart/form-data') return undefined;
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    const v = p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    return v === '' ? undefined : v;
  }
  return undefined;
}

/** The form of an audio request as the gateway reads it (text fields in memory, the file in a spool). */
export interface AudioUpload {
  /** Text fields before the file, in the client's order. */
  readonly before: ReadonlyArray<readonly [string, string]>;
  /** Text fields after the file (known once the form has ended: see {@link ended}). */
  readonly after: ReadonlyArray<readonly [string, string]>;
  readonly model: string | undefined;
  readonly stream: boolean;
  /** The `file` part: its name and type as the client sent them; null before it began (or when there is none). */
  readonly file: { readonly filename: string; readonly contentType: string } | null;
  readonly spool: UploadSpool;
  /** Resolves when the form has ended and every byte of the file is readable; rejects with the upload's error. */
  readonly ended: Promise<void>;
  /** Bytes of the request body received so far. */
  readonly bodyBytes: number;
}

export interface AudioFormOptions {
  readonly boundary: string;
  /** GATEWAY_AUDIO_BODY_LIMIT. */
  readonly limit: number;
  readonly spoolDir: string;
  /** Wait for the whole form before routing (while some body is poisoned, say: its fingerprint needs the file). */
  readonly wholeForm: boolean;
}

/** The 413 of an upload past GATEWAY_AUDIO_BODY_LIMIT, in OpenAI's words. */
export function uploadTooLarge(limit: number): ApiError {
  return new ApiError(413, 'invalid_request_error', `Maximum content size limit (${limit}) exceeded.`, 'request_too_large');
}

/**
 * Reads a multipart/form-data audio request as it arrives (busboy): small text fields in memory, the `file` part
 * streamed into an {@link UploadSpool} (memory, then an unlinked temp file), so the file is never held in memory
 * and can be replayed for a retry. Calls `onReady` once the gateway can route the request: at the file's first
 * byte when `model` and `stream` came before it (the order Python's SDK and `curl -F ... -F file=@...` send),
 * otherwise (the file first, as the Node SDK sends `{ file, model }`) when the form has ended. `onError` gets
 * the client's 4xx (malformed form, too large, missing file) at most once, before or after `onReady`.
 */
export class AudioFormReader implements AudioUpload {
  readonly before: Array<readonly [string, string]> = [];
  readonly after: Array<readonly [string, string]> = [];
  model: string | undefined = undefined;
  stream = false;
  file: { filename: string; contentType: string } | null = null;
  readonly spool: UploadSpool;
  readonly ended: Promise<void>;
  bodyBytes = 0;
  private streamSeen = false;
  private ready = false;
  private failed = false;
  private readonly busboy: BusboyInstance;
  private resolveEnded!: () => void;
  private rejectEnded!: (err: Error) => void;
  private formDone = false;
  private fileDone = true;

  constructor(
    private readonly req: IncomingMessage,
    private readonly options: AudioFormOptions,
    private readonly onReady: () => void,
    private readonly onError: (err: ApiError) => void,
  ) {
    this.spool = new UploadSpool(options.spoolDir, SPOOL_MEMORY_BYTES);
    this.ended = new Promise((resolve, reject) => {
      this.resolveEnded = resolve;
      this.rejectEnded = reject;
    });
    // a reader may attach later (or never): an upload that breaks is answered through onError, not as unhandled
    this.ended.catch(() => undefined);
    this.busboy = Busboy({
      headers: { 'content-type': `multipart/form-data; boundary=${options.boundary}` },
      limits: { fieldSize: FIELD_BYTES_MAX, fields: FIELDS_MAX, files: 1, parts: FIELDS_MAX + 1, fieldNameSize: 200 },
    });
    this.busboy.on('field', (name, value, _nameTruncated, valueTruncated) => this.onField(name, value, valueTruncated));
    this.busboy.on('file', (name, stream, filename, _encoding, mimeType) => this.onFile(name, stream, filename, mimeType));
    this.busboy.on('filesLimit', () => this.fail(invalidRequest(`Only one file may be uploaded, as 'file'.`, 'file')));
    this.busboy.on('fieldsLimit', () => this.fail(invalidRequest(`Too many form fields (at most ${FIELDS_MAX}).`)));
    this.busboy.on('partsLimit', () => this.fail(invalidRequest(`Too many form fields (at most ${FIELDS_MAX}).`)));
    this.busboy.on('error', (err: unknown) => this.fail(malformed(err)));
    this.busboy.on('finish', () => {
      this.formDone = true;
      this.maybeEnded();
    });
    req.on('data', this.countBytes);
    req.on('error', this.onRequestError);
    req.on('close', () => {
      if (!req.complete) this.onRequestError(new Error('the client closed the connection mid-upload'));
    });
    req.pipe(this.busboy);
  }

  /** Stops reading the form (the request is answered otherwise): the spool is failed with `err`. */
  abandon(err: Error): void {
    this.failed = true;
    this.req.unpipe(this.busboy);
    this.req.off('data', this.countBytes);
    this.spool.fail(err);
    this.rejectEnded(err);
  }

  private readonly countBytes = (chunk: Buffer): void => {
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.options.limit) this.fail(uploadTooLarge(this.options.limit));
  };

  private readonly onRequestError = (err: Error): void => {
    // the client went away mid-upload: an engine reading the file must not see a clean end
    if (this.failed) return;
    this.failed = true;
    this.spool.fail(err);
    this.rejectEnded(err);
  };

  private onField(name: string, value: string, truncated: boolean): void {
    if (this.failed) return;
    if (truncated) return this.fail(invalidRequest(`The form field '${name}' is too long (at most ${FIELD_BYTES_MAX} bytes).`, name));
    if (this.file !== null) {
      // once routed (see onFile), `model` and `stream` are decided: a repeat after the file is not read
      if (!this.ready) this.decide(name, value);
      this.after.push([name, value]);
      return;
    }
    this.decide(name, value);
    this.before.push([name, value]);
  }

  /** Reads the fields routing depends on (the first of each). */
  private decide(name: string, value: string): void {
    if (name === 'model' && this.model === undefined) this.model = value;
    else if (name === 'stream' && !this.streamSeen) {
      this.streamSeen = true;
      this.stream = formTrue(value);
    }
  }

  private onFile(name: string, stream: Readable, filename: string, mimeType: string): void {
    if (this.failed || name !== 'file' || this.file !== null) {
      stream.resume();
      if (!this.failed) this.fail(invalidRequest(name === 'file' ? `Only one file may be uploaded, as 'file'.` : `Unexpected file field '${name}': the audio goes in 'file'.`, name));
      return;
    }
    this.file = { filename: filename || 'audio', contentType: mimeType || 'application/octet-stream' };
    this.fileDone = false;
    const spool = this.spool;
    stream.pipe(
      new Writable({
        highWaterMark: 0,
        write(chunk: Buffer, _encoding, done) {
          const appended = spool.append(chunk);
          if (appended === undefined) done();
          else appended.then(() => done(), done);
        },
        final: (done) => {
          this.fileDone = true;
          this.maybeEnded();
          done();
        },
      }),
    );
    if (this.model !== undefined && this.streamSeen && !this.options.wholeForm) this.becomeReady();
  }

  private maybeEnded(): void {
    if (this.failed || !this.formDone || !this.fileDone) return;
    if (this.file === null) return this.fail(invalidRequest(`Missing required parameter: 'file'.`, 'file', 'missing_required_parameter'));
    this.req.off('data', this.countBytes);
    this.spool.end();
    this.resolveEnded();
    this.becomeReady();
  }

  private becomeReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.onReady();
  }

  private fail(err: ApiError): void {
    if (this.failed) return;
    this.abandon(err);
    this.onError(err);
  }
}

function malformed(err: unknown): ApiError {
  const detail = err instanceof Error ? err.message : String(err);
  return invalidRequest(`We could not parse the multipart form of your request (${detail}).`);
}

/** A header value as a quoted-string of Content-Disposition: quotes, backslashes and controls percent-escaped. */
function quoted(v: string): string {
  return v.replace(/["\\\u0000-\u001f\u007f]/g, (c) => encodeURIComponent(c));
}

function part(boundary: string, name: string, value: string): string {
  return `--${boundary}\r\nContent-Disposition: form-data; name="${quoted(name)}"\r\n\r\n${value}\r\n`;
}

/**
 * The form sent to the engine, streamed: the client's fields with the engine's model name (and, for a stream,
 * `stream_include_usage`, so that usage is always metered), then the file as the spool yields it (while it still
 * arrives, or replayed from byte 0 for a retry), then the fields that came after the file. Each call is a fresh body.
 */
export function engineForm(upload: AudioUpload, upstreamModel: string): { contentType: string; body: Readable } {
  const boundary = `spot-${randomBytes(16).toString('hex')}`;
  const file = upload.file;
  let head = part(boundary, 'model', upstreamModel);
  if (upload.stream) head += part(boundary, 'stream', 'true') + part(boundary, 'stream_include_usage', 'true');
  for (const [name, value] of upload.before) if (!OWN_FIELDS.has(name)) head += part(boundary, name, value);
  head += `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quoted(file?.filename ?? 'audio')}"\r\nContent-Type: ${
    file?.contentType.replace(/[\r\n]/g, '') ?? 'application/octet-stream'
  }\r\n\r\n`;
  async function* bytes(): AsyncGenerator<Buffer> {
    yield Buffer.from(head);
    for await (const chunk of upload.spool.chunks()) yield chunk;
    await upload.ended;
    let tail = '\r\n';
    for (const [name, value] of upload.after) if (!OWN_FIELDS.has(name)) tail += part(boundary, name, value);
    yield Buffer.from(`${tail}--${boundary}--\r\n`);
  }
  return { contentType: `multipart/form-data; boundary=${boundary}`, body: Readable.from(bytes(), { objectMode: false }) };
}
