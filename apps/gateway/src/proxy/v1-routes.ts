import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { bodyError } from '../errors/to-api-error';
import { ShutdownCoordinator } from '../lifecycle/shutdown-coordinator';
import { FastPath } from './fast-path';
import { ModelsService } from './models.service';
import type { ProxyKind } from './openai-request';
import { ProxyService } from './proxy.service';
import { newRequestId } from './request-id';

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
 * anything the fast path does not take. Every error leaves through the one envelope filter.
 */
@Injectable()
export class V1Routes implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
    private readonly models: ModelsService,
    private readonly auth: ApiKeyAuthService,
    private readonly errors: OpenAIExceptionFilter,
    private readonly shutdown: ShutdownCoordinator,
    private readonly fastPath: FastPath,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    const app = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const handlerFor = (route: string) => (err: unknown, request: FastifyRequest, reply: FastifyReply) =>
      this.errors.send(err, request, reply, route);
    app.addHook('onRequest', (request, reply, done) => {
      reply.header('x-request-id', request.id);
      if (!this.shutdown.closing) return done();
      // a request on a kept-alive connection during the drain: send it elsewhere
      done(CLOSING);
    });
    for (const [path, kind] of [
      ['/v1/chat/completions', 'chat'],
      ['/v1/completions', 'completions'],
      ['/v1/embeddings', 'embeddings'],
    ] as const) {
      app.post(path, { errorHandler: handlerFor(kind) }, (req, reply) => {
        // Nest's adapter also parses form bodies; the OpenAI API takes JSON only
        if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) throw bodyError('media_type', this.config.GATEWAY_BODY_LIMIT);
        const bytes = Number(req.headers['content-length']) || 0;
        return this.proxy.handle(kind, req.id, req.headers, req.body, bytes, reply.raw, performance.now(), () => reply.hijack());
      });
    }
    this.fastPath.install((kind, req, res) => this.serve(kind, req, res));
    app.get('/v1/models', { errorHandler: handlerFor('models') }, async (req) => {
      const key = await this.auth.authenticate(req.headers.authorization);
      return this.models.list(key);
    });
    app.get<{ Params: { '*': string } }>('/v1/models/*', { errorHandler: handlerFor('models') }, async (req) => {
      const key = await this.auth.authenticate(req.headers.authorization);
      return this.models.retrieve(key, decodeURIComponent(req.params['*']));
    });
  }

  /** The fast path: what Fastify would do for these routes (id, drain refusal, media type, body limit, JSON), then the proxy. */
  private serve(kind: ProxyKind, req: IncomingMessage, res: ServerResponse): void {
    const startedAt = performance.now();
    const id = newRequestId();
    const fail = (err: unknown, headers?: Record<string, string>) => this.errors.sendRaw(err, 'POST', req.url ?? '', id, res, kind, headers);
    if (this.shutdown.closing) {
      fail(CLOSING);
      req.resume();
      return;
    }
    const limit = this.config.GATEWAY_BODY_LIMIT;
    const type = req.headers['content-type'];
    if (type === undefined || !JSON_TYPE.test(type)) {
      fail(bodyError('media_type', limit), { connection: 'close' });
      req.resume();
      return;
    }
    if (Number(req.headers['content-length']) > limit) {
      fail(bodyError('too_large', limit), { connection: 'close' });
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size > limit) return;
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        fail(bodyError('too_large', limit), { connection: 'close' });
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > limit) return;
      if (size === 0) return fail(bodyError('empty', limit));
      let body: unknown;
      try {
        // JSON.parse makes `__proto__` an own key, never a prototype: the body is only read and re-serialised
        body = JSON.parse((chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)).toString('utf8'));
      } catch {
        return fail(bodyError('invalid_json', limit));
      }
      this.proxy.handle(kind, id, req.headers, body, size, res, startedAt).catch(fail);
    });
    req.on('error', () => res.destroy());
  }
}
