import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ApiError } from '@spot/contract';
import { UsageEventsRepository } from '@spot/db';
import { REDIS, RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import type { AuthedKey } from '../auth/authed-key';
import { RedisHealth } from '../health/redis-health';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { type AdmitReply, AdmitVerdict, LedgerCommands } from './ledger-commands';
import { type Ledger, Reservation, ReservationState } from './reservation';

/** What this process may still admit for a key in the current window without asking Redis. */
interface Lease {
  window: number;
  requests: number;
  tokens: number;
}

/** How much of a limit one lease takes: a twentieth, so replicas share a window fairly. */
function leaseSize(limit: number, cap: number): number {
  return limit > 0 ? Math.max(1, Math.min(cap, Math.floor(limit / 20))) : cap;
}

/** A ledger is kept this long after its last use; an org without a budget stops touching it, so it lapses. */
const LEDGER_TTL_MS = 10 * 60_000;
/**
 * Registers this gateway and refreshes its reservations in their ledgers this often (the others drop the
 * reservations of a gateway unseen for a minute, and count the gateways heard from in 30 s).
 */
const HEARTBEAT_MS = 5_000;
/** While Redis is unreachable, a ledger read this long before its last answer is too old to decide from. */
const VIEW_MAX_AGE_MS = 60_000;
/** Deadline of the Postgres read of an org's month spend, when there is no view of its ledger. */
const SPEND_READ_TIMEOUT_MS = 2_000;
/** Settles that did not reach Redis are tried again this often (and at once when it is back). */
const SETTLE_RETRY_MS = 1_000;

const NO_LEDGER = 'budget:none';

/**
 * Per-key requests-per-minute and tokens-per-minute limits, and the org's monthly budget, shared by every
 * gateway replica through Redis, in at most one round trip per request.
 *
 * Limits: each replica leases a slice of a key's window (one atomic script) and admits from its lease
 * locally until it runs out, so most requests make no round trip at all; a limit is never exceeded, since
 * every lease is taken from the shared count first. A key refused for requests is refused locally for the
 * rest of its window.
 *
 * Budget: a request of an org with a budget reserves its worst case (prompt estimate and completion cap at
 * the dearest tier's price) in the org's month ledger and settles the real cost when it ends, so concurrent
 * streams cannot overshoot. A missing ledger (first request of the month, Redis restarted) is seeded from
 * the month's usage_events. Settles are sent in batches, one per ledger on the wire at a time, numbered so
 * that a batch re-sent after a lost reply is applied once; the gateway's reservations are written as a total,
 * so one whose admit timed out (applied or not) cannot stick.
 *
 * A verdict that needs Redis is a promise, which the caller overlaps with the engine's time to first token;
 * every command has a deadline (REDIS_COMMAND_TIMEOUT_MS). When Redis does not answer (or is known down:
 * {@link RedisHealth}), limits fail open (counted in a metric: an outage of the limiter must not take the API
 * down), but budgets do not: each gateway admits within its share of the headroom it last saw (the ledger's
 * total as last read, divided among the live gateways), counting what it reserved and spent since; with no
 * recent view, from the month's spend in Postgres. What it spent meanwhile reaches the ledger when Redis is back.
 */
@Injectable()
export class RateLimiter implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RateLimiter.name);
  private readonly commands: LedgerCommands;
  private readonly leases = new Map<string, Lease>();
  private readonly refusedUntil = new Map<string, { until: number; error: ApiError }>();
  private readonly seeding = new Map<string, Promise<void>>();
  private readonly ledgers = new Map<string, Ledger>();
  private readonly dirty = new Set<Ledger>();
  private flushScheduled = false;
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  /** Live gateways, as the registry last said (for a view read from Postgres). */
  private gateways = 1;
  private readonly gateway = randomBytes(6).toString('hex');
  private readonly registryKey: string;
  private readonly noLedgerKey: string;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly metrics: GatewayMetrics,
    private readonly usage: UsageEventsRepository,
    private readonly health: RedisHealth,
  ) {
    this.commands = new LedgerCommands(redis);
    this.registryKey = keys.key('gateways');
    this.noLedgerKey = keys.key(NO_LEDGER);
  }

  onModuleInit(): void {
    this.health.onRecovered(() => this.recovered());
    this.redis.on('ready', () => this.beat());
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
    this.beat();
  }

  onApplicationShutdown(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    if (this.retry !== null) clearTimeout(this.retry);
    this.heartbeat = null;
    this.retry = null;
  }

  /** A refusal already known in this process (for the key's window, or its org's budget), or null. */
  refusedNow(key: AuthedKey): ApiError | null {
    if (this.refusedUntil.size === 0) return null;
    return this.knownRefusal(key.id) ?? this.knownRefusal(key.orgId);
  }

  /** An org's budget changed: forget its remembered refusal. */
  forgetOrg(orgId: string): void {
    this.refusedUntil.delete(orgId);
  }

  /**
   * Counts a request reserving `tokens` of the key's TPM and `worstNanos` of its org's budget (0 when the
   * org has none). null: admitted now, nothing to settle (no limits, or within this process's lease).
   * Otherwise the request's {@link Reservation}: its verdict, and what it holds until {@link settle}.
   */
  admit(key: AuthedKey, tokens: number, worstNanos: number): Reservation | null {
    const rpm = key.rpmLimit ?? 0;
    const tpm = key.tpmLimit ?? 0;
    const budget = key.budgetNanos;
    const limited = rpm > 0 || tpm > 0;
    if (!limited && budget === null) return null;
    const now = Date.now();
    const window = Math.floor(now / 60_000);
    let lease: Lease | null = null;
    if (limited) {
      lease = this.leases.get(key.id) ?? null;
      if (lease === null || lease.window !== window) {
        if (this.leases.size > 100_000) this.leases.clear();
        lease = { window, requests: 0, tokens: 0 };
        this.leases.set(key.id, lease);
      }
      if (lease.requests >= 1 && lease.tokens >= tokens) {
        lease.requests--;
        lease.tokens -= tokens;
        if (budget === null) return null;
        lease = null;
      }
    }
    if (budget === null) {
      // limits fail open while Redis is down: no request waits for a command that cannot be answered
      if (!this.health.usable) return null;
      const r = new Reservation(null, 0);
      r.verdict = this.ask(key, tokens, r, lease, now, window, true);
      return r;
    }
    const ledger = this.ledgerFor(key.orgId, now);
    const r = new Reservation(ledger, worstNanos);
    ledger.held += worstNanos;
    ledger.pending += worstNanos;
    ledger.lastUse = now;
    if (this.health.usable) r.verdict = this.ask(key, tokens, r, lease, now, window, true);
    else {
      const local = this.decideLocally(key, r);
      r.verdict = local === null ? null : local instanceof ApiError ? Promise.resolve(local) : local;
    }
    return r;
  }

  /**
   * Settles a finished request: its real cost is added to its org's ledger and its reservation released
   * (when its verdict is not in yet, as soon as it is).
   */
  settle(r: Reservation, actualNanos: number): void {
    const ledger = r.ledger;
    if (ledger === null) return;
    switch (r.state) {
      case ReservationState.Pending:
        r.endedCost = Math.max(0, actualNanos);
        return;
      case ReservationState.Held:
        r.state = ReservationState.Done;
        ledger.held -= r.nanos;
        ledger.delta -= r.nanos;
        this.spend(ledger, actualNanos);
        return;
      case ReservationState.Done:
        if (actualNanos > 0) this.spend(ledger, actualNanos);
        return;
    }
  }

  private knownRefusal(id: string): ApiError | null {
    const r = this.refusedUntil.get(id);
    if (r === undefined) return null;
    if (Date.now() < r.until) return r.error;
    this.refusedUntil.delete(id);
    return null;
  }

  private ledgerFor(orgId: string, now: number): Ledger {
    const d = new Date(now);
    const key = this.keys.key(`budget:${orgId}:${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`);
    let ledger = this.ledgers.get(key);
    if (ledger === undefined) {
      ledger = { key, orgId, base: 0, gateways: 1, seenAt: 0, delta: 0, held: 0, pending: 0, open: 0, batch: null, seq: 0, sending: false, lastUse: now, loading: null };
      this.ledgers.set(key, ledger);
    }
    return ledger;
  }

  private ask(key: AuthedKey, tokens: number, r: Reservation, lease: Lease | null, now: number, window: number, maySeed: boolean): Promise<ApiError | null> {
    const rpm = key.rpmLimit ?? 0;
    const tpm = key.tpmLimit ?? 0;
    const ledger = r.ledger;
    return this.commands
      .admit({
        rlKey: this.keys.key(`rl:${key.id}:${window}`),
        ledgerKey: ledger === null ? this.noLedgerKey : ledger.key,
        registryKey: this.registryKey,
        lease: lease === null ? 0 : 1,
        requests: leaseSize(rpm, 100),
        tokens: Math.max(tokens, leaseSize(tpm, 1_000_000)),
        need: tokens,
        rpm,
        tpm,
        budgetNanos: key.budgetNanos ?? -1,
        worstNanos: r.nanos,
        gateway: this.gateway,
        nowMs: now,
        ledgerTtlMs: LEDGER_TTL_MS,
      })
      .then(
        (reply) => {
          this.health.answered();
          return this.verdict(key, tokens, r, lease, now, window, maySeed, reply);
        },
        (err: unknown) => {
          this.health.failed(err);
          this.metrics.limiterErrors.inc();
          this.logger.warn(`rate limiter: Redis did not answer (${String(err)}); limits fail open${ledger === null ? '' : ", the budget is checked from this gateway's view"}`);
          return ledger === null ? null : this.decideLocally(key, r);
        },
      );
  }

  private verdict(
    key: AuthedKey,
    tokens: number,
    r: Reservation,
    lease: Lease | null,
    now: number,
    window: number,
    maySeed: boolean,
    [which, a, b, used, gateways]: AdmitReply,
  ): ApiError | null | Promise<ApiError | null> {
    const ledger = r.ledger;
    if (ledger !== null && (which === AdmitVerdict.Admitted || which === AdmitVerdict.OverBudget)) {
      // the ledger as Redis has it now (this request's reservation included when admitted)
      ledger.base = used;
      ledger.gateways = Math.max(1, gateways);
      ledger.seenAt = Date.now();
      ledger.delta = 0;
      this.gateways = ledger.gateways;
    }
    switch (which) {
      case AdmitVerdict.Admitted:
        if (lease !== null) {
          lease.requests += a - 1;
          lease.tokens += b - tokens;
        }
        if (ledger !== null) this.hold(r);
        return null;
      case AdmitVerdict.NoLedger:
        if (ledger === null) return null;
        if (!maySeed) return this.decideLocally(key, r);
        return this.seed(ledger, now).then(
          () => this.ask(key, tokens, r, lease, now, window, false),
          (err: unknown) => {
            this.logger.warn(`cannot seed the budget ledger of org ${ledger.orgId}: ${String(err)}`);
            return this.decideLocally(key, r);
          },
        );
      case AdmitVerdict.OverBudget: {
        this.release(r, false);
        return this.refuseBudget(key, a);
      }
      case AdmitVerdict.NoRequests:
      case AdmitVerdict.NoTokens: {
        if (ledger !== null) this.release(r, false);
        const retryMs = (window + 1) * 60_000 - now;
        const error = refusal(key, which === AdmitVerdict.NoRequests, key.rpmLimit ?? 0, key.tpmLimit ?? 0, tokens, retryMs);
        if (which === AdmitVerdict.NoRequests) this.refusedUntil.set(key.id, { until: now + retryMs, error });
        return error;
      }
    }
  }

  /** Admitted: the reservation holds until it settles (at once, if the request ended meanwhile). */
  private hold(r: Reservation): void {
    const ledger = r.ledger!;
    ledger.pending -= r.nanos;
    r.state = ReservationState.Held;
    if (r.endedCost >= 0) this.settle(r, r.endedCost);
  }

  /**
   * Refused: the worst case is no longer held. `uncertain`: its admit may have reserved it in Redis all the
   * same (the command timed out), so the next settle writes the true total.
   */
  private release(r: Reservation, uncertain = true): void {
    const ledger = r.ledger!;
    ledger.pending -= r.nanos;
    ledger.held -= r.nanos;
    r.state = ReservationState.Done;
    if (r.endedCost > 0) this.spend(ledger, r.endedCost);
    else if (uncertain) this.markDirty(ledger);
  }

  private refuseBudget(key: AuthedKey, usedNanos: number): ApiError {
    const error = overBudget(key.budgetNanos ?? 0, usedNanos);
    // a budget refusal stands for a second in this process: no round trip per refused request
    this.refusedUntil.set(key.orgId, { until: Date.now() + 1_000, error });
    return error;
  }

  /**
   * Redis did not answer: admits within this gateway's share of the headroom it last saw, counting what it
   * reserved and spent since. A view too old (or none) is replaced by the month's spend read from Postgres.
   */
  private decideLocally(key: AuthedKey, r: Reservation): ApiError | null | Promise<ApiError | null> {
    const ledger = r.ledger!;
    const lastAnswer = this.health.lastAnswerAt;
    if (ledger.seenAt > 0 && lastAnswer - ledger.seenAt <= VIEW_MAX_AGE_MS) return this.judge(key, r);
    ledger.loading ??= this.loadView(ledger).finally(() => {
      ledger.loading = null;
    });
    return ledger.loading.then(
      () => (r.state === ReservationState.Pending ? this.judge(key, r) : null),
      (err: unknown) => {
        this.logger.warn(`org ${ledger.orgId}: no view of its budget (Redis unreachable, Postgres: ${String(err)}); refusing`);
        this.metrics.budgetLocal.labels('unknown').inc();
        this.release(r);
        return budgetUnknown();
      },
    );
  }

  private judge(key: AuthedKey, r: Reservation): ApiError | null {
    const ledger = r.ledger!;
    const share = ((key.budgetNanos ?? 0) - ledger.base) / ledger.gateways;
    if (ledger.delta + r.nanos <= share) {
      ledger.delta += r.nanos;
      this.metrics.budgetLocal.labels('admitted').inc();
      this.hold(r);
      return null;
    }
    this.metrics.budgetLocal.labels('refused').inc();
    this.release(r);
    return this.refuseBudget(key, ledger.base + Math.max(0, ledger.delta) * ledger.gateways);
  }

  /** The month's spend from Postgres as the ledger's base (it lags by what the recorder has not written yet). */
  private async loadView(ledger: Ledger): Promise<void> {
    const now = Date.now();
    const d = new Date(now);
    let timer: NodeJS.Timeout | undefined;
    const spent = await Promise.race([
      this.usage.costSince(ledger.orgId, new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${SPEND_READ_TIMEOUT_MS} ms`)), SPEND_READ_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    ledger.base = spent;
    ledger.gateways = this.gateways;
    ledger.seenAt = now;
    // what this gateway holds is not in usage_events yet
    ledger.delta = ledger.held - ledger.pending;
  }

  private seed(ledger: Ledger, now: number): Promise<void> {
    let pending = this.seeding.get(ledger.key);
    if (pending === undefined) {
      const d = new Date(now);
      const monthStart = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
      pending = this.usage
        .costSince(ledger.orgId, monthStart)
        .then((spent) => this.commands.seed(ledger.key, spent, LEDGER_TTL_MS))
        .then(() => undefined)
        .finally(() => this.seeding.delete(ledger.key));
      this.seeding.set(ledger.key, pending);
    }
    return pending;
  }

  private spend(ledger: Ledger, nanos: number): void {
    if (nanos > 0) {
      ledger.open += nanos;
      ledger.delta += nanos;
    }
    this.markDirty(ledger);
  }

  private markDirty(ledger: Ledger): void {
    this.dirty.add(ledger);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // one pipeline per event-loop turn, after the responses of this turn are written
    setImmediate(() => this.flush());
  }

  /** Sends what the dirty ledgers owe: one settle per ledger, and none while its previous one is on the wire. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.dirty.size === 0) return;
    if (!this.health.usable) {
      this.retryLater();
      return;
    }
    const now = Date.now();
    const pipeline = this.commands.pipeline();
    const sent: Ledger[] = [];
    for (const ledger of this.dirty) {
      if (ledger.sending) continue; // sent again when its reply is in
      this.dirty.delete(ledger);
      if (ledger.batch === null && ledger.open > 0) {
        ledger.batch = { seq: ++ledger.seq, nanos: ledger.open };
        ledger.open = 0;
      }
      const batch = ledger.batch;
      this.commands.settleIn(pipeline, ledger.key, this.gateway, batch?.seq ?? 0, batch?.nanos ?? 0, Math.max(0, ledger.held), now, LEDGER_TTL_MS);
      ledger.sending = true;
      sent.push(ledger);
    }
    if (sent.length === 0) return;
    pipeline.exec().then(
      (results) => {
        let failed = 0;
        sent.forEach((ledger, i) => {
          ledger.sending = false;
          const err = results?.[i]?.[0] ?? (results === null ? new Error('pipeline discarded') : null);
          if (err === null) {
            this.health.answered();
            // applied (1), or the ledger is gone (0) and will be seeded from usage_events, which have these requests
            ledger.batch = null;
            if (ledger.open > 0) this.dirty.add(ledger);
          } else {
            failed++;
            this.health.failed(err);
            this.dirty.add(ledger);
          }
        });
        if (failed > 0) {
          this.metrics.limiterErrors.inc();
          this.logger.warn(`could not settle the budgets of ${failed} org(s), will retry: ${String(results?.find((x) => x[0] !== null)?.[0])}`);
          this.retryLater();
        } else if (this.dirty.size > 0 && !this.flushScheduled) {
          this.flushScheduled = true;
          setImmediate(() => this.flush());
        }
      },
      (err: unknown) => {
        for (const ledger of sent) {
          ledger.sending = false;
          this.dirty.add(ledger);
        }
        this.health.failed(err);
        this.metrics.limiterErrors.inc();
        this.logger.warn(`could not settle the budgets of ${sent.length} org(s), will retry: ${String(err)}`);
        this.retryLater();
      },
    );
  }

  private retryLater(): void {
    if (this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.flush();
    }, SETTLE_RETRY_MS);
    this.retry.unref();
  }

  /** Redis is back: every ledger this gateway touched gets its true reservations and what it spent meanwhile. */
  private recovered(): void {
    for (const ledger of this.ledgers.values()) {
      if (ledger.held !== 0 || ledger.open > 0 || ledger.batch !== null) this.dirty.add(ledger);
    }
    this.beat();
    if (this.dirty.size > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Registers this gateway, keeps its reservations alive in their ledgers, forgets ledgers unused for long. */
  private beat(): void {
    const now = Date.now();
    for (const ledger of this.ledgers.values()) {
      if (ledger.held > 0) this.markDirty(ledger);
      else if (ledger.open === 0 && ledger.batch === null && !ledger.sending && ledger.loading === null && now - ledger.lastUse > LEDGER_TTL_MS) {
        this.ledgers.delete(ledger.key);
      }
    }
    if (this.redis.status !== 'ready') return;
    this.commands.register(this.registryKey, this.gateway, now).then(
      (n) => {
        this.gateways = Math.max(1, n);
      },
      (err: unknown) => this.logger.debug(`gateway registry: ${String(err)}`),
    );
  }
}

function overBudget(budgetNanos: number, usedNanos: number): ApiError {
  const usd = (n: number) => `$${(n / 1e9).toFixed(2)}`;
  return new ApiError(
    429,
    'insufficient_quota',
    `You exceeded your org's monthly budget of ${usd(budgetNanos)} (${usd(usedNanos)} spent or reserved this month). Raise the budget in the console, or wait until next month.`,
    'insufficient_quota',
    null,
    { 'x-should-retry': 'false' },
  );
}

function budgetUnknown(): ApiError {
  return new ApiError(503, 'server_error', "The org's budget cannot be checked right now. Please retry shortly.", null, null, { 'retry-after': '1' });
}

function refusal(key: AuthedKey, requests: boolean, rpm: number, tpm: number, tokens: number, retryMs: number): ApiError {
  const wait = Math.ceil(retryMs / 1000);
  return new ApiError(
    429,
    requests ? 'requests' : 'tokens',
    requests
      ? `Rate limit reached for requests on key ${key.prefix}: limit ${rpm} per minute. Please try again in ${wait}s.`
      : `Rate limit reached for tokens on key ${key.prefix}: limit ${tpm} per minute, this request reserves ${tokens}. Please try again in ${wait}s.`,
    'rate_limit_exceeded',
    null,
    { 'retry-after-ms': String(retryMs), 'retry-after': String(wait) },
  );
}
