import { Inject, Injectable, Logger } from '@nestjs/common';
import { ApiError } from '@spot/contract';
import { REDIS, RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import type { AuthedKey } from '../auth/authed-key';
import { GatewayMetrics } from '../metrics/gateway-metrics';

// One round trip: count the request and its reserved tokens in this minute's window, undo and refuse if
// either limit is passed. Returns {0} or {1 = requests | 2 = tokens, ms until the window ends}.
const ADMIT = `
local r = redis.call('HINCRBY', KEYS[1], 'r', 1)
local t = redis.call('HINCRBY', KEYS[1], 't', ARGV[1])
if r == 1 then redis.call('PEXPIRE', KEYS[1], 120000) end
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local which = 0
if rpm > 0 and r > rpm then which = 1 elseif tpm > 0 and t > tpm then which = 2 end
if which == 0 then return {0, 0} end
redis.call('HINCRBY', KEYS[1], 'r', -1)
redis.call('HINCRBY', KEYS[1], 't', -tonumber(ARGV[1]))
return {which, tonumber(ARGV[4])}
`;

interface LimiterRedis extends Redis {
  spotAdmit(key: string, tokens: number, rpm: number, tpm: number, retryMs: number): Promise<[number, number]>;
}

/**
 * Per-key requests-per-minute and tokens-per-minute limits, shared by every gateway replica through Redis
 * (one atomic script, one round trip). Keys without limits cost nothing. The verdict is a promise so the
 * caller can overlap the round trip with the engine's time to first token; nothing reaches the client
 * before it settles. A key refused for requests is refused locally for the rest of its window (no Redis,
 * no engine). If Redis does not answer the check fails open (counted in a metric): an outage of the
 * limiter must not take the API down.
 */
@Injectable()
export class RateLimiter {
  private readonly logger = new Logger(RateLimiter.name);
  private readonly redis: LimiterRedis;
  private readonly refusedUntil = new Map<string, { until: number; error: ApiError }>();

  constructor(
    @Inject(REDIS) redis: Redis,
    private readonly keys: RedisKeys,
    private readonly metrics: GatewayMetrics,
  ) {
    if (!('spotAdmit' in redis)) redis.defineCommand('spotAdmit', { numberOfKeys: 1, lua: ADMIT });
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
   * Counts a request reserving `tokens`. null: the key has no limits. Otherwise resolves to null when
   * admitted or to the 429 `rate_limit_exceeded` error (never rejects).
   */
  admit(key: AuthedKey, tokens: number): Promise<ApiError | null> | null {
    const rpm = key.rpmLimit ?? 0;
    const tpm = key.tpmLimit ?? 0;
    if (rpm <= 0 && tpm <= 0) return null;
    const now = Date.now();
    const minute = Math.floor(now / 60_000);
    const retryMs = (minute + 1) * 60_000 - now;
    return this.redis.spotAdmit(this.keys.key(`rl:${key.id}:${minute}`), tokens, rpm, tpm, retryMs).then(
      ([which]) => {
        if (which === 0) return null;
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
