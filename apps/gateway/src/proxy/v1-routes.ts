import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError, serverOverloaded } from '@spot/contract';
import { Telemetry } from '@spot/telemetry';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import type { AuthedKey } from '../auth/authed-key';
import { anthropicCredential, bearerCredential } from '../auth/credential';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { bodyError } from '../errors/to-api-error';
import { BodyBudget } from '../http/body-budget';
import { ShutdownCoordinator } from '../lifecycle/shutdown-coordinator';
import { FastPath } from './fast-path';
import { ModelsService } from './models.service';
import { ProtocolAdapters } from './adapters';
import { AudioUploads, isAudioKind } from './audio-routes';
import { PROXIED_PATHS, type ProxyKind } from './openai-request';
import { ProxyService } from './proxy.service';
import { newRequestId } from './request-id';
import { type RequestTrace, RequestTracer } from '../tracing/request-trace';

const CLOSING = new ApiError(503, 'server_error', 'The server is restarting. Please retry.', 'server_shutting_down', null, {
  'retry-after': '1',
  connection: 'close',
});
const JSON_TYPE = /^application\/(?:[\w.+-]*\+)?json\s*(?:;|$)/i;

/**
 * Registers the OpenAI routes. They are the hot path: Nest's per-request pipeline (guards, interceptors,
 * pipes, serialisation) would run for every token stream and buys them nothing, so they call the singleton
 * services themselves. The three proxied POSTs are served by {@link FastPath} ahead of Fastify (reading
 * and parsing the body here, with the same limits and errors); the same routes also exist on Fastify for
 * the URLs the fast path does not match, and hand those over before the body is read. Every error leaves
 * through the one envelope filter.
 */
