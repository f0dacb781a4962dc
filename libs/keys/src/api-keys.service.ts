import { Inject, Injectable } from '@nestjs/common';
import { ApiKeysRepository, type ApiKey } from '@spot/db';
import { REDIS, RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import { mintApiKey } from './api-key';
import { parseKeyName, parseKeyReference, parseLimit, parseModelIds } from './key-input';
import { ApiKeyNotFoundError, InvalidArgumentError, RevocationNotPublishedError } from './keys.errors';
import { KEY_REVOCATION_CHANNEL, type KeyRevocationMessage } from './revocation';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What it takes to mint a key. */
export interface CreateApiKeyInput {
  orgId: string;
  name: string;
  /** Empty: every model the org can reach. */
  allowedModels: readonly string[];
  /** Null: never expires. Must be in the future. */
  expiresAt: Date | null;
  /** The user who minted it; null for operator tools such as the CLI. */
  createdById: string | null;
  rpmLimit?: number | null;
  tpmLimit?: number | null;
}

/** A freshly minted key. `key` is the only copy of the secret: show it once, never store or log it. */
export interface CreatedApiKey {
  id: string;
  key: string;
  prefix: string;
  name: string;
  allowedModels: string[];
  expiresAt: Date | null;
  createdAt: Date;
}

/**
 * Mints and revokes API keys. Only the key's SHA-256 reaches Postgres; revocations are announced on
 * Redis so that every gateway drops the key from its cache at once.
 */
@Injectable()
export class ApiKeysService {
  constructor(
    private readonly keys: ApiKeysRepository,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly redisKeys: RedisKeys,
  ) {}

  /**
   * Mints a key for an org.
   * @throws InvalidArgumentError when an input breaks its rule.
   */
  async create(input: CreateApiKeyInput): Promise<CreatedApiKey> {
    if (!UUID.test(input.orgId)) throw new InvalidArgumentError('orgId', 'expected a UUID');
    if (input.createdById !== null && !UUID.test(input.createdById)) {
      throw new InvalidArgumentError('createdById', 'expected a UUID or null');
    }
    const name = parseKeyName(input.name);
    const allowedModels = parseModelIds(input.allowedModels, 'allowedModels');
    if (input.expiresAt !== null) {
      if (Number.isNaN(input.expiresAt.getTime())) throw new InvalidArgumentError('expiresAt', 'is not a valid date');
      if (input.expiresAt.getTime() <= Date.now()) throw new InvalidArgumentError('expiresAt', 'must be in the future');
    }
    const rpmLimit = parseLimit(input.rpmLimit, 'rpmLimit');
    const tpmLimit = parseLimit(input.tpmLimit, 'tpmLimit');

    const minted = mintApiKey();
    const row = await this.keys.create({
      orgId: input.orgId,
      name,
      prefix: minted.prefix,
      secretHash: minted.secretHash,
      allowedModels,
      expiresAt: input.expiresAt,
      createdById: input.createdById,
      rpmLimit,
      tpmLimit,
    });
    return {
      id: row.id,
      key: minted.key,
      prefix: row.prefix,
      name: row.name,
      allowedModels: row.allowedModels,
      expiresAt: row.expiresAt,
      createdAt: row.createdAt,
    };
  }

  /**
   * Revokes a key by id, prefix (or whole key), then announces it on `REDIS_PREFIX + keys:revoked`.
   * Idempotent: revoking twice keeps the first time and announces again.
   * @returns the key's row, `revokedAt` set.
   * @throws InvalidArgumentError, ApiKeyNotFoundError, RevocationNotPublishedError (revoked, not announced).
   */
  async revoke(idOrPrefix: string): Promise<ApiKey> {
    const ref = parseKeyReference(idOrPrefix);
    const found = await this.keys.findByIdOrPrefix(ref);
    if (!found) throw new ApiKeyNotFoundError(ref);
    const row = await this.keys.revoke(found.id, new Date());
    if (!row) throw new ApiKeyNotFoundError(ref);

    const message: KeyRevocationMessage = { secretHash: row.secretHash, keyId: row.id };
    try {
      await this.redis.publish(this.redisKeys.key(KEY_REVOCATION_CHANNEL), JSON.stringify(message));
    } catch (err) {
      throw new RevocationNotPublishedError(row.id, { cause: err });
    }
    return row;
  }
}
