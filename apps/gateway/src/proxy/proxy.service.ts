import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError, invalidRequest, modelNotFound } from '@spot/contract';
import { type ModelPrice, type ModelRoute, ModelCatalog, worstCaseNanos } from '@spot/tiers';
import { UsageRecorder } from '@spot/usage';
import type { ServerResponse } from 'node:http';
import type { AuthedKey } from '../auth/authed-key';
import type { RequestTrace } from '../tracing/request-trace';
import { RateLimiter } from '../limits/rate-limiter';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { PoisonGuard } from '../routing/poison-guard';
import { PreemptionNotices } from '../routing/preemption-notices';
import { TierWaker } from '../routing/tier-waker';
import { UpstreamPool } from '../routing/upstream-pool';
import { PROXY_KINDS, ProtocolAdapters } from './adapters';
import type { ProxyKind } from './openai-request';
import type { ProtocolAdapter } from './protocol-adapter';
import { type ExchangeContext, ProxyExchange } from './proxy-exchange';

/** Batch lines are recorded by the worker, in the transaction that stores the line's result: nothing here. */
const BATCH_LINE_RECORDER: ExchangeContext['recorder'] = {
  record: () => undefined,
  follow: () => undefined,
  unfollow: () => undefined,
  afterJournal: (then) => queueMicrotask(then),
};

const routePrices = new WeakMap<readonly ModelRoute[], readonly ModelPrice[]>();

/** The prices of a model's routes (computed once per route list: the catalog's lists live as long as it). */
function pricesOf(routes: readonly ModelRoute[]): readonly ModelPrice[] {
  let prices = routePrices.get(routes);
  if (prices === undefined) {
    prices = routes.map((r) => r.price);
    routePrices.set(routes, prices);
  }
  return prices;
}

/**
 * The request path of the proxied operations once the key is verified and the body read: check, authorize
 * the model (and that it serves the adapter's API), start the limit check, then hand the client's socket to a
 * {@link ProxyExchange}. Errors thrown before that leave in the adapter's envelope.
 */
@Injectable()
export class ProxyService implements OnModuleDestroy {
  private readonly logger = new Logger('Proxy');
  private readonly live = new Set<ProxyExchange>();
  private readonly ctx: ExchangeContext;
  /** The context of batch lines: no usage recorded here (the worker writes it with the line's result), the tier named. */
  private readonly batchCtx: ExchangeContext;
  private readonly billingBlocked: ApiError;
  private readonly poisonRefused: ApiError;
  private idleWaiters: Array<() => void> = [];
  private readonly adapters: Readonly<Record<ProxyKind, ProtocolAdapter>>;
  /** Looks for stalled streams (one timer for all, not one a stream); undefined when streams are never continued. */
  private readonly stallWatch: NodeJS.Timeout | undefined;
  /** Stops hearing of preemption deadlines (see {@link preemptOn}). */
  private readonly unsubscribeDeadlines: () => void;

  constructor(
    private readonly limiter: RateLimiter,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly pool: UpstreamPool,
    private readonly waker: TierWaker,
    private readonly poison: PoisonGuard,
    private readonly metrics: GatewayMetrics,
    recorder: UsageRecorder,
    @Inject(APP_CONFIG) config: AppConfig,
    adapters: ProtocolAdapters,
    notices: PreemptionNotices,
  ) {
    this.adapters = adapters.byKind;
    this.billingBlocked = new ApiError(
      config.BILLING_BLOCK_STATUS,
      'insufficient_quota',
      "Your org's billing is past due or its subscription has ended, so requests are paused. Update the payment method in the console to resume.",
      'insufficient_quota',
      null,
      { 'x-should-retry': 'false' },
    );
    this.poisonRefused = new ApiError(
      502,
      'server_error',
      `An identical request failed on two engines in a row (their connection was lost while they held it), so it is refused for up to ${config.POISON_TTL_S} seconds without being sent to an engine.`,
      'upstream_error',
      null,
      { 'x-should-retry': 'false' },
    );
    this.ctx = {
      metrics,
      poison,
      poisonTtlS: config.POISON_TTL_S,
      streamContinuations: config.STREAM_CONTINUATIONS,
      timers: Object.fromEntries(PROXY_KINDS.map((k) => [k, metrics.routeTimers(k)])) as ExchangeContext['timers'],
      recorder,
      onSettled: (x) => this.settled(x),
      onError: (message) => this.logger.warn(message),
      settleBudget: (reservation, costNanos) => limiter.settle(reservation, costNanos),
      routeDeadlineMs: config.ROUTE_DEADLINE_MS,
      tierRefused: (tier) => waker.refused(tier),
      wakeFallback: (model, api, tried) => {
        const routes = catalog.routesFor(model, api);
        const more = routes === undefined ? null : waker.wakeFallback(model, routes, tried);
        return more === null ? null : more.then((usable) => pool.candidates(usable));
      },
    };
    this.batchCtx = { ...this.ctx, recorder: BATCH_LINE_RECORDER, tierHeader: true };
    // a replica's preemption deadline: what still runs there moves on (streams continued from what they delivered)
    this.unsubscribeDeadlines = notices.onDeadline(({ tier, endpoint }) => {
      const moved = this.preemptOn(endpoint);
      if (moved > 0) this.logger.log(`preemption deadline of a replica of ${tier}: ${moved} request(s) moved to another engine`);
    });
    if (config.STREAM_CONTINUATIONS > 0) {
      const stallMs = config.STREAM_STALL_MS;
      // a stall is seen within a quarter of STREAM_STALL_MS of its threshold
      this.stallWatch = setInterval(() => {
        const now = performance.now();
        for (const x of this.live) x.checkStall(now, stallMs);
      }, Math.max(25, Math.floor(stallMs / 4)));
      this.stallWatch.unref();
    }
  }

