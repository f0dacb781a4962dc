import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError, invalidApiKey } from '@spot/contract';
import { ApiKeysRepository, type ApiKeyAuthRow, type BillingStatus } from '@spot/db';
import { hashApiKey, isWellFormedApiKey } from '@spot/keys';
import type { AuthedKey } from './authed-key';
import { KeyCache, type KeyCacheEntry } from './key-cache';
import { GatewayMetrics } from '../metrics/gateway-metrics';

/** How long {@link ApiKeyAuthService.byId} keeps a key (batch lines: off the interactive path). */
const BY_ID_TTL_MS = 5_000;

function redact(key: string): string {
  return key.length <= 12 ? '***' : `${key.slice(0, 12)}***${key.slice(-4)}`;
}

/**
 * When an org's billing standing starts refusing its requests: a canceled subscription at once, an unpaid
 * or past-due one after the grace period (counted from the status change); null when it is in good standing.
 */
export function billingBlockedAt(status: BillingStatus, since: Date | null, graceMs: number): number | null {
  switch (status) {
    case 'none':
    case 'active':
    case 'trialing':
      return null;
    case 'canceled':
      return since?.getTime() ?? 0;
    case 'past_due':
    case 'unpaid':
    case 'incomplete':
      return (since?.getTime() ?? 0) + graceMs;
  }
}

function toAuthedKey(row: ApiKeyAuthRow, graceMs: number): AuthedKey {
  const budget = row.org.monthlyBudgetMicros;
  return {
    id: row.id,
    orgId: row.orgId,
    prefix: row.prefix,
    allowedModels: row.allowedModels.length > 0 ? new Set(row.allowedModels) : null,
    rpmLimit: row.rpmLimit,
    tpmLimit: row.tpmLimit,
    expiresAtMs: row.expiresAt ? row.expiresAt.getTime() : null,
    budgetNanos: budget === null ? null : Number(budget) * 1_000,
    billingBlockedAtMs: billingBlockedAt(row.org.billingStatus, row.org.billingStatusAt, graceMs),
  };
}

/** The key of a cache entry, or the 401 for a missing, revoked or expired one. */
function verdict(entry: KeyCacheEntry, key: string, now: number): AuthedKey {
  const found = entry.key;
  if (found === null) {
    throw invalidApiKey(entry.revoked ? `The API key ${redact(key)} has been revoked.` : `Incorrect API key provided: ${redact(key)}.`);
  }
  if (found.expiresAtMs !== null && found.expiresAtMs <= now) throw invalidApiKey(`The API key ${redact(key)} has expired.`);
  return found;
}

/**
 * Verifies an API key by the key's SHA-256. Warm keys are answered from memory (no
 * Postgres, no Redis); a miss reads Postgres once, however many requests wait for it. Revocations arrive
 * over Redis pub/sub ({@link revoke}); a known key is re-read behind the request after KEY_CACHE_TTL_MS,
 * and if Postgres is down then, the last known answer is kept so warm keys go on working through an outage.
 */
