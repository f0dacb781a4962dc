import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { ApiError } from '@spot/contract';
import { UsageEventsRepository } from '@spot/db';
import { REDIS, RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import type { AuthedKey } from '../auth/authed-key';
import { GatewayMetrics } from '../metrics/gateway-metrics';

// One round trip for everything a request needs from Redis.
// Budget (ARGV[7] >= 0): KEYS[2] is the org's month ledger {spent, r:<gateway> reserved, t:<gateway> last
// seen}; reservations of gateways unseen for a minute (crashed) are dropped. Refuses with {3} when the ledger
// is missing (the caller seeds it from Postgres and asks again) and {4, used} when spent + reserved + this
// request's worst case ARGV[8] would pass the budget.
// Limits (ARGV[1] = 1): lease up to ARGV[2] requests and ARGV[3] tokens of this minute's window KEYS[1], at
// least 1 request and ARGV[4] tokens (the request at hand), within rpm ARGV[5] / tpm ARGV[6] (0 = none);
// {1} requests or {2} tokens exhausted.
// Otherwise reserves the worst case for this gateway (ARGV[9]) and returns {0, requests, tokens granted}.
const ADMIT = `
local budget = tonumber(ARGV[7])
local now = tonumber(ARGV[10])
if budget >= 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then return {3, 0, 0} end
  local h = redis.call('HGETALL', KEYS[2])
  local used = 0
  local alive = {}
  for i = 1, #h, 2 do
    if h[i] == 'spent' then used = used + tonumber(h[i + 1])
    elseif string.sub(h[i], 1, 2) == 't:' then alive[string.sub(h[i], 3)] = tonumber(h[i + 1]) >= now - 60000 end
  end
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'r:' then
      local gw = string.sub(h[i], 3)
      if alive[gw] then used = used + tonumber(h[i + 1]) else redis.call('HDEL', KEYS[2], h[i], 't:' .. gw) end
    end
  end
  if used + tonumber(ARGV[8]) > budget then return {4, used, 0} end
end
local gr, gt = 0, 0
if ARGV[1] == '1' then
  local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
  local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  gr = tonumber(ARGV[2])
  gt = tonumber(ARGV[3])
  local rpm = tonumber(ARGV[5])
  local tpm = tonumber(ARGV[6])
  if rpm > 0 then gr = math.min(gr, rpm - r) end
  if tpm > 0 then gt = math.min(gt, tpm - t) end
  if gr < 1 then return {1, 0, 0} end
  if gt < tonumber(ARGV[4]) then return {2, 0, 0} end
  redis.call('HINCRBY', KEYS[1], 'r', gr)
  redis.call('HINCRBY', KEYS[1], 't', gt)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if budget >= 0 then
  redis.call('HINCRBY', KEYS[2], 'r:' .. ARGV[9], ARGV[8])
  redis.call('HSET', KEYS[2], 't:' .. ARGV[9], now)
  redis.call('PEXPIRE', KEYS[2], ARGV[11])
end
return {0, gr, gt}
`;

// Settles one request on an existing ledger: spent += ARGV[2], this gateway's reservation -= ARGV[1].
const SETTLE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
if ARGV[1] ~= '0' then
  redis.call('HINCRBY', KEYS[1], 'r:' .. ARGV[3], 0 - tonumber(ARGV[1]))
  redis.call('HSET', KEYS[1], 't:' .. ARGV[3], ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

// Seeds a missing ledger with the month's spend so far (first writer wins).
const SEED = `
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

interface LimiterRedis extends Redis {
  spotAdmit(
    rlKey: string,
    budgetKey: string,
    lease: 0 | 1,
    requests: number,
    tokens: number,
    need: number,
    rpm: number,
    tpm: number,
    budgetNanos: number,
    worstNanos: number,
    gateway: string,
    nowMs: number,
    ledgerTtlMs: number,
  ): Promise<[number, number, number]>;
  spotSettle(budgetKey: string, reservedNanos: number, actualNanos: number, gateway: string, nowMs: number, ledgerTtlMs: number): Promise<number>;
  spotSeed(budgetKey: string, spentNanos: number, ledgerTtlMs: number): Promise<number>;
}

/**
 * Where a request's budget reservation is kept until it settles: the exchange relaying it. `finished` tells
 * a reservation that arrives after the request ended to release itself at once.
 */
export interface BudgetHold {
  budgetKey: string | null;
  reservedNanos: number;
  readonly finished: boolean;
}

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
/** Reservations of a gateway not seen for a minute are dropped by the others; refresh well within that. */
const HEARTBEAT_MS = 20_000;

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
 * the month's usage_events.
 *
 * A verdict that needs Redis is a promise, which the caller overlaps with the engine's time to first token.
 * If Redis (or the seeding read) fails the check fails open, counted in a metric: an outage of the limiter
 * must not take the API down.
 */
@Injectable()
export class RateLimiter implements OnApplicationShutdown {
  private readonly logger = new Logger(RateLimiter.name);
  private readonly redis: LimiterRedis;
  private readonly leases = new Map<string, Lease>();
  private readonly refusedUntil = new Map<string, { until: number; error: ApiError }>();
  private readonly seeding = new Map<string, Promise<void>>();
  /** Ledgers this gateway holds reservations in, and how much: refreshed by a heartbeat while non-zero. */
  private readonly held = new Map<string, number>();
  private readonly settles: Array<[string, number, number]> = [];
  private settleScheduled = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly gateway = randomBytes(6).toString('hex');

  constructor(
    @Inject(REDIS) redis: Redis,
    private readonly keys: RedisKeys,
    private readonly metrics: GatewayMetrics,
    private readonly usage: UsageEventsRepository,
  ) {
    if (!('spotAdmit' in redis)) {
      redis.defineCommand('spotAdmit', { numberOfKeys: 2, lua: ADMIT });
      redis.defineCommand('spotSettle', { numberOfKeys: 1, lua: SETTLE });
      redis.defineCommand('spotSeed', { numberOfKeys: 1, lua: SEED });
    }
    this.redis = redis as LimiterRedis;
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
   * org has none). null: admitted now (nothing to check, or within this process's lease). Otherwise a
   * promise of null (admitted) or of the 429 error; it never rejects. A budget reservation is recorded on
   * `hold`, which must be passed to {@link settle} when the request ends.
   */
  admit(key: AuthedKey, tokens: number, worstNanos: number, hold: BudgetHold): Promise<ApiError | null> | null {
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
    return this.ask(key, tokens, worstNanos, hold, lease, now, window, true);
  }

  /**
   * Settles a finished request: its real cost is added to its org's ledger and its reservation released.
   * A request of a budgeted org that holds no reservation (its check failed open) still adds its cost.
   */
  settle(key: AuthedKey, hold: BudgetHold, actualNanos: number): void {
    const budgetKey = hold.budgetKey;
    if (budgetKey !== null) {
      hold.budgetKey = null;
      this.release(budgetKey, hold.reservedNanos);
      this.queueSettle(budgetKey, hold.reservedNanos, actualNanos);
    } else if (key.budgetNanos !== null && actualNanos > 0) {
      this.queueSettle(this.ledgerKey(key.orgId, Date.now()), 0, actualNanos);
    }
  }

  onApplicationShutdown(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  private knownRefusal(id: string): ApiError | null {
    const r = this.refusedUntil.get(id);
    if (r === undefined) return null;
    if (Date.now() < r.until) return r.error;
    this.refusedUntil.delete(id);
    return null;
  }

  private ledgerKey(orgId: string, now: number): string {
    const d = new Date(now);
    return this.keys.key(`budget:${orgId}:${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`);
  }

  private ask(
    key: AuthedKey,
    tokens: number,
    worstNanos: number,
    hold: BudgetHold,
    lease: Lease | null,
    now: number,
    window: number,
    maySeed: boolean,
  ): Promise<ApiError | null> {
    const rpm = key.rpmLimit ?? 0;
    const tpm = key.tpmLimit ?? 0;
    const budget = key.budgetNanos;
    const budgetKey = budget === null ? '' : this.ledgerKey(key.orgId, now);
    const retryMs = (window + 1) * 60_000 - now;
    return this.redis
      .spotAdmit(
        this.keys.key(`rl:${key.id}:${window}`),
        budgetKey || this.keys.key('budget:none'),
        lease === null ? 0 : 1,
        leaseSize(rpm, 100),
        Math.max(tokens, leaseSize(tpm, 1_000_000)),
        tokens,
        rpm,
        tpm,
        budget ?? -1,
        worstNanos,
        this.gateway,
        now,
        LEDGER_TTL_MS,
      )
      .then(
        ([which, a, b]): ApiError | null | Promise<ApiError | null> => {
          if (which === 0) {
            if (lease !== null) {
              lease.requests += a - 1;
              lease.tokens += b - tokens;
            }
            if (budget !== null) this.reserved(budgetKey, worstNanos, hold);
            return null;
          }
          if (which === 3) {
            if (!maySeed) return null;
            return this.seed(key.orgId, budgetKey, now).then(() => this.ask(key, tokens, worstNanos, hold, lease, now, window, false));
          }
          if (which === 4) {
            const error = overBudget(budget ?? 0, a);
            // a budget refusal stands for a second in this process: no round trip per refused request
            this.refusedUntil.set(key.orgId, { until: Date.now() + 1_000, error });
            return error;
          }
          const error = refusal(key, which === 1, rpm, tpm, tokens, retryMs);
          if (which === 1) this.refusedUntil.set(key.id, { until: now + retryMs, error });
          return error;
        },
      )
      .catch((err: unknown) => {
        this.metrics.limiterErrors.inc();
        this.logger.warn(`rate limiter unavailable, admitting: ${String(err)}`);
        return null;
      });
  }

  private seed(orgId: string, budgetKey: string, now: number): Promise<void> {
    let pending = this.seeding.get(budgetKey);
    if (pending === undefined) {
      const d = new Date(now);
      const monthStart = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
      pending = this.usage
        .costSince(orgId, monthStart)
        .then((spent) => this.redis.spotSeed(budgetKey, spent, LEDGER_TTL_MS))
        .then(() => undefined)
        .finally(() => this.seeding.delete(budgetKey));
      this.seeding.set(budgetKey, pending);
    }
    return pending;
  }

  private reserved(budgetKey: string, nanos: number, hold: BudgetHold): void {
    if (hold.finished) {
      // the request ended (client gone, engine unreachable) before the verdict: give the reservation back
      this.queueSettle(budgetKey, nanos, 0);
      return;
    }
    hold.budgetKey = budgetKey;
    hold.reservedNanos = nanos;
    this.held.set(budgetKey, (this.held.get(budgetKey) ?? 0) + nanos);
    if (this.heartbeat === null) {
      this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
      this.heartbeat.unref();
    }
  }

  private release(budgetKey: string, nanos: number): void {
    const left = (this.held.get(budgetKey) ?? 0) - nanos;
    if (left > 0) this.held.set(budgetKey, left);
    else this.held.delete(budgetKey);
  }

  /** Keeps this gateway's outstanding reservations alive in their ledgers (long streams outlive a minute). */
  private beat(): void {
    if (this.held.size === 0) {
      if (this.heartbeat !== null) clearInterval(this.heartbeat);
      this.heartbeat = null;
      return;
    }
    for (const budgetKey of this.held.keys()) this.queueSettle(budgetKey, 0, 0);
  }

  private queueSettle(budgetKey: string, reservedNanos: number, actualNanos: number): void {
    this.settles.push([budgetKey, reservedNanos, actualNanos]);
    if (this.settleScheduled) return;
    this.settleScheduled = true;
    // one pipeline per event-loop turn, after the responses of this turn are written
    setImmediate(() => this.flushSettles());
  }

  private flushSettles(): void {
    this.settleScheduled = false;
    const batch = this.settles.splice(0);
    const now = Date.now();
    const pipeline = this.redis.pipeline() as unknown as LimiterRedis & { exec(): Promise<unknown> };
    for (const [budgetKey, reserved, actual] of batch) pipeline.spotSettle(budgetKey, reserved, actual, this.gateway, now, LEDGER_TTL_MS);
    pipeline.exec().catch((err: unknown) => {
      this.metrics.limiterErrors.inc();
      this.logger.warn(`could not settle ${batch.length} budget reservations: ${String(err)}`);
    });
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
