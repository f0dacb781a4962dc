import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { closeRedis, REDIS, RedisKeys, redisOptions } from '@spot/redis';
import { ModelCatalog, type ModelRoute, type TierGatewayReport, tierKeys, type TierView, wakeDriver, type WakeDriver } from '@spot/tiers';
import { Redis } from 'ioredis';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { UpstreamPool } from './upstream-pool';

export type TierState = 'awake' | 'waking' | 'asleep';

/** A sleepy tier as this gateway sees it (for /admin/tiers). */
export interface TierStateView {
  state: TierState;
  since: number;
  reason: string;
  waiters: number;
  lastUsedAt: number;
}

interface SleepyTier {
  readonly view: TierView;
  readonly driver: WakeDriver;
  readonly deadlineMs: number;
  state: TierState;
  since: number;
  reason: string;
  /** The wake this gateway runs or waits on (shared by its requests). */
  waking: Promise<boolean> | null;
  waiters: number;
  /** Epoch ms of the last request this gateway sent to the tier (0: none yet). */
  lastUsedAt: number;
  /** The tier's endpoints' `uses` at the last report: a change means it was used since. */
  reportedUses: number;
  /** The worker's last drain this gateway acknowledged. */
  ack: string | null;
  /** A probe of the engines is running (at most one per tier). */
  probing: boolean;
  /** Called on every state change: wakes run by another process end when this gateway hears of them. */
  readonly listeners: Set<() => void>;
}