@Injectable()
export class ApiKeyAuthService {
  private readonly logger = new Logger(ApiKeyAuthService.name);
  private readonly cache: KeyCache;
  private readonly inflight = new Map<string, Promise<KeyCacheEntry>>();
  private readonly byIdCache = new Map<string, { key: AuthedKey; at: number }>();
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly graceMs: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly keys: ApiKeysRepository,
    private readonly metrics: GatewayMetrics,
  ) {
    this.cache = new KeyCache(config.KEY_CACHE_MAX);
    this.ttlMs = config.KEY_CACHE_TTL_MS;
    this.negativeTtlMs = config.KEY_NEGATIVE_TTL_MS;
    this.graceMs = config.BILLING_PAST_DUE_GRACE_HOURS * 3_600_000;
  }

  /**
   * Verifies `key` (what {@link bearerCredential} read from the headers): the key itself when its answer is in
   * memory (the hot path: no promise, no await), else a promise of it once Postgres has answered.
   * @throws (or the promise rejects with) the 401/503 {@link ApiError} the client should get.
   */
  authenticate(key: string): AuthedKey | Promise<AuthedKey> {
    if (!isWellFormedApiKey(key)) throw invalidApiKey(`Incorrect API key provided: ${redact(key)}.`);
    const hash = hashApiKey(key);
    const now = Date.now();
    const entry = this.cache.get(hash);
    // a pushed revocation stands for a full TTL, whatever a lagging Postgres replica may still say
    if (entry === undefined || now - entry.fetchedAt > (entry.key || entry.revoked ? this.ttlMs : this.negativeTtlMs)) {
      if (entry?.key) {
        // a known key past its TTL: answer from memory, re-check Postgres behind the request (revocations are pushed)
        void this.load(hash, entry);
      } else {
        return this.loadVerdict(hash, entry, key);
      }
    }
    return verdict(entry, key, now);
  }

  /**
   * The key a batch line runs as (the one that created its batch), by id: read from Postgres, kept a few seconds
   * (a batch sends many lines). A revoked, expired or deleted key gets the 401 its requests would.
   */
  async byId(id: string): Promise<AuthedKey> {
    const now = Date.now();
    const held = this.byIdCache.get(id);
    if (held !== undefined && now - held.at < BY_ID_TTL_MS) return held.key;
    const row = await this.keys.findAuthById(id);
    if (row === null || row.revokedAt !== null) throw invalidApiKey('The API key that created this batch has been revoked or deleted.');
    const key = toAuthedKey(row, this.graceMs);
    if (key.expiresAtMs !== null && key.expiresAtMs <= now) throw invalidApiKey('The API key that created this batch has expired.');
    if (this.byIdCache.size > 10_000) this.byIdCache.clear();
    this.byIdCache.set(id, { key, at: now });
    return key;
  }

  /** Applies a pushed revocation: the key is refused from now on in this process. */
  revoke(secretHash: string): void {
    this.cache.set(secretHash, { key: null, fetchedAt: Date.now(), revoked: true });
  }

  /** A key's settings changed: the next request with it re-reads Postgres. */
  forget(secretHash: string): void {
    this.cache.delete(secretHash);
  }

  /** An org's budget or billing standing changed: its keys are re-read on their next request. */
  forgetOrg(orgId: string): number {
    return this.cache.deleteOrg(orgId);
  }

  /**
   * Re-reads every verified key held in memory from Postgres, in one query, and applies what changed
   * (revoked, deleted, new settings of the key or its org): revocations cannot be pushed while the Redis
   * subscription is down. Resolves with how many keys were revoked or gone; rejects when Postgres fails
   * (the keys are kept as they are: warm keys go on working through an outage of both).
   */
  async revalidate(): Promise<number> {
    const hashes = this.cache.verifiedHashes();
    if (hashes.length === 0) return 0;
    const rows = await this.keys.findAuthByHashes(hashes);
    const found = new Map<string, (typeof rows)[number]>();
    for (const row of rows) found.set(row.secretHash, row);
    const now = Date.now();
    let gone = 0;
    for (const hash of hashes) {
      // a revocation pushed meanwhile, or a key evicted, is left as it is
      if (this.cache.get(hash)?.key == null) continue;
      const row = found.get(hash);
      if (row === undefined || row.revokedAt !== null) {
        gone++;
        this.cache.set(hash, { key: null, fetchedAt: now, revoked: row !== undefined });
      } else {
        this.cache.set(hash, { key: toAuthedKey(row, this.graceMs), fetchedAt: now, revoked: false });
      }
    }
    return gone;
  }

  private async loadVerdict(hash: string, stale: KeyCacheEntry | undefined, key: string): Promise<AuthedKey> {
    return verdict(await this.load(hash, stale), key, Date.now());
  }

  private load(hash: string, stale: KeyCacheEntry | undefined): Promise<KeyCacheEntry> {
    let pending = this.inflight.get(hash);
    if (pending === undefined) {
      this.metrics.keyLookups.inc();
      pending = this.keys
        .findAuthByHash(hash)
        .then(
          (row): KeyCacheEntry => {
            const revoked = row !== null && row.revokedAt !== null;
            const entry = { key: row === null || revoked ? null : toAuthedKey(row, this.graceMs), fetchedAt: Date.now(), revoked };
            this.cache.set(hash, entry);
            return entry;
          },
          (err: unknown): KeyCacheEntry => {
            if (stale?.key) {
              this.logger.warn(`Postgres unreachable while re-checking key ${stale.key.prefix}; serving the cached answer: ${String(err)}`);
              // try again in a second, not on every request
              const retry = { key: stale.key, fetchedAt: Date.now() - this.ttlMs + 1_000, revoked: false };
              this.cache.set(hash, retry);
              return retry;
            }
            this.logger.error(`Postgres unreachable while verifying a key: ${String(err)}`);
            throw new ApiError(503, 'server_error', 'The server is temporarily unable to verify API keys. Please retry shortly.', null, null, {
              'retry-after': '1',
            }, { cause: err });
          },
        )
        .finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, pending);
    }
    return pending;
  }
}
