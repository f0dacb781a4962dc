import { Inject, Injectable, Logger } from '@nestjs/common';
import { ApiError } from '@spot/contract';
import { REDIS, RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import type { AuthedKey } from '../auth/authed-key';
import { GatewayMetrics } from '../metrics/gateway-metrics';

// One round trip: lease up to ARGV[1] requests and ARGV[2] tokens of this minute's window for this key,
// at least 1 request and ARGV[3] tokens (the request at hand), within the limits (0 = none).
// Returns {0, requests granted, tokens granted} or {1 = requests | 2 = tokens exhausted, 0, 0}.
const LEASE = `
local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local gr = tonumber(ARGV[1])
local gt = tonumber(ARGV[2])
local rpm = tonumber(ARGV[4])
local tpm = tonumber(ARGV[5])
if rpm > 0 then gr = math.min(gr, rpm - r) end
if tpm > 0 then gt = math.min(gt, tpm - t) end
if gr < 1 then return {1, 0, 0} end
if gt < tonumber(ARGV[3]) then return {2, 0, 0} end
redis.call('HINCRBY', KEYS[1], 'r', gr)
redis.call('HINCRBY', KEYS[1], 't', gt)
redis.call('PEXPIRE', KEYS[1], 120000)
return {0, gr, gt}
`;

interface LimiterRedis extends Redis {
  spotLease(key: string, requests: number, tokens: number, need: number, rpm: number, tpm: number): Promise<[number, number, number]>;
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

/**
 * Per-key requests-per-minute and tokens-per-minute limits, shared by every gateway replica through Redis.
 * Each replica leases a slice of a key's window (one atomic script, one round trip) and admits from its
 * lease locally until it runs out, so most requests make no round trip at all; a limit is never exceeded,
 * since every lease is taken from the shared count first (an unspent lease only lowers what others may
 * use until the window ends). Keys without limits cost nothing. A verdict that needs Redis is a promise,
 * which the caller overlaps with the engine's time to first token. A key refused for requests is refused
 * locally for the rest of its window. If Redis does not answer the check fails open (counted in a metric):
 * an outage of the limiter must not take the API down.
 */
@Injectable()
export class RateLimiter {
  private readonly logger = new Logger(RateLimiter.name);
  private readonly redis: LimiterRedis;
  private readonly leases = new Map<string, Lease>();
  private readonly refusedUntil = new Map<string, { until: number; error: ApiError }>();

  constructor(
    @Inject(REDIS) redis: Redis,
    private readonly keys: RedisKeys,
    private readonly metrics: GatewayMetrics,
  ) {
    if (!('spotLease' in redis)) redis.defineCommand('spotLease', { numberOfKeys: 1, lua: LEASE });
    this.redis = redis as LimiterRedis;
  }

  /** A refusal already known in this process for this window, or null. */
  refusedNow(key: AuthedKey): ApiError | null {
    if (this.refusedUntil.size === 0) return null;
    const r = this.refusedUntil.get(key.id);
    if (r === undefined) return null;
    if (Date.now() < r.until) return r.error;
    this.refusedUntil.delete(key.id);
    return null;
  }

  /**
   * Counts a request reserving `tokens`. null: admitted now (no limits, or within this process's lease).
   * Otherwise a promise of null (admitted) or of the 429 `rate_limit_exceeded` error; it never rejects.
   */
  admit(key: AuthedKey, tokens: number): Promise<ApiError | null> | null {
    const rpm = key.rpmLimit ?? 0;
    const tpm = key.tpmLimit ?? 0;
    if (rpm <= 0 && tpm <= 0) return null;
    const now = Date.now();
    const window = Math.floor(now / 60_000);
    let lease = this.leases.get(key.id);
    if (lease === undefined || lease.window !== window) {
      if (this.leases.size > 100_000) this.leases.clear();
      lease = { window, requests: 0, tokens: 0 };
      this.leases.set(key.id, lease);
    }
    if (lease.requests >= 1 && lease.tokens >= tokens) {
      lease.requests--;
      lease.tokens -= tokens;
      return null;
    }
    const retryMs = (window + 1) * 60_000 - now;
    const held = lease;
    return this.redis
      .spotLease(this.keys.key(`rl:${key.id}:${window}`), leaseSize(rpm, 100), Math.max(tokens, leaseSize(tpm, 1_000_000)), tokens, rpm, tpm)
      .then(
        ([which, requests, granted]) => {
          if (which === 0) {
            held.requests += requests - 1;
            held.tokens += granted - tokens;
            return null;
          }
          const error = refusal(key, which === 1, rpm, tpm, tokens, retryMs);
          if (which === 1) this.refusedUntil.set(key.id, { until: now + retryMs, error });
          return error;
        },
        (err: unknown) => {
          this.metrics.limiterErrors.inc();
          this.logger.warn(`rate limiter unavailable, admitting: ${String(err)}`);
          return null;
        },
      );
  }
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
