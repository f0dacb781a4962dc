import { Inject, Injectable, Logger } from '@nestjs/common';
import { modelNotFound } from '@spot/contract';
import { ModelCatalog } from '@spot/tiers';
import { UsageRecorder } from '@spot/usage';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
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
      timers: { chat: metrics.routeTimers('chat'), completions: metrics.routeTimers('completions'), embeddings: metrics.routeTimers('embeddings') },
      recorder,
      onSettled: (x) => this.settled(x),
      onError: (message) => this.logger.warn(message),
    };
  }

  /**
   * Checks one request and starts relaying it to `res`. Throws the {@link ApiError} to answer before any
   * byte is written; `takeOver` runs just before the exchange owns `res`.
   */
  async handle(
    kind: ProxyKind,
    requestId: string,
    headers: IncomingHttpHeaders,
    body: unknown,
    bodyBytes: number,
    res: ServerResponse,
    startedAt: number,
    takeOver?: () => void,
  ): Promise<void> {
    const key = await this.auth.authenticate(headers.authorization);
    const req = checkRequest(kind, body, bodyBytes);
    const routes = this.catalog.routesFor(req.model);
    if (routes === undefined || (key.allowedModels !== null && !key.allowedModels.has(req.model))) {
      throw modelNotFound(req.model);
    }
    const refused = this.limiter.refusedNow(key);
    if (refused !== null) throw refused;
    takeOver?.();
    const exchange = new ProxyExchange(this.ctx, res, requestId, key, kind, req, this.pool.candidates(routes), startedAt);
    this.live.add(exchange);
    exchange.start();
    // the engine request is on the wire first; the limiter's round trip runs during the engine's work and
    // no byte reaches the client before its verdict
    const admission = this.limiter.admit(key, req.promptTokensEstimate + req.completionTokensCap);
    if (admission !== null) exchange.awaitAdmission(admission);
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
