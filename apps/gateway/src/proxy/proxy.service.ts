import { Inject, Injectable, Logger } from '@nestjs/common';
import { modelNotFound } from '@spot/contract';
import { ModelCatalog } from '@spot/tiers';
import { UsageRecorder } from '@spot/usage';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import { RateLimiter } from '../limits/rate-limiter';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { UpstreamPool } from '../routing/upstream-pool';
import { checkRequest, type ProxyKind } from './openai-request';
import { type ExchangeContext, ProxyExchange } from './proxy-exchange';

/**
 * The request path of the proxied operations: authenticate, check, authorize the model, start the limit
 * check, then hand the client's socket to a {@link ProxyExchange}. Errors thrown before that become
 * OpenAI envelopes.
 */
@Injectable()
export class ProxyService {
  private readonly logger = new Logger('Proxy');
  private readonly live = new Set<ProxyExchange>();
  private readonly ctx: ExchangeContext;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly auth: ApiKeyAuthService,
    private readonly limiter: RateLimiter,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly pool: UpstreamPool,
    metrics: GatewayMetrics,
    recorder: UsageRecorder,
  ) {
    this.ctx = {
      metrics,
      recorder,
      onSettled: (x) => this.settled(x),
      onError: (message) => this.logger.warn(message),
    };
  }

  async handle(kind: ProxyKind, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const startedAt = performance.now();
    const key = await this.auth.authenticate(request.headers.authorization);
    const req = checkRequest(kind, request.body);
    const routes = this.catalog.routesFor(req.model);
    if (routes === undefined || (key.allowedModels !== null && !key.allowedModels.has(req.model))) {
      throw modelNotFound(req.model);
    }
    const refused = this.limiter.refusedNow(key);
    if (refused !== null) throw refused;
    // the limiter's round trip runs while the engine works on the request; no byte reaches the client before it
    const admission = this.limiter.admit(key, req.promptTokensEstimate + req.completionTokensCap);
    reply.hijack();
    const exchange = new ProxyExchange(this.ctx, reply.raw, request.id, key, kind, req, this.pool.candidates(routes), startedAt, admission);
    this.live.add(exchange);
    exchange.start();
  }

  /** Requests being relayed now. */
  get inflight(): number {
    return this.live.size;
  }

  /** Resolves when no request is being relayed, or after `timeoutMs`; returns how many were still live. */
  async drain(timeoutMs: number): Promise<number> {
    if (this.live.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.live.size;
  }

  /** Cuts every live request (after the shutdown grace period): clients see an error, usage is recorded. */
  cutAll(reason: string): void {
    for (const x of this.live) x.cut(reason);
  }

  private settled(x: ProxyExchange): void {
    this.live.delete(x);
    if (this.live.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