  onModuleDestroy(): void {
    this.unsubscribeDeadlines();
    clearInterval(this.stallWatch);
  }

  /**
   * The engine replica at `origin` is going away (a preemption deadline): every request on it moves to another
   * engine, streams under way continued from what they delivered (see {@link ProxyExchange.preempt}). Returns how
   * many moved.
   */
  preemptOn(origin: string): number {
    let n = 0;
    for (const x of this.live) if (x.origin === origin && x.preempt()) n++;
    return n;
  }

  /**
   * Checks one request of an authenticated `key` and starts relaying it to `res`. Throws (rejects with) the
   * {@link ApiError} to answer before any byte is written.
   */
  async handle(
    kind: ProxyKind,
    requestId: string,
    key: AuthedKey,
    body: unknown,
    bodyBytes: number,
    res: ServerResponse,
    startedAt: number,
    trace: RequestTrace | null = null,
    /** A Batch API line from the worker: batch tiers only, no limits, usage returned rather than recorded. */
    batch = false,
  ): Promise<void> {
    const adapter = this.adapters[kind];
    const checked = adapter.check(body, bodyBytes);
    if (trace !== null) trace.request(checked, key, adapter.upstreamPath);
    if (batch && checked.stream) throw invalidRequest('Batch requests cannot be streamed.', 'stream');
    const routes = batch ? this.catalog.batchRoutesFor(checked.model, adapter.api) : this.catalog.routesFor(checked.model, adapter.api);
    if (routes === undefined || (key.allowedModels !== null && !key.allowedModels.has(checked.model))) {
      throw modelNotFound(checked.model);
    }
    if (key.billingBlockedAtMs !== null && Date.now() >= key.billingBlockedAtMs) throw this.billingBlocked;
    const refused = this.limiter.refusedNow(key);
    if (refused !== null) throw refused;
    // stored state (Responses' previous_response_id) is read before any engine is asked; stateless protocols have none
    const req = adapter.prepare === undefined ? checked : await adapter.prepare(checked, key);
    // only while some body has failed an engine after being sent to it: never on a quiet day
    if (this.poison.active && this.poison.isPoisoned(this.poison.fingerprint(req.body))) {
      this.metrics.poison.labels('refused').inc();
      throw this.poisonRefused;
    }
    const routable = this.waker.route(req.model, routes);
    const usable = Array.isArray(routable) ? (routable as readonly ModelRoute[]) : await (trace === null ? routable : trace.wake(routable as Promise<readonly ModelRoute[]>));
    const candidates = this.pool.candidates(usable);
    // serialised here, so that a body the engine cannot be sent is answered before an exchange exists
    const upstreamJson = adapter.upstreamBody(req, candidates[0].route.upstreamModel);
    if (trace !== null) trace.exchangeStarted();
    const exchange = new ProxyExchange(batch ? this.batchCtx : this.ctx, res, requestId, key, adapter, req, candidates, startedAt, upstreamJson, trace);
    this.live.add(exchange);
    exchange.start();
    // batch lines are paced by the worker (in the capacity interactive traffic leaves), not by the key's limits
    if (batch) return;
    // the engine request is on the wire first; the limiter's round trip runs during the engine's work and
    // no byte reaches the client before its verdict
    const worstNanos = key.budgetNanos === null ? 0 : worstCaseNanos(pricesOf(routes), req.promptTokensEstimate, req.completionTokensCap, req.audioSecondsCap);
    const reservation = this.limiter.admit(key, req.promptTokensEstimate + req.completionTokensCap, worstNanos);
    if (reservation !== null) {
      if (trace !== null) trace.admission(reservation);
      exchange.awaitAdmission(reservation);
    }
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
