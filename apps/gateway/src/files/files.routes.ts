import type { IncomingMessage, ServerResponse } from 'node:http';
import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ApiError } from '@spot/contract';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import type { AuthedKey } from '../auth/authed-key';
import { bearerCredential } from '../auth/credential';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { RateLimiter } from '../limits/rate-limiter';
import { ShutdownCoordinator } from '../lifecycle/shutdown-coordinator';
import { FilesService } from './files.service';

type IdParams = { Params: { id: string } };
type ListQuery = { Querystring: { purpose?: string; limit?: string; after?: string; order?: string } };

/** The key of each request, verified in onRequest (before Fastify reads a byte of any body). */
const keys = new WeakMap<FastifyRequest, AuthedKey>();

/**
 * The Files API: POST /v1/files (multipart, streamed to Postgres), GET /v1/files, GET/DELETE /v1/files/{id},
 * GET /v1/files/{id}/content. The key is verified from the headers before the body is read, as on the proxied
 * routes; an upload refused then (bad key, too large by its content-length) is answered at once and its body
 * drained within bounds, never held. Another org's file is a 404 on every route.
 */
@Injectable()
export class FilesRoutes implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly auth: ApiKeyAuthService,
    private readonly limiter: RateLimiter,
    private readonly files: FilesService,
    private readonly errors: OpenAIExceptionFilter,
    private readonly shutdown: ShutdownCoordinator,
  ) {}

  onModuleInit(): void {
    const app = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const errorHandler = (err: unknown, request: FastifyRequest, reply: FastifyReply) => this.errors.send(err, request, reply, 'files');
    const onRequest = async (req: FastifyRequest) => {
      keys.set(req, await this.key(req.raw));
    };
    app.post('/v1/files', {
      errorHandler,
      // the body is the upload's own from here: Fastify never parses it
      onRequest: (request, reply, _done) => {
        reply.hijack();
        this.upload(request.raw, reply.raw, request.id);
      },
    }, handedOver);
    app.get<ListQuery>('/v1/files', { errorHandler, onRequest }, async (req) => this.files.list(keyOf(req).orgId, req.query));
    app.get<IdParams>('/v1/files/:id', { errorHandler, onRequest }, async (req) => this.files.retrieve(keyOf(req).orgId, req.params.id));
    app.delete<IdParams>('/v1/files/:id', { errorHandler, onRequest }, async (req) => this.files.delete(keyOf(req).orgId, req.params.id));
    app.get<IdParams>('/v1/files/:id/content', { errorHandler, onRequest }, async (req, reply) => {
      const { file, body } = await this.files.content(keyOf(req).orgId, req.params.id);
      void reply.header('content-type', 'application/octet-stream').header('content-length', String(file.bytes));
      void reply.header('content-disposition', `attachment; filename="${file.filename.replace(/["\\\r\n]/g, '_')}"`);
      return reply.send(body);
    });
  }

  private async key(req: IncomingMessage): Promise<AuthedKey> {
    const key = await this.auth.authenticate(bearerCredential(req.headers));
    const refused = this.limiter.refusedNow(key);
    if (refused !== null) throw refused;
    return key;
  }

  private upload(req: IncomingMessage, res: ServerResponse, id: string): void {
    const refuse = (err: unknown) => this.errors.sendBeforeBody(err, req, res, id, 'files');
    if (this.shutdown.closing) return refuse(new ApiError(503, 'server_error', 'The server is restarting. Please retry.', 'server_shutting_down', null, { 'retry-after': '1' }));
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.files.maxBodyBytes) {
      return refuse(new ApiError(413, 'invalid_request_error', `File too large: the limit is ${this.files.maxBodyBytes - 64 * 1024} bytes.`, 'file_too_large', 'file'));
    }
    res.setHeader('x-request-id', id);
    this.key(req)
      .then(async (key) => {
        if (req.destroyed) return;
        const file = await this.files.upload(key.orgId, req);
        const body = JSON.stringify(file);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      })
      .catch(refuse);
  }
}

function keyOf(req: FastifyRequest): AuthedKey {
  const key = keys.get(req);
  if (key === undefined) throw new Error('a files route ran without its key');
  return key;
}

/** POST /v1/files never reaches its Fastify handler: its onRequest hook takes the request. */
function handedOver(): never {
  throw new Error('POST /v1/files reached its Fastify handler');
}