const hasSleepy = new WeakMap<readonly ModelRoute[], boolean>();
const HEARTBEAT_MS = 1_000;
/** While another process holds the tier's lock, how often to try for it (covers a lost announcement). */
const LOCK_POLL_MS = 200;
const PROBE_TIMEOUT_MS = 5_000;
const HISTORY_MAX = 200;
/** Sets KEYS[1] to ARGV[1] unless it already holds a later time. */
const MAX_SET = "local v = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end return 1";
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Tiers that may sleep (`wake` in the tiers file). A request whose preferred ready tier is preceded by sleeping
 * ones wakes the first of them and either falls back to the ready tier meanwhile (`fallback_while_waking`), or
 * waits, in a bounded queue, for the wake, at most the tier's `deadline_s`; past it, 503 with retry-after (never
 * 404: the model exists). A sleeping tier after a ready one is left asleep; one behind an unhealthy tier (a
 * preempted spot tier) is woken.
 *
 * One wake or sleep per tier at a time across all processes: the Redis lock `tier:<name>:lock`. The gateway that
 * takes it runs the driver and announces the outcome on pub/sub; the others wait for that announcement, and try
 * for the lock every {@link LOCK_POLL_MS} in case it was lost (whoever takes it after a wake first asks the
 * engines whether they still sleep). The worker puts idle tiers to sleep under the same lock, after a drain that
 * every gateway acknowledges with what it still has in flight (see `TierIdleService`).
 *
 * Requests for models without sleepy tiers cost one WeakMap lookup here; nothing on the request path goes to
 * Redis.
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
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
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
        reason: 'assumed awake',
        waking: null,
        waiters: 0,
        lastUsedAt: 0,
        reportedUses: 0,
        ack: null,
        probing: false,
        listeners: new Set(),
      });
    }
  }

  /** The gateway's id in tier reports and history. */
  get gatewayId(): string {
    return this.id;
  }

  /**
   * Subscribes to tier announcements, then learns each tier's state before serving: a drain in progress (the
   * worker is putting it to sleep), else a probe of its engines (a tier with `wake` may be asleep at start).
   */
  async onApplicationBootstrap(): Promise<void> {
    if (this.tiers.size === 0) return;
    const sub = new Redis(this.config.REDIS_URL, redisOptions({ maxRetriesPerRequest: null }));
    sub.on('message', (_c: string, payload: string) => this.onAnnouncement(payload));
    sub.on('error', (err: Error) => this.logger.debug(`tier state subscriber: ${err.message}`));
    this.subscriber = sub;
    // subscribed before reading the drain markers: a drain that starts meanwhile is either read or heard
    const subscribed = await Promise.race([
      sub.subscribe(this.channel).then(
        () => true,
        (err: unknown) => {
          this.logger.warn(`cannot subscribe to ${this.channel}: ${String(err)}`);
          return false;
        },
      ),
      new Promise<boolean>((r) => setTimeout(r, PROBE_TIMEOUT_MS, false).unref()),
    ]);
    if (!subscribed) this.logger.warn('tier announcements are not heard yet: state changes by other processes are found by probing');
    // the shared client does not queue commands while it connects
    if (this.redis.status !== 'ready') await this.connected(PROBE_TIMEOUT_MS);
    await Promise.all(
      [...this.tiers.values()].map(async (t) => {
        const epoch = await this.redis.get(this.keys.key(tierKeys.draining(t.view.name))).catch(() => null);
        if (epoch !== null) {
          t.ack = epoch;
          this.set(t, 'asleep', 'the worker is putting it to sleep');
          return;
        }
        try {
          if (await t.driver.isAsleep(AbortSignal.timeout(PROBE_TIMEOUT_MS))) this.set(t, 'asleep', 'found asleep at the gateway\'s start', true);
          else this.set(t, 'awake', 'awake at start');
        } catch (err) {
          this.logger.warn(`could not probe tier ${t.view.name}, assuming it is awake: ${String(err)}`);
        }
      }),
    );
    this.report();
    this.heartbeat = setInterval(() => this.report(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Resolves when the shared client is ready, or after `timeoutMs`. */
  private connected(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.redis.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.redis.on('ready', done);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) await closeRedis(sub);
  }

  /**
   * An engine of a tier we believe awake refused work (503) or failed its health check: if the tier turns out
   * to be asleep (put to sleep by an operator, or an announcement we missed), mark it so; the next request wakes
   * it.
   */
  refused(tier: string): void {
    const t = this.tiers.get(tier);
    if (t === undefined || t.state !== 'awake' || t.waking !== null || t.probing) return;
    t.probing = true;
    t.driver
      .isAsleep(AbortSignal.timeout(PROBE_TIMEOUT_MS))
      .then(
        (asleep) => {
          if (asleep && t.state === 'awake' && t.waking === null) this.set(t, 'asleep', 'found asleep (its engines refused work)');
        },
        (err: unknown) => this.logger.debug(`probe of tier ${tier}: ${String(err)}`),
      )
      .finally(() => {
        t.probing = false;
      });
  }

  /** The state of a sleepy tier (undefined for tiers that never sleep). */
  stateOf(tier: string): TierStateView | undefined {
    const t = this.tiers.get(tier);
    return t && { state: t.state, since: t.since, reason: t.reason, waiters: t.waiters, lastUsedAt: t.lastUsedAt };
  }

  /**
   * The routes a request may use now: `routes` itself when no tier sleeps (the hot path); the awake ones when a
   * preferred tier sleeps and falling back is allowed (that tier is woken meanwhile); else a promise of them once
   * the first sleeping tier has woken.
   * @throws ApiError 503 when the wait queue is full; the promise rejects with 503 past the deadline.
   */
  route(model: string, routes: readonly ModelRoute[]): readonly ModelRoute[] | Promise<readonly ModelRoute[]> {
    let sleepy = hasSleepy.get(routes);
    if (sleepy === undefined) {
      sleepy = routes.some((r) => r.wake !== null);
      hasSleepy.set(routes, sleepy);
    }
    if (!sleepy) return routes;
    const now = Date.now();
    let ready = false;
    let allAwake = true;
    // the first tier that does not serve now, preferred to every tier that does
    let target: SleepyTier | undefined;
    let targetRoute: ModelRoute | undefined;
    for (const r of routes) {
      const t = this.tiers.get(r.tier);
      if (t !== undefined && t.state !== 'awake') {
        allAwake = false;
        if (!ready && target === undefined) {
          target = t;
          targetRoute = r;
        }
      } else if (!ready && this.healthy(r, now)) {
        ready = true;
      }
    }
    if (allAwake) return routes;
    if (target !== undefined) void this.wake(target);
    const awake = routes.filter((r) => (this.tiers.get(r.tier)?.state ?? 'awake') === 'awake');
    if (target === undefined || (ready && targetRoute!.fallbackWhileWaking)) return awake;
    return this.waitFor(target, model, routes);
  }

  /**
   * Every candidate a request had failed before its first byte (say its spot tier was preempted): the routes of
   * the first tier of the model that is not awake and was not tried, once woken (the request waits like others
   * do: bounded queue, deadline, 503), or null when there is no such tier.
   */
  wakeFallback(model: string, routes: readonly ModelRoute[], tried: readonly { route: ModelRoute }[]): Promise<readonly ModelRoute[]> | null {
    if (hasSleepy.get(routes) !== true) return null;
    const target = routes.find((r) => !tried.some((c) => c.route.tier === r.tier) && (this.tiers.get(r.tier)?.state ?? 'awake') !== 'awake');
    if (target === undefined) return null;
    return this.waitFor(this.tiers.get(target.tier)!, model, routes).then((awake) => awake.filter((r) => !tried.some((c) => c.route.tier === r.tier)));
  }

  /**
   * The replicas of `tier` are going away (preemption notices) and none of them takes new requests: for each
   * model it serves, the sleeping tier that would serve the model next is woken now, unless an awake tier with a
   * usable replica serves it first, so that the wake runs during the notice window instead of after it. Returns
   * the tiers whose wake this call started (not those already waking).
   */
  wakeAhead(tier: string): string[] {
    const view = this.catalog.tier(tier);
    if (view === undefined || this.tiers.size === 0) return [];
    const now = Date.now();
    const started: string[] = [];
    for (const model of view.models) {
      for (const r of this.catalog.routesFor(model) ?? []) {
        if (r.tier === tier) continue;
        const t = this.tiers.get(r.tier);
        if (t !== undefined && t.state !== 'awake') {
          if (t.waking === null && !started.includes(r.tier)) started.push(r.tier);
          void this.wake(t);
          break;
        }
        if (this.healthy(r, now)) break;
      }
    }
    return started;
  }

  private healthy(route: ModelRoute, now: number): boolean {
    for (const origin of route.endpoints) if (this.pool.endpoint(origin, route.tier).usable(now)) return true;
    return false;
  }

  private async waitFor(t: SleepyTier, model: string, routes: readonly ModelRoute[]): Promise<readonly ModelRoute[]> {
    if (t.waiters >= this.config.WAKE_QUEUE_MAX) throw this.waking(t, model, 'too many requests are waiting for it');
    t.waiters++;
    try {
      const woke = await this.wake(t);
      if (!woke) throw this.waking(t, model, t.reason);
    } finally {
      t.waiters--;
      // a request that waited counts as a use of the tier, whatever its outcome
      t.lastUsedAt = Date.now();
    }
    return routes.filter((r) => (this.tiers.get(r.tier)?.state ?? 'awake') === 'awake');
  }

  private waking(t: SleepyTier, model: string, why: string): ApiError {
    const retry = String(Math.max(1, Math.ceil(t.deadlineMs / 2000)));
    return new ApiError(503, 'server_error', `The model ${model} is waking up (tier ${t.view.name}): ${why}. Please retry shortly.`, 'model_waking', null, {
      'retry-after': retry,
    });
  }

  /** Wakes a tier once per gateway (one shared promise). Resolves false when it did not wake by the deadline. */
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
    let first = true;
    let ran = false;
    try {
      for (;;) {
        if (await this.takeLock(lock, t.deadlineMs)) {
          try {
            // after waiting on another process, ask the engines first: its announcement may have been lost
            if (!first && !(await t.driver.isAsleep(signal))) {
              this.set(t, 'awake', 'found awake after another process held its lock');
              await this.announce(t.view.name, 'awake');
            } else {
              ran = true;
              this.set(t, 'waking', `woken by gateway ${this.id}`, true);
              await this.announce(t.view.name, 'waking');
              await t.driver.wake(signal);
              await this.endpointsUp(t, signal);
              const ms = Date.now() - started;
              this.set(t, 'awake', `woke in ${ms} ms`, true);
              this.metrics.tierWakeSeconds.labels(t.view.name).observe(ms / 1000);
              await this.announce(t.view.name, 'awake');
            }
          } finally {
            await this.redis.eval(RELEASE, 1, lock, this.id).catch(() => undefined);
          }
          this.metrics.tierWakes.labels(t.view.name, 'awake').inc();
          return true;
        }
        if (first) this.set(t, 'waking', 'waiting for the process that holds its lock');
        first = false;
        await this.nextChange(t, signal);
        if (t.state === 'awake') {
          this.metrics.tierWakes.labels(t.view.name, 'awake').inc();
          return true;
        }
      }
    } catch (err) {
      const deadline = signal.aborted;
      this.metrics.tierWakes.labels(t.view.name, deadline ? 'deadline' : 'error').inc();
      this.logger.warn(`tier ${t.view.name} did not wake: ${String(err)}`);
      const why = deadline ? `it did not wake within ${t.deadlineMs / 1000} s` : `its wake failed (${String(err).slice(0, 200)})`;
      this.set(t, 'asleep', why, ran);
      return false;
    }
  }

  /** SET NX PX on the tier's lock. Without Redis nobody can coordinate: the caller wakes it alone rather than not at all. */
  private async takeLock(lock: string, ttlMs: number): Promise<boolean> {
    try {
      return (await this.redis.set(lock, this.id, 'PX', ttlMs, 'NX')) === 'OK';
    } catch (err) {
      this.logger.warn(`tier lock unavailable (${String(err)}): waking alone`);
      return true;
    }
  }

  /** Resolves on the tier's next state change or after {@link LOCK_POLL_MS}; rejects when `signal` aborts. */
  private nextChange(t: SleepyTier, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        t.listeners.delete(done);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        clearTimeout(timer);
        t.listeners.delete(done);
        reject(signal.reason as Error);
      };
      const timer = setTimeout(done, LOCK_POLL_MS);
      t.listeners.add(done);
      signal.throwIfAborted();
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * The driver says the tier serves: endpoints ejected while it slept (its health checks failed) are checked
   * now rather than at the next round, so the woken tier takes requests at once.
   */
  private async endpointsUp(t: SleepyTier, signal: AbortSignal): Promise<void> {
    await Promise.all(
      t.view.endpoints.map(async (origin) => {
        const e = this.pool.endpoint(origin, t.view.name);
        if (e.state === 'closed') return;
        try {
          const res = await e.pool.request({ method: 'GET', path: '/health', signal, headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS });
          await res.body.dump();
          if (res.statusCode === 200) e.succeeded();
        } catch (err) {
          this.logger.debug(`engine ${origin} not healthy yet after the wake: ${String(err)}`);
        }
      }),
    );
  }

  /**
   * Tells the worker, once a second (and at once when it drains a tier), what this gateway has in flight on each
   * sleepy tier, how many requests wait for it, and when it last used it: the worker puts a tier to sleep only
   * when no gateway has anything there.
   */
  private report(): void {
    const inflight = new Map<string, number>();
    const uses = new Map<string, number>();
    for (const e of this.pool.all()) {
      if (!this.tiers.has(e.tier)) continue;
      inflight.set(e.tier, (inflight.get(e.tier) ?? 0) + e.inflight);
      uses.set(e.tier, (uses.get(e.tier) ?? 0) + e.uses);
    }
    const now = Date.now();
    const multi = this.redis.multi();
    for (const t of this.tiers.values()) {
      const busy = inflight.get(t.view.name) ?? 0;
      const used = uses.get(t.view.name) ?? 0;
      if (used !== t.reportedUses || busy > 0 || t.waiters > 0) t.lastUsedAt = now;
      t.reportedUses = used;
      const report: TierGatewayReport = { inflight: busy, waiters: t.waiters, lastUsedAt: t.lastUsedAt, ack: t.ack };
      multi.set(this.keys.key(tierKeys.gateway(t.view.name, this.id)), JSON.stringify(report), 'PX', HEARTBEAT_MS * 5);
      if (t.lastUsedAt > 0) multi.eval(MAX_SET, 1, this.keys.key(tierKeys.lastUsed(t.view.name)), String(t.lastUsedAt));
    }
    multi.exec().catch((err: unknown) => this.logger.debug(`tier heartbeat failed: ${String(err)}`));
  }

  /** Changes a tier's state here; `record` adds it to the tier's shared history (changes this process made). */
  private set(t: SleepyTier, state: TierState, reason: string, record = false): void {
    if (t.state !== state) {
      t.state = state;
      t.since = Date.now();
    }
    t.reason = reason;
    this.metrics.tierState.labels(t.view.name).set(state === 'awake' ? 1 : state === 'waking' ? 0.5 : 0);
    if (record) {
      const entry = JSON.stringify({ at: new Date().toISOString(), state, reason, by: `gateway ${this.id}` });
      const history = this.keys.key(tierKeys.history(t.view.name));
      this.redis.multi().lpush(history, entry).ltrim(history, 0, HISTORY_MAX - 1).exec().catch(() => undefined);
    }
    for (const notify of [...t.listeners]) notify();
  }

  private async announce(tier: string, state: TierState): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify({ tier, state, gateway: this.id })).catch(() => undefined);
  }

  private onAnnouncement(payload: string): void {
    let msg: { tier?: unknown; state?: unknown; gateway?: unknown; epoch?: unknown };
    try {
      msg = JSON.parse(payload) as typeof msg;
    } catch (err) {
      this.logger.debug(`ignored a malformed tier announcement: ${String(err)}`);
      return;
    }
    if (msg.gateway === this.id || typeof msg.tier !== 'string') return;
    const t = this.tiers.get(msg.tier);
    if (t === undefined) return;
    const by = typeof msg.gateway === 'string' ? msg.gateway : 'another process';
    switch (msg.state) {
      case 'awake':
        this.set(t, 'awake', `announced awake by ${by}`);
        break;
      case 'asleep':
        this.set(t, 'asleep', `put to sleep by ${by}`);
        break;
      case 'waking':
        if (t.state === 'asleep') this.set(t, 'waking', `being woken by ${by}`);
        break;
      case 'draining':
        // from now on nothing new goes to the tier (requests wait or fall back); the report says what is left
        if (typeof msg.epoch === 'string') t.ack = msg.epoch;
        if (t.state === 'awake') this.set(t, 'asleep', `the worker is putting it to sleep (${by})`);
        this.report();
        break;
      default:
        this.logger.debug(`ignored tier announcement state ${String(msg.state)}`);
    }
  }
}
