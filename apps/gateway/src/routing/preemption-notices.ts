import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { closeRedis, redisOptions } from '@spot/redis';
import {
  ModelCatalog,
  noticesFor,
  noticeTargets,
  type NoticeSource,
  parseNoticeMessage,
  type PreemptionNotice,
  PreemptionNoticeStore,
  readNoticeAnswer,
  type ReplicaRef,
  type TierView,
} from '@spot/tiers';
import { Redis } from 'ioredis';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { TierWaker } from './tier-waker';
import { type Endpoint, UpstreamPool } from './upstream-pool';

/** A replica's notice deadline was reached: what is still running there has to move before the machine goes. */
export interface NoticeDeadline {
  readonly tier: string;
  /** The replica's base URL (the catalog's spelling, as `Endpoint.origin`). */
  readonly endpoint: string;
  /** Epoch ms. */
  readonly deadlineAt: number;
}

export type NoticeDeadlineListener = (event: NoticeDeadline) => void;

/** A notice as GET /admin/tiers shows it. */
export interface NoticeView {
  deadlineAt: string;
  noticedAt: string;
  source: NoticeSource;
  by: string;
  /** Past the deadline: the replica counts as gone until it comes back as a new machine. */
  gone: boolean;
}

interface Held {
  notice: PreemptionNotice;
  timer: NodeJS.Timeout | null;
  /** A health check failed since the deadline: the machine went; its next success is the replacement. */
  downSinceDeadline: boolean;
}

/** Every gateway re-reads the notices this often (covers a lost message, an expired or deleted key). */
const SYNC_MS = 1_000;
/** Two notices on one replica whose deadlines are this close are the same notice (another poll, another gateway). */
const SAME_NOTICE_MS = 1_000;
const SUBSCRIBE_TIMEOUT_MS = 5_000;
const POLL_TIMEOUT_MS = 2_000;

/**
 * Preemption notices: replicas announced as going away at a deadline (the admin route, the CLI, or each replica's
 * notice URL from the tiers file, polled by every gateway). A notice taken anywhere is shared through Redis
 * ({@link PreemptionNoticeStore}: a message at once, and a re-read every second and at boot).
 *
 * From the notice on, the replica takes no new request while another can (`Endpoint.noticeDeadline`); requests in
 * flight there continue. When a tier has no replica left outside notice, the sleeping tier that would take its
 * models is woken at once ({@link TierWaker.wakeAhead}). At the deadline, {@link onDeadline}'s listeners are told
 * (stream continuation moves what still runs there). From then on the replica is gone, until it is replaced: a
 * health check fails after the deadline and a later one succeeds (a new machine at the same address), or, for a
 * tier with a `notice` block, its notice URL answers "no notice" while it is healthy. The admin route's DELETE
 * (and `tier resume`) clears a notice at any time; one nobody clears lapses `NOTICE_RETENTION_MS` after its
 * deadline. A notice read from a notice URL that later answers "no notice" before its deadline is withdrawn.
 */