@Injectable()
export class V1Routes implements OnModuleInit {
  /** Null while tracing is off: a request then pays one null check for it. */
  private readonly tracer: RequestTracer | null;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
    private readonly models: ModelsService,
    private readonly auth: ApiKeyAuthService,
    private readonly errors: OpenAIExceptionFilter,
    private readonly shutdown: ShutdownCoordinator,
    private readonly fastPath: FastPath,
    private readonly budget: BodyBudget,
    private readonly adapters: ProtocolAdapters,
    private readonly audio: AudioUploads,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    telemetry: Telemetry,
  ) {
    this.tracer = telemetry.tracing === null ? null : new RequestTracer(telemetry.tracing);
  }

  onModuleInit(): void {
    const app = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const handlerFor = (route: string) => (err: unknown, request: FastifyRequest, reply: FastifyReply) =>
      this.errors.send(err, request, reply, route);
    app.addHook('onRequest', (request, reply, done) => {
      reply.header('x-request-id', request.id);
      // a request on a kept-alive connection during the drain: send it elsewhere
      if (this.shutdown.closing) return done(CLOSING);
      const raw = request.raw;
      if (request.is404 && (raw.headers['content-length'] !== undefined || raw.headers['transfer-encoding'] !== undefined)) {
        // no route takes this body: answer without reading it into memory
        reply.hijack();
        this.errors.sendBeforeBody({ statusCode: 404 }, raw, reply.raw, request.id, 'other');
        return;
      }
      done();
    });
    for (const [path, kind] of Object.entries(PROXIED_PATHS)) {
      // the URLs the fast path does not take (a percent-escaped path, say): handed to it before Fastify reads a byte of the body
      app.post(path, {
        errorHandler: handlerFor(kind),
        // done is never called: the request is the fast path's from here
        onRequest: (request, reply, _done) => {
          reply.hijack();
          this.serve(kind, request.raw, reply.raw, request.id);
        },
      }, handedOver);
    }
    this.fastPath.install((kind, req, res) => this.serve(kind, req, res, newRequestId()));
    // Anthropic's clients list models too (x-api-key, anthropic-version): answered in their shape and envelope
    const anthropic = (req: FastifyRequest) => req.headers['anthropic-version'] !== undefined;
    const modelsErrors = (err: unknown, request: FastifyRequest, reply: FastifyReply) =>
      this.errors.send(err, request, reply, anthropic(request) ? 'messages' : 'models');
    app.get('/v1/models', { errorHandler: modelsErrors }, async (req, reply) => {
      if (anthropic(req)) {
        void reply.header('request-id', req.id);
        return this.models.listAnthropic(await this.auth.authenticate(anthropicCredential(req.headers)));
      }
      const key = await this.auth.authenticate(bearerCredential(req.headers));
      return this.models.list(key);
    });
    app.get<{ Params: { '*': string } }>('/v1/models/*', { errorHandler: modelsErrors }, async (req, reply) => {
      const id = decodeURIComponent(req.params['*']);
      if (anthropic(req)) {
        void reply.header('request-id', req.id);
        return this.models.retrieveAnthropic(await this.auth.authenticate(anthropicCredential(req.headers)), id);
      }
      const key = await this.auth.authenticate(bearerCredential(req.headers));
      return this.models.retrieve(key, id);
    });
  }

  /**
   * The proxied POSTs, ahead of Fastify: the drain refusal, then the key verified from the headers before a byte
   * of the body is read (a cold key's lookup leaves the body in the kernel meanwhile), then the body read
   * under the in-flight budget, then the proxy. Refusals before the body is in are answered at once and
   * the body drained, never held (see {@link OpenAIExceptionFilter.sendBeforeBody}); a body too slow to
   * arrive gets Node's request timeout (408, see the server in {@link FastPath}).
   */
  private serve(kind: ProxyKind, req: IncomingMessage, res: ServerResponse, id: string): void {
    const startedAt = performance.now();
    const trace = this.tracer === null ? null : this.tracer.begin(kind, id, req, res);
    if (this.shutdown.closing) return this.refuse(CLOSING, kind, id, req, res);
    let key: AuthedKey | Promise<AuthedKey>;
    try {
      key = this.auth.authenticate(this.adapters.byKind[kind].credential(req.headers));
    } catch (err) {
      return this.refuse(err, kind, id, req, res);
    }
    if (key instanceof Promise) {
      if (trace !== null) trace.auth(key);
      key.then(
        (k) => this.read(kind, k, id, req, res, startedAt, trace),
        (err: unknown) => this.refuse(err, kind, id, req, res),
      );
    } else this.read(kind, key, id, req, res, startedAt, trace);
  }

  private refuse(err: unknown, kind: ProxyKind, id: string, req: IncomingMessage, res: ServerResponse): void {
    this.errors.sendBeforeBody(err, req, res, id, kind);
  }

  /** Reads and parses the body of an authenticated request, within the body limit and the in-flight budget. */
  private read(kind: ProxyKind, key: AuthedKey, id: string, req: IncomingMessage, res: ServerResponse, startedAt: number, trace: RequestTrace | null): void {
    // speech-to-text takes a multipart upload, streamed rather than read whole
    if (isAudioKind(kind)) return this.audio.read(kind, key, id, req, res, startedAt, trace);
    if (req.destroyed) return; // gone while its key was looked up
    const limit = this.config.GATEWAY_BODY_LIMIT;
    const type = req.headers['content-type'];
    if (type === undefined || !JSON_TYPE.test(type)) return this.refuse(bodyError('media_type', limit), kind, id, req, res);
    const declared = req.headers['content-length'];
    // Node's parser holds a body to its content-length: that much is reserved at once, a chunked body as it comes
    let reserved = declared === undefined ? 0 : Number(declared);
    if (reserved > limit) return this.refuse(bodyError('too_large', limit), kind, id, req, res);
    if (reserved > 0 && !this.budget.reserve(reserved)) return this.refuse(serverOverloaded(), kind, id, req, res);
    const chunks: Buffer[] = [];
    let size = 0;
    const release = () => {
      if (reserved > 0) this.budget.release(reserved);
      reserved = 0;
    };
    const stop = (err: ApiError) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      chunks.length = 0;
      release();
      this.refuse(err, kind, id, req, res);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > reserved) {
        if (size > limit) return stop(bodyError('too_large', limit));
        if (!this.budget.reserve(size - reserved)) return stop(serverOverloaded());
        reserved = size;
      }
      chunks.push(chunk);
    };
    const fail = (err: unknown) => this.errors.sendRaw(err, 'POST', req.url ?? '', id, res, kind);
    const onEnd = () => {
      if (size === 0) {
        release();
        return fail(bodyError('empty', limit));
      }
      let body: unknown;
      try {
        // JSON.parse makes `__proto__` an own key, never a prototype: the body is only read and re-serialised
        body = JSON.parse((chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)).toString('utf8'));
      } catch {
        release();
        return fail(bodyError('invalid_json', limit));
      }
      chunks.length = 0;
      // the body is held until its checks and its serialisation for the engine are done (handle's first turn)
      const handled = this.proxy.handle(kind, id, key, body, size, res, startedAt, trace);
      release();
      handled.catch(fail);
    };
    const onError = () => {
      release();
      res.destroy();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  }
}

/** The proxied routes never reach their Fastify handler: their onRequest hook hands them to the fast path. */
function handedOver(): never {
  throw new Error('a proxied route reached its Fastify handler');
}
