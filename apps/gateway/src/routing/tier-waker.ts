import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { closeRedis, REDIS, RedisKeys, redisOptions } from '@spot/redis';
import { ModelCatalog, type ModelRoute, tierKeys, type TierView, wakeDriver, type WakeDriver } from '@spot/tiers';
import { Redis } from 'ioredis';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { UpstreamPool } from './upstream-pool';

export type TierState = 'awake' | 'waking' | 'asleep';

interface SleepyTier {
  readonly view: TierView;
  readonly driver: WakeDriver;
  readonly deadlineMs: number;
  state: TierState;
  since: number;
  /** The wake this gateway is waiting on (its own, or another gateway's it watches). */
  waking: Promise<boolean> | null;
  waiters: number;
  /** Epoch ms of the last request routed to the tier by this gateway (0: none yet). */
  lastUsedAt: number;
}


const hasSleepy = new WeakMap<readonly ModelRoute[], boolean>();
const HEARTBEAT_MS = 1_000;
/** Sets KEYS[1] to ARGV[1] unless it already holds a later time. */
const MAX_SET = "local v = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end return 1";

/**
 * Tiers that may sleep (`wake` in the tiers file). A request for a model whose preferred tier sleeps either
 * falls back to a later tier that is awake (and the sleeping one is woken meanwhile), or waits, in a bounded
 * queue, for the wake, at most the tier's `deadline_s`; past it, 503 with retry-after (never 404: the model
 * exists). One wake per tier across all gateways: a Redis lock elects the gateway that runs the driver, the
 * others watch for its announcement on pub/sub (and probe the tier as a fallback). Tiers without `wake` cost
 * one WeakMap lookup per request.
 */
