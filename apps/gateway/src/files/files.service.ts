import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Busboy, type BusboyFileStream } from '@fastify/busboy';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError, invalidRequest, objectId } from '@spot/contract';
import { FilesRepository, type FileRow } from '@spot/db';

/** The purposes a client may upload with (OpenAI's). */
const PURPOSES = new Set(['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals']);
/** Bytes per file_chunks row. */
const CHUNK_BYTES = 1024 * 1024;

/** A file as OpenAI's API shows it. */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: 'processed';
  expires_at: number | null;
  status_details: null;
}

export function toFileObject(f: FileRow): FileObject {
  return {
    id: f.id,
    object: 'file',
    bytes: Number(f.bytes),
    created_at: Math.floor(f.createdAt.getTime() / 1000),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed',
    expires_at: f.expiresAt === null ? null : Math.floor(f.expiresAt.getTime() / 1000),
    status_details: null,
  };
}

/** 404 in OpenAI's words for a file this org does not have (unknown, another org's, deleted). */
export function fileNotFound(id: string): ApiError {
  return new ApiError(404, 'invalid_request_error', `No such File object: ${id}`, null, 'id');
}

/**
 * The Files API over Postgres: an upload is parsed as a stream (multipart by @fastify/busboy) and written a
 * chunk at a time, the request paused while a chunk is written, so a 200 MB file holds about a MiB of memory; a
 * download reads one chunk at a time as the client takes them. Every lookup is by org.
 */
@Injectable()
export class FilesService {
  private readonly logger = new Logger('Files');
  private readonly maxBytes: number;

  constructor(
    private readonly files: FilesRepository,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.maxBytes = config.FILES_MAX_BYTES;
  }

  /** The most bytes an upload's body may declare (the file plus room for the multipart framing and fields). */
  get maxBodyBytes(): number {
    return this.maxBytes + 64 * 1024;
  }

  /**
   * Stores the multipart upload `req` carries (fields `file` and `purpose`) for `orgId`; resolves with the file
   * once its last byte is in Postgres. A failed or abandoned upload leaves nothing visible (its rows are deleted).
   * @throws the 400/413 to answer.
   */
  async upload(orgId: string, req: IncomingMessage): Promise<FileObject> {
    const type = req.headers['content-type'];
    if (type === undefined || !/^multipart\/form-data/i.test(type)) {
      throw invalidRequest("Invalid Content-Type: expected multipart/form-data with the fields 'file' and 'purpose'.");
    }
    let busboy: InstanceType<typeof Busboy>;
    try {
      busboy = new Busboy({ headers: { ...req.headers, 'content-type': type }, limits: { files: 1, fileSize: this.maxBytes, fields: 8, fieldSize: 4096 } });
    } catch (err) {
      throw invalidRequest(`Invalid multipart body: ${(err as Error).message}`);
    }
    const id = objectId('file-');
    let purpose: string | null = null;
    let stored: Promise<{ bytes: number; filename: string }> | null = null;
    let created = false;
    const done = new Promise<void>((resolve, reject) => {
      busboy.on('field', (name: string, value: string) => {
        if (name === 'purpose') purpose = value;
      });
      busboy.on('file', (field: string, stream: BusboyFileStream, filename: string) => {
        if (field !== 'file' || stored !== null) {
          stream.resume();
          return;
        }
        created = true;
        stored = this.store(id, orgId, filename || 'upload', stream);
        // a failed write stops the parse at once (the rest of the body is not read)
        stored.catch((err: unknown) => reject(err as Error));
      });
      busboy.on('finish', () => resolve());
      busboy.on('error', (err: Error) => reject(invalidRequest(`Invalid multipart body: ${err.message}`)));
      req.on('aborted', () => reject(new Error('client aborted the upload')));
      req.on('error', (err) => reject(err));
    });
    req.pipe(busboy);
    try {
      await done;
      if (stored === null) throw invalidRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
      const { bytes } = await (stored as Promise<{ bytes: number; filename: string }>);
      const p = purpose as string | null;
      if (p === null) throw invalidRequest("Missing required parameter: 'purpose'.", 'purpose', 'missing_required_parameter');
      if (!PURPOSES.has(p)) {
        throw invalidRequest(`Invalid value for 'purpose': '${p}'. Supported values are: ${[...PURPOSES].map((x) => `'${x}'`).join(', ')}.`, 'purpose', 'invalid_value');
      }
      return toFileObject(await this.files.markProcessed(id, bytes, p));
    } catch (err) {
      req.unpipe(busboy);
      if (created) {
        // wait for the writer to stop before deleting what it wrote
        await (stored as Promise<unknown> | null)?.catch(() => undefined);
        await this.files.deleteById(id).catch((e: unknown) => this.logger.warn(`could not delete the failed upload ${id}: ${String(e)}`));
      }
      throw err;
    }
  }

  /** Writes a file stream as chunk rows, one at a time (the stream is paused while a row is written). */
  private async store(id: string, orgId: string, filename: string, stream: BusboyFileStream): Promise<{ bytes: number; filename: string }> {
    await this.files.createUploading(id, orgId, filename.slice(0, 255), 'pending');
    let seq = 0;
    let bytes = 0;
    let parts: Buffer[] = [];
    let held = 0;
    const flush = async () => {
      const data = new Uint8Array(Buffer.concat(parts, held));
      parts = [];
      held = 0;
      await this.files.appendChunk(id, seq++, data);
    };
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      parts.push(chunk);
      held += chunk.length;
      bytes += chunk.length;
      if (held >= CHUNK_BYTES) await flush();
    }
    if (stream.truncated) {
      throw new ApiError(413, 'invalid_request_error', `File too large: the limit is ${this.maxBytes} bytes.`, 'file_too_large', 'file');
    }
    if (held > 0) await flush();
    return { bytes, filename };
  }

  async retrieve(orgId: string, id: string): Promise<FileObject> {
    return toFileObject(await this.row(orgId, id));
  }

  async list(orgId: string, q: { purpose?: string; limit?: string; after?: string; order?: string }) {
    const limit = q.limit === undefined ? 10_000 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw invalidRequest(`Invalid 'limit': expected an integer between 1 and 10000.`, 'limit', 'integer_out_of_range');
    const order = q.order ?? 'desc';
    if (order !== 'asc' && order !== 'desc') throw invalidRequest(`Invalid 'order': expected 'asc' or 'desc'.`, 'order', 'invalid_value');
    const rows = await this.files.list({ orgId, purpose: q.purpose, order, after: q.after, limit });
    const data = rows.slice(0, limit).map(toFileObject);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: rows.length > limit };
  }

  async delete(orgId: string, id: string): Promise<{ id: string; object: 'file'; deleted: true }> {
    if (!(await this.files.delete(orgId, id))) throw fileNotFound(id);
    return { id, object: 'file', deleted: true };
  }

  /** The file's bytes as a stream that reads one chunk row at a time, as the client takes them. */
  async content(orgId: string, id: string): Promise<{ file: FileObject; body: Readable }> {
    const file = await this.row(orgId, id);
    const files = this.files;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let seq = 0; ; seq++) {
        const data = await files.chunk(id, seq);
        if (data === null) return;
        yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      }
    }
    return { file: toFileObject(file), body: Readable.from(chunks(), { objectMode: false }) };
  }

  private async row(orgId: string, id: string): Promise<FileRow> {
    const row = await this.files.find(orgId, id);
    if (row === null) throw fileNotFound(id);
    return row;
  }
}