@Injectable()
export class PreemptionNotices implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('PreemptionNotices');
  /** `tier\0endpoint` → the notice this gateway holds. */
  private readonly held = new Map<string, Held>();
  /** `tier\0endpoint` → when a notice there last changed here (a re-read sent before it must not undo it). */
  private readonly changedAt = new Map<string, number>();
  private readonly replicas: readonly ReplicaRef[];
  private readonly listeners = new Set<NoticeDeadlineListener>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly polling = new Set<string>();
  private subscriber: Redis | null = null;
  private syncing = false;
  private closed = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly pool: UpstreamPool,
    private readonly waker: TierWaker,
    private readonly metrics: GatewayMetrics,
    private readonly store: PreemptionNoticeStore,
  ) {
    this.replicas = catalog.tiers().flatMap((t) => t.endpoints.map((endpoint) => ({ tier: t.name, endpoint })));
    for (const t of catalog.tiers()) metrics.noticedReplicas.labels(t.name).set(0);
  }

  private get by(): string {
    return `gateway ${this.waker.gatewayId}`;
  }

  /**
   * Calls `listener` whenever a notice's deadline is reached on this gateway (at once for a notice learnt past
   * its deadline). Returns the function that unsubscribes it.
   */
  onDeadline(listener: NoticeDeadlineListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The notice on a replica, as this gateway holds it, or null. */
  noticeOf(tier: string, endpoint: string, now = Date.now()): NoticeView | null {
    const h = this.held.get(key(tier, endpoint));
    if (h === undefined) return null;
    const n = h.notice;
    return { deadlineAt: new Date(n.deadlineAt).toISOString(), noticedAt: new Date(n.noticedAt).toISOString(), source: n.source, by: n.by, gone: now >= n.deadlineAt };
  }

  /**
   * Marks `endpoint` of `tier` (every replica of the tier when omitted) as going away `deadlineS` seconds from now,
   * here at once and on every gateway through Redis.
   * @throws ApiError 404 for an unknown tier or replica; 503 when Redis did not take it (this gateway holds it).
   */
  async take(tier: string, endpoint: string | undefined, deadlineS: number, source: NoticeSource): Promise<PreemptionNotice[]> {
    const notices = noticesFor(tier, this.targets(tier, endpoint), deadlineS, source, this.by, Date.now());
    for (const n of notices) this.apply(n.tier, n.endpoint, n, source === 'cli' ? 'shared' : source);
    try {
      await this.store.put(notices);
    } catch (err) {
      throw new ApiError(503, 'server_error', `The notice holds on this gateway, but Redis did not take it, so other gateways do not know: ${String(err)}`, 'notice_not_shared', null, {
        'retry-after': '1',
      });
    }
    return notices;
  }

  /**
   * Clears the notice on `endpoint` of `tier` (every replica of the tier when omitted), here and on every gateway.
   * Returns the replicas that had one here.
   * @throws ApiError 404 for an unknown tier or replica; 503 when Redis did not take it.
   */
  async clear(tier: string, endpoint: string | undefined): Promise<string[]> {
    const endpoints = this.targets(tier, endpoint);
    const had = endpoints.filter((e) => this.held.has(key(tier, e)));
    for (const e of endpoints) this.apply(tier, e, null, 'admin');
    try {
      await this.store.clear(
        endpoints.map((e) => ({ tier, endpoint: e })),
        this.by,
      );
    } catch (err) {
      throw new ApiError(503, 'server_error', `The notice is cleared on this gateway, but Redis did not take it: ${String(err)}`, 'notice_not_shared', null, { 'retry-after': '1' });
    }
    return had;
  }

  /**
   * A health check of `e` ended: past a notice's deadline, a failure means the machine went away, and a success
   * after such a failure is its replacement, which clears the notice (for every gateway).
   */
  healthChecked(e: Endpoint, healthy: boolean): void {
    if (e.noticeDeadline === 0) return;
    const now = Date.now();
    for (const h of this.held.values()) {
      if (h.notice.endpoint !== e.origin || now < h.notice.deadlineAt) continue;
      if (!healthy) h.downSinceDeadline = true;
      else if (h.downSinceDeadline) this.replaced(h.notice, 'it answers health checks again after going away');
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    const sub = new Redis(this.config.REDIS_URL, redisOptions({ maxRetriesPerRequest: null }));
    sub.on('message', (_channel: string, payload: string) => this.onMessage(payload));
    sub.on('error', (err: Error) => this.logger.debug(`notice subscriber: ${err.message}`));
    this.subscriber = sub;
    const subscribed = await Promise.race([
      sub.subscribe(this.store.channel).then(
        () => true,
        (err: unknown) => {
          this.logger.warn(`cannot subscribe to ${this.store.channel}: ${String(err)}`);
          return false;
        },
      ),
      new Promise<boolean>((r) => setTimeout(r, SUBSCRIBE_TIMEOUT_MS, false).unref()),
    ]);
    if (!subscribed) this.logger.warn('preemption notices of other processes are learnt by re-reading Redis every second');
    // subscribed first: a notice taken meanwhile is read or heard
    await this.sync();
    const sync = setInterval(() => void this.sync(), SYNC_MS);
    sync.unref();
    this.timers.push(sync);
    for (const t of this.catalog.tiers()) {
      if (t.notice === null) continue;
      const poll = setInterval(() => void this.poll(t), t.notice.intervalMs);
      poll.unref();
      this.timers.push(poll);
      void this.poll(t);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const h of this.held.values()) if (h.timer !== null) clearTimeout(h.timer);
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) await closeRedis(sub);
  }

  private targets(tier: string, endpoint: string | undefined): readonly string[] {
    const found = noticeTargets(this.catalog, tier, endpoint);
    if (!found.ok) throw new ApiError(404, 'invalid_request_error', found.message, found.unknown === 'tier' ? 'tier_not_found' : 'endpoint_not_found', found.unknown === 'tier' ? 'tier' : 'endpoint');
    return found.endpoints;
  }

  private onMessage(payload: string): void {
    const msg = parseNoticeMessage(payload);
    if (msg === null) {
      this.logger.debug('ignored a malformed notice message');
      return;
    }
    if (!this.replicas.some((r) => r.tier === msg.tier && r.endpoint === msg.endpoint)) return;
    this.apply(msg.tier, msg.endpoint, msg.notice, 'shared');
  }

  /** Re-reads every replica's notice from Redis and applies what changed (not what changed here since the read was sent). */
  private async sync(): Promise<void> {
    if (this.syncing || this.closed || this.replicas.length === 0) return;
    this.syncing = true;
    const sentAt = Date.now();
    try {
      const notices = await this.store.read(this.replicas);
      this.replicas.forEach((r, i) => {
        if ((this.changedAt.get(key(r.tier, r.endpoint)) ?? 0) >= sentAt) return;
        this.apply(r.tier, r.endpoint, notices[i], 'shared');
      });
    } catch (err) {
      this.logger.debug(`cannot re-read preemption notices: ${String(err)}`);
    } finally {
      this.syncing = false;
    }
  }

  /** Asks each replica's notice URL once (skipped while the previous round of the tier still runs). */
  private async poll(view: TierView): Promise<void> {
    const spec = view.notice;
    if (spec === null || this.polling.has(view.name) || this.closed) return;
    this.polling.add(view.name);
    try {
      await Promise.all(
        view.endpoints.map(async (endpoint, i) => {
          const url = spec.urls[i];
          let status: number;
          let body: string;
          try {
            const res = await fetch(url, { signal: AbortSignal.timeout(Math.min(POLL_TIMEOUT_MS, spec.intervalMs)) });
            status = res.status;
            body = await res.text();
          } catch (err) {
            this.logger.debug(`notice URL ${url} of tier ${view.name}: ${String((err as Error).cause ?? err)}`);
            return;
          }
          const now = Date.now();
          const answer = readNoticeAnswer(status, body, now, spec.defaultDeadlineS);
          const held = this.held.get(key(view.name, endpoint));
          switch (answer.kind) {
            case 'notice':
              // a later answer may bring a deadline forward, never push it back
              if (held === undefined || answer.deadlineAt < held.notice.deadlineAt - SAME_NOTICE_MS) {
                await this.takePolled(view.name, endpoint, answer.deadlineAt, now);
              }
              break;
            case 'none':
              if (held === undefined) break;
              if (now < held.notice.deadlineAt) {
                if (held.notice.source === 'poll') this.replaced(held.notice, 'its notice URL withdrew the notice');
              } else if (this.pool.endpoint(endpoint, view.name).state === 'closed') {
                this.replaced(held.notice, 'it is healthy and its notice URL reports no notice');
              }
              break;
            case 'unknown':
              this.logger.debug(`notice URL ${url} of tier ${view.name}: ${answer.why}`);
              break;
          }
        }),
      );
    } finally {
      this.polling.delete(view.name);
    }
  }

  private async takePolled(tier: string, endpoint: string, deadlineAt: number, now: number): Promise<void> {
    const notice: PreemptionNotice = { tier, endpoint, deadlineAt, noticedAt: now, source: 'poll', by: this.by };
    this.apply(tier, endpoint, notice, 'poll');
    await this.store.put([notice], now).catch((err: unknown) => this.logger.warn(`a notice read from tier ${tier}'s notice URL could not be shared: ${String(err)}`));
  }

  /** The replica of `notice` came back as a new machine (or its notice was withdrawn): cleared here and everywhere. */
  private replaced(notice: PreemptionNotice, why: string): void {
    this.logger.log(`engine ${notice.endpoint} (tier ${notice.tier}) is back in rotation: ${why}`);
    this.apply(notice.tier, notice.endpoint, null, 'shared');
    this.store
      .clear([{ tier: notice.tier, endpoint: notice.endpoint }], this.by)
      .catch((err: unknown) => this.logger.warn(`the cleared notice on ${notice.endpoint} could not be shared: ${String(err)}`));
  }

  /** Holds `notice` on a replica (null: clears it); `via` says how this gateway learnt it, for the metrics. */
  private apply(tier: string, endpoint: string, notice: PreemptionNotice | null, via: 'admin' | 'poll' | 'shared'): void {
    const k = key(tier, endpoint);
    const cur = this.held.get(k);
    if (notice === null) {
      if (cur === undefined) return;
      this.changedAt.set(k, Date.now());
      if (cur.timer !== null) clearTimeout(cur.timer);
      this.held.delete(k);
      this.settle(tier, endpoint);
      this.logger.log(`the preemption notice on ${endpoint} (tier ${tier}) is cleared`);
      return;
    }
    if (cur !== undefined && Math.abs(cur.notice.deadlineAt - notice.deadlineAt) <= SAME_NOTICE_MS) return;
    this.changedAt.set(k, Date.now());
    if (cur?.timer) clearTimeout(cur.timer);
    const held: Held = { notice, timer: null, downSinceDeadline: false };
    held.timer = setTimeout(() => this.deadline(held), Math.max(0, notice.deadlineAt - Date.now()));
    held.timer.unref();
    this.held.set(k, held);
    this.settle(tier, endpoint);
    this.metrics.preemptionNotices.labels(tier, via).inc();
    const inS = Math.max(0, Math.round((notice.deadlineAt - Date.now()) / 100) / 10);
    this.logger.warn(`engine ${endpoint} (tier ${tier}) goes away in ${inS} s (notice by ${notice.by}, ${notice.source}): no new requests go to it`);
    if (cur === undefined) this.wakeIfLost(tier);
  }

  /** The pool's view of a replica and the gauge follow the notices held (the earliest deadline, if two tiers share it). */
  private settle(tier: string, endpoint: string): void {
    let deadline = 0;
    for (const h of this.held.values()) if (h.notice.endpoint === endpoint && (deadline === 0 || h.notice.deadlineAt < deadline)) deadline = h.notice.deadlineAt;
    this.pool.endpoint(endpoint, tier).noticeDeadline = deadline;
    let n = 0;
    for (const h of this.held.values()) if (h.notice.tier === tier) n++;
    this.metrics.noticedReplicas.labels(tier).set(n);
  }

  /** Every replica of `tier` is noticed or unusable: wake the sleeping tier that takes over, now. */
  private wakeIfLost(tier: string): void {
    const view = this.catalog.tier(tier);
    if (view === undefined) return;
    const now = Date.now();
    if (view.endpoints.some((o) => this.pool.endpoint(o, tier).usable(now))) return;
    for (const woken of this.waker.wakeAhead(tier)) {
      this.metrics.noticeWakes.labels(woken).inc();
      this.logger.warn(`tier ${tier} loses its last replicas: waking tier ${woken} now`);
    }
  }

  private deadline(h: Held): void {
    h.timer = null;
    const { tier, endpoint, deadlineAt } = h.notice;
    this.metrics.noticeDeadlines.labels(tier).inc();
    this.logger.warn(`engine ${endpoint} (tier ${tier}) reached its preemption deadline: it counts as gone`);
    for (const listener of [...this.listeners]) {
      try {
        listener({ tier, endpoint, deadlineAt });
      } catch (err) {
        this.logger.error(`a notice deadline listener failed: ${String(err)}`);
      }
    }
  }
}

function key(tier: string, endpoint: string): string {
  return `${tier}\u0000${endpoint}`;
}
