import type { RequestTrace } from '../tracing/request-trace';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError, serverOverloaded } from '@spot/contract';
import type { AuthedKey } from '../auth/authed-key';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { BodyBudget } from '../http/body-budget';
import { PoisonGuard } from '../routing/poison-guard';
import type { AudioKind } from './audio-adapter';
import { AudioFormReader, FIELD_BYTES_MAX, formBoundary, SPOOL_MEMORY_BYTES, uploadTooLarge } from './audio-form';
import { ProxyService } from './proxy.service';

const NOT_MULTIPART = new ApiError(
  415,
  'invalid_request_error',
  'Unsupported Content-Type: send the audio as multipart/form-data (a `file` part and a `model` field).',
  'unsupported_media_type',
);

/** Whether `kind` is one of the speech-to-text operations (multipart uploads, not JSON). */
export function isAudioKind(kind: string): kind is AudioKind {
  return kind === 'transcriptions' || kind === 'translations';
}

/**
 * The body of POST /v1/audio/transcriptions and /v1/audio/translations, once the key is verified from the headers:
 * a multipart/form-data upload (415 otherwise) of at most GATEWAY_AUDIO_BODY_LIMIT bytes (413, at once when the
 * content-length says so, else when the bytes pass it), read as it arrives ({@link AudioFormReader}): the text fields
 * in memory, the file spooled, never held. What the request may hold in memory (its fields and the spool's memory
 * part) is reserved from the in-flight body budget (503 when it does not fit). The request goes to the proxy as soon
 * as it can be routed; the spool is freed when the response is done.
 */
@Injectable()
export class AudioUploads {
  private readonly limit: number;
  private readonly spoolDir: string;

  constructor(
    private readonly proxy: ProxyService,
    private readonly budget: BodyBudget,
    private readonly errors: OpenAIExceptionFilter,
    private readonly poison: PoisonGuard,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.limit = config.GATEWAY_AUDIO_BODY_LIMIT;
    this.spoolDir = config.GATEWAY_AUDIO_SPOOL_DIR ?? tmpdir();
  }

  read(kind: AudioKind, key: AuthedKey, id: string, req: IncomingMessage, res: ServerResponse, startedAt: number, trace: RequestTrace | null): void {
    if (req.destroyed) return; // gone while its key was looked up
    const refuse = (err: unknown) => {
      this.errors.sendBeforeBody(err, req, res, id, kind);
      // the form reader may have paused the request: the rest is read and dropped (see answerEarly)
      if (!req.complete) req.resume();
    };
    const boundary = formBoundary(req.headers['content-type']);
    if (boundary === undefined) return refuse(NOT_MULTIPART);
    const declared = req.headers['content-length'] === undefined ? -1 : Number(req.headers['content-length']);
    if (declared > this.limit) return refuse(uploadTooLarge(this.limit));
    const held = Math.min(declared < 0 ? Infinity : declared, SPOOL_MEMORY_BYTES + FIELD_BYTES_MAX);
    if (!this.budget.reserve(held)) return refuse(serverOverloaded());
    let sent = false;
    let form: AudioFormReader | null = null;
    res.once('close', () => {
      this.budget.release(held);
      form?.spool.release();
    });
    const dispatch = () => {
      sent = true;
      // what the budget reserves for: the whole upload's bytes, or its limit while a chunked one is still arriving
      const bytes = declared >= 0 ? declared : req.complete ? form!.bodyBytes : this.limit;
      this.proxy.handle(kind, id, key, form, bytes, res, startedAt, trace).catch((err: unknown) => {
        form?.abandon(err instanceof Error ? err : new Error(String(err)));
        refuse(err);
      });
    };
    form = new AudioFormReader(
      req,
      { boundary, limit: this.limit, spoolDir: this.spoolDir, wholeForm: this.poison.active },
      dispatch,
      // once sent, the engine's body fails with the error and the exchange answers it (see ProxyExchange.handleError)
      (err) => {
        if (!sent) refuse(err);
        else if (!req.complete) drain(req, 2 * this.limit);
      },
    );
  }
}

/**
 * Reads and drops the rest of an upload refused while it streamed to an engine (the exchange answers it), up to
 * `bytes`; past them the connection is half-closed and destroyed 2 s later, so that a client still writing reads its
 * answer rather than a reset (as answerEarly does).
 */
function drain(req: IncomingMessage, bytes: number): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen <= bytes || req.isPaused()) return;
    req.pause();
    req.socket.pause();
    req.socket.end();
    setTimeout(() => req.socket.destroy(), 2000).unref();
  });
  req.resume();
}
