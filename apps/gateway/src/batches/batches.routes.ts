import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import type { AuthedKey } from '../auth/authed-key';
import { bearerCredential } from '../auth/credential';
import { StaticBearerToken } from '../auth/static-bearer-token';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { RateLimiter } from '../limits/rate-limiter';
import { ProxyService } from '../proxy/proxy.service';
import { BATCH_ENDPOINTS, type BatchEndpoint } from './batch-object';
import { BatchesService } from './batches.service';

type IdParams = { Params: { id: string } };

const keys = new WeakMap<FastifyRequest, AuthedKey>();

/** The path prefix of the worker's batch lines: `/internal/batch` + the batch's endpoint. */
export const BATCH_LINE_PREFIX = '/internal/batch';

/**
 * The Batch API (POST/GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel), and the internal route
 * the worker sends each batch line to. Public routes verify the key in onRequest, before the body is read;
 * another org's batch is a 404. The internal route takes `Authorization: Bearer ADMIN_TOKEN` only (404 without
 * ADMIN_TOKEN), runs the line as the key that created the batch (`x-spot-batch-key`) through the same routing,
 * wake and failover as any request, on batch tiers, and records no usage: the engine's usage is in the body and
 * the serving tier in `x-spot-tier`, and the worker bills the line in the transaction that stores its result.
 */
@Injectable()
export class BatchesRoutes implements OnModuleInit {
  private readonly admin: StaticBearerToken | null;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly auth: ApiKeyAuthService,
    private readonly limiter: RateLimiter,
    private readonly batches: BatchesService,
    private readonly proxy: ProxyService,
    private readonly errors: OpenAIExceptionFilter,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.admin = config.ADMIN_TOKEN ? new StaticBearerToken(config.ADMIN_TOKEN) : null;
  }

  onModuleInit(): void {
    const app = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const errorHandler = (err: unknown, request: FastifyRequest, reply: FastifyReply) => this.errors.send(err, request, reply, 'batches');
    const onRequest = async (req: FastifyRequest) => {
      const key = await this.auth.authenticate(bearerCredential(req.headers));
      const refused = this.limiter.refusedNow(key);
      if (refused !== null) throw refused;
      keys.set(req, key);
    };
    app.post('/v1/batches', { errorHandler, onRequest }, async (req) => this.batches.create(keyOf(req), req.body));
    app.get<{ Querystring: { limit?: string; after?: string } }>('/v1/batches', { errorHandler, onRequest }, async (req) => this.batches.list(keyOf(req).orgId, req.query));
    app.get<IdParams>('/v1/batches/:id', { errorHandler, onRequest }, async (req) => this.batches.retrieve(keyOf(req).orgId, req.params.id));
    app.post<IdParams>('/v1/batches/:id/cancel', { errorHandler, onRequest }, async (req) => this.batches.cancel(keyOf(req).orgId, req.params.id));

    const lineOnRequest = async (req: FastifyRequest) => {
      if (this.admin === null) throw new ApiError(404, 'invalid_request_error', 'Not found.', 'not_found');
      if (!this.admin.matches(req.headers.authorization)) throw new ApiError(401, 'invalid_request_error', 'A valid admin token is required.', 'invalid_admin_token');
      const keyId = req.headers['x-spot-batch-key'];
      if (typeof keyId !== 'string' || !/^[0-9a-f-]{36}$/i.test(keyId)) throw new ApiError(400, 'invalid_request_error', 'x-spot-batch-key: expected a key id.');
      keys.set(req, await this.auth.byId(keyId));
    };
    for (const endpoint of Object.keys(BATCH_ENDPOINTS) as BatchEndpoint[]) {
      const kind = BATCH_ENDPOINTS[endpoint];
      app.post(`${BATCH_LINE_PREFIX}${endpoint}`, { errorHandler: (err, request, reply) => this.errors.send(err, request, reply, kind), onRequest: lineOnRequest }, async (req, reply) => {
        const header = req.headers['x-request-id'];
        const requestId = typeof header === 'string' && /^[\w-]{1,100}$/.test(header) ? header : req.id;
        const size = Number(req.headers['content-length'] ?? 0) || JSON.stringify(req.body ?? null).length;
        await this.proxy.handle(kind, requestId, keyOf(req), req.body, size, reply.raw, performance.now(), null, true);
        // the exchange owns the socket from here
        reply.hijack();
      });
    }
  }
}

function keyOf(req: FastifyRequest): AuthedKey {
  const key = keys.get(req);
  if (key === undefined) throw new Error('a batches route ran without its key');
  return key;
}
