import { Injectable, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { ShutdownCoordinator } from '../lifecycle/shutdown-coordinator';
import { ModelsService } from './models.service';
import { ProxyService } from './proxy.service';

/**
 * Registers the OpenAI routes directly on Fastify. They are the hot path: Nest's per-request pipeline
 * (guards, interceptors, pipes, response serialisation) would run for every token stream and buys them
 * nothing, so the routes call the singleton services themselves. Errors use the same envelope filter.
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
  ) {}

  onModuleInit(): void {
    const app = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const handlerFor = (route: string) => (err: unknown, request: FastifyRequest, reply: FastifyReply) =>
      this.errors.send(err, request, reply, route);
    const closing = JSON.stringify({
      error: { message: 'The server is restarting. Please retry.', type: 'server_error', param: null, code: 'server_shutting_down' },
    });
    app.addHook('onRequest', (request, reply, done) => {
      reply.header('x-request-id', request.id);
      if (!this.shutdown.closing) return done();
      // a request on a kept-alive connection during the drain: send it elsewhere
      void reply.code(503).header('connection', 'close').header('retry-after', '1').header('content-type', 'application/json').send(closing);
    });
    app.post('/v1/chat/completions', { errorHandler: handlerFor('chat') }, (req, reply) => this.proxy.handle('chat', req, reply));
    app.post('/v1/completions', { errorHandler: handlerFor('completions') }, (req, reply) => this.proxy.handle('completions', req, reply));
    app.post('/v1/embeddings', { errorHandler: handlerFor('embeddings') }, (req, reply) => this.proxy.handle('embeddings', req, reply));
    app.get('/v1/models', { errorHandler: handlerFor('models') }, async (req) => {
      const key = await this.auth.authenticate(req.headers.authorization);
      return this.models.list(key);
    });
    app.get<{ Params: { '*': string } }>('/v1/models/*', { errorHandler: handlerFor('models') }, async (req) => {
      const key = await this.auth.authenticate(req.headers.authorization);
      return this.models.retrieve(key, decodeURIComponent(req.params['*']));
    });
  }
}