@Injectable()
export class TierWaker implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('TierWaker');
  private readonly tiers = new Map<string, SleepyTier>();
  private readonly id = randomBytes(6).toString('hex');
  private subscriber: Redis | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly channel: string;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(ModelCatalog) catalog: ModelCatalog,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly metrics: GatewayMetrics,
    private readonly pool: UpstreamPool,
  ) {
    this.channel = keys.key(tierKeys.stateChannel);
    for (const view of catalog.tiers()) {
      if (view.wake === null) continue;
      this.tiers.set(view.name, {
        view,
        driver: wakeDriver(view),
        deadlineMs: view.wake.deadline_s * 1000,
        state: 'awake',
        since: Date.now(),
        waking: null,
        waiters: 0,
        lastUsedAt: 0,
      });
    }
  }

  /** A tier with `wake` may be asleep when the gateway starts: probe before assuming. */
  async onApplicationBootstrap(): Promise<void> {
    if (this.tiers.size === 0) return;
    const sub = new Redis(this.config.REDIS_URL, redisOptions({ maxRetriesPerRequest: null }));
    sub.on('message', (_c: string, payload: string) => this.onAnnouncement(payload));
    sub.on('error', (err: Error) => this.logger.debug(`tier state subscriber: ${err.message}`));
    sub.subscribe(this.channel).catch((err: unknown) => this.logger.warn(`cannot subscribe to ${this.channel}: ${String(err)}`));
    this.subscriber = sub;
    this.heartbeat = setInterval(() => this.report(), HEARTBEAT_MS);
    this.heartbeat.unref();
    await Promise.all(
      [...this.tiers.values()].map(async (t) => {
        try {
          if (await t.driver.isAsleep(AbortSignal.timeout(5_000))) this.set(t, 'asleep', 'asleep at start');
        } catch (err) {
          this.logger.warn(`could not probe tier ${t.view.name}, assuming it is awake: ${String(err)}`);
        }
      }),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) await closeRedis(sub);
  }

  /**
   * An engine of a tier we believed awake answered 503: if the tier turns out to be asleep (slept by an
   * operator, or a sleep announcement we missed), mark it so; the next request wakes it.
   */
  refused(tier: string): void {
    const t = this.tiers.get(tier);
    if (t === undefined || t.state !== 'awake' || t.waking !== null) return;
    t.driver.isAsleep(AbortSignal.timeout(5_000)).then(
      (asleep) => {
        if (asleep && t.state === 'awake') this.set(t, 'asleep', 'found asleep (the engine refused work)');
      },
      () => undefined,
    );
  }

  /** The state of a sleepy tier (undefined for tiers that never sleep). */
  stateOf(tier: string): { state: TierState; since: number } | undefined {
    const t = this.tiers.get(tier);
    return t && { state: t.state, since: t.since };
  }

  /**
   * The routes a request may use now: `routes` itself when every tier is awake (the hot path), the awake
   * ones while a preferred tier wakes (fallback), or a promise of them once the tier has woken.
   * @throws ApiError 503 when the wait queue is full; the promise rejects with 503 past the deadline.
   */
  route(model: string, routes: readonly ModelRoute[]): readonly ModelRoute[] | Promise<readonly ModelRoute[]> {
    let sleepy = hasSleepy.get(routes);
    if (sleepy === undefined) {
      sleepy = routes.some((r) => r.wake !== null);
      hasSleepy.set(routes, sleepy);
    }
    if (!sleepy) return routes;
    const first = this.tiers.get(routes[0].tier);
    const awake = routes.filter((r) => (this.tiers.get(r.tier)?.state ?? 'awake') === 'awake');
    const now = Date.now();
    for (const r of routes) {
      const t = this.tiers.get(r.tier);
      if (t !== undefined) t.lastUsedAt = now;
    }
    for (const r of routes) {
      const t = this.tiers.get(r.tier);
      if (t !== undefined && t.state !== 'awake') void this.wake(t);
    }
    if (awake.length === routes.length) return routes;
    if (first === undefined || first.state === 'awake' || (routes[0].fallbackWhileWaking && awake.length > 0)) return awake;
    return this.waitFor(first, model, routes);
  }

  private async waitFor(t: SleepyTier, model: string, routes: readonly ModelRoute[]): Promise<readonly ModelRoute[]> {
    if (t.waiters >= this.config.WAKE_QUEUE_MAX) throw this.waking(t, model, 'too many requests are waiting for it');
    t.waiters++;
    try {
      const woke = await this.wake(t);
      if (!woke) throw this.waking(t, model, `it did not wake within ${t.deadlineMs / 1000} s`);
    } finally {
      t.waiters--;
    }
    return routes.filter((r) => (this.tiers.get(r.tier)?.state ?? 'awake') === 'awake');
  }

  private waking(t: SleepyTier, model: string, why: string): ApiError {
    const retry = String(Math.max(1, Math.ceil(t.deadlineMs / 2000)));
    return new ApiError(503, 'server_error', `The model ${model} is waking up (tier ${t.view.name}): ${why}. Please retry shortly.`, 'model_waking', null, {
      'retry-after': retry,
    });
  }

  /** Wakes a tier once (per gateway: shared promise; across gateways: a Redis lock). Resolves false past the deadline. */
  private wake(t: SleepyTier): Promise<boolean> {
    if (t.state === 'awake') return Promise.resolve(true);
    t.waking ??= this.runWake(t).finally(() => {
      t.waking = null;
    });
    return t.waking;
  }

  private async runWake(t: SleepyTier): Promise<boolean> {
    const started = Date.now();
    const signal = AbortSignal.timeout(t.deadlineMs);
    const lock = this.keys.key(tierKeys.lock(t.view.name));
    let mine = false;
    try {
      mine = (await this.redis.set(lock, this.id, 'PX', t.deadlineMs, 'NX')) === 'OK';
    } catch (err) {
      // without Redis nobody can coordinate: wake it ourselves rather than not at all
      this.logger.warn(`wake lock unavailable for tier ${t.view.name}, waking alone: ${String(err)}`);
      mine = true;
    }
    this.set(t, 'waking', mine ? `woken by gateway ${this.id}` : 'woken by another gateway');
    try {
      if (mine) {
        await this.announce(t.view.name, 'waking');
        await t.driver.wake(signal);
      } else {
        // another gateway runs the driver: its announcement resolves us; probing covers a lost message
        await new Promise<void>((resolve, reject) => {
          const done = (err?: Error) => {
            clearInterval(probe);
            clearInterval(check);
            signal.removeEventListener('abort', onAbort);
            if (err) reject(err);
            else resolve();
          };
          const onAbort = () => done(signal.reason as Error);
          const probe = setInterval(() => {
            t.driver.isAsleep(signal).then(
              (asleep) => {
                if (!asleep) done();
              },
              () => undefined,
            );
          }, 250);
          const check = setInterval(() => {
            if (t.state === 'awake') done();
          }, 20);
          signal.addEventListener('abort', onAbort, { once: true });
        });
      }
      this.set(t, 'awake', mine ? `woke in ${Date.now() - started} ms` : 'woken by another gateway');
      this.metrics.tierWakes.labels(t.view.name, 'awake').inc();
      if (mine) {
        this.metrics.tierWakeSeconds.labels(t.view.name).observe((Date.now() - started) / 1000);
        await this.announce(t.view.name, 'awake');
      }
      return true;
    } catch (err) {
      this.metrics.tierWakes.labels(t.view.name, signal.aborted ? 'deadline' : 'error').inc();
      this.logger.warn(`tier ${t.view.name} did not wake: ${String(err)}`);
      this.set(t, 'asleep', `wake failed: ${String(err).slice(0, 200)}`);
      return false;
    } finally {
      if (mine) await this.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, lock, this.id).catch(() => undefined);
    }
  }

  /**
   * Tells the worker, once a second, what this gateway has in flight on each sleepy tier and when it last used
   * it: the worker puts a tier to sleep only when no gateway has anything in flight there.
   */
  private report(): void {
    const inflight = new Map<string, number>();
    for (const e of this.pool.all()) if (this.tiers.has(e.tier)) inflight.set(e.tier, (inflight.get(e.tier) ?? 0) + e.inflight);
    const multi = this.redis.multi();
    for (const t of this.tiers.values()) {
      const busy = inflight.get(t.view.name) ?? 0;
      multi.set(this.keys.key(tierKeys.gateway(t.view.name, this.id)), JSON.stringify({ inflight: busy, lastUsedAt: t.lastUsedAt }), 'PX', HEARTBEAT_MS * 5);
      if (t.lastUsedAt > 0) multi.eval(MAX_SET, 1, this.keys.key(tierKeys.lastUsed(t.view.name)), String(busy > 0 ? Date.now() : t.lastUsedAt));
    }
    multi.exec().catch((err: unknown) => this.logger.debug(`tier heartbeat failed: ${String(err)}`));
  }

  private set(t: SleepyTier, state: TierState, reason: string): void {
    if (t.state === state) return;
    t.state = state;
    t.since = Date.now();
    this.metrics.tierState.labels(t.view.name).set(state === 'awake' ? 1 : state === 'waking' ? 0.5 : 0);
    const entry = JSON.stringify({ at: new Date(t.since).toISOString(), state, reason, by: `gateway ${this.id}` });
    const history = this.keys.key(tierKeys.history(t.view.name));
    this.redis.multi().lpush(history, entry).ltrim(history, 0, 199).exec().catch(() => undefined);
  }

  private async announce(tier: string, state: TierState): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify({ tier, state, gateway: this.id })).catch(() => undefined);
  }

  private onAnnouncement(payload: string): void {
    let msg: { tier?: unknown; state?: unknown; gateway?: unknown };
    try {
      msg = JSON.parse(payload) as typeof msg;
    } catch {
      return;
    }
    if (msg.gateway === this.id || typeof msg.tier !== 'string') return;
    const t = this.tiers.get(msg.tier);
    if (t === undefined) return;
    if (msg.state === 'awake') this.set(t, 'awake', 'announced by another gateway');
    else if (msg.state === 'asleep') this.set(t, 'asleep', 'put to sleep');
  }
}
