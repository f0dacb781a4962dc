import { Inject, Injectable } from '@nestjs/common';
import { ApiKeysRepository, type ApiKey, type ApiKeyChanges, type ApiKeyListRow } from '@spot/db';
import { REDIS, RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import { mintApiKey } from './api-key';
import { parseKeyName, parseKeyReference, parseLimit, parseModelIds } from './key-input';
import { ApiKeyNotFoundError, InvalidArgumentError, RevocationNotPublishedError } from './keys.errors';
import { KEY_CHANGED_CHANNEL, KEY_REVOCATION_CHANNEL, type KeyRevocationMessage } from './revocation';

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

/** What may change on a key after it is minted (absent: unchanged). */
export interface UpdateApiKeyInput {
  name?: string;
  allowedModels?: readonly string[];
  rpmLimit?: number | null;
  tpmLimit?: number | null;
  /** Null: never expires. Must be in the future. */
  expiresAt?: Date | null;
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

  /** An org's keys, newest first (never a secret or hash). */
  list(orgId: string): Promise<ApiKeyListRow[]> {
    return this.keys.listByOrg(orgId);
  }

  /** One key of an org, or null (another org's key id is null too). */
  async find(orgId: string, id: string): Promise<ApiKeyListRow | null> {
    if (!UUID.test(id)) return null;
    const row = await this.keys.findInOrg(orgId, id);
    if (row === null) return null;
    const { secretHash: _hash, ...rest } = row;
    return rest;
  }

  /**
   * Changes a key of an org and tells every gateway to re-read it.
   * @returns null when the org has no such key.
   * @throws InvalidArgumentError when an input breaks its rule.
   */
  async update(orgId: string, id: string, input: UpdateApiKeyInput): Promise<ApiKeyListRow | null> {
    const changes: ApiKeyChanges = {};
    if (input.name !== undefined) changes.name = parseKeyName(input.name);
    if (input.allowedModels !== undefined) changes.allowedModels = parseModelIds(input.allowedModels, 'allowedModels');
    if (input.rpmLimit !== undefined) changes.rpmLimit = parseLimit(input.rpmLimit, 'rpmLimit');
    if (input.tpmLimit !== undefined) changes.tpmLimit = parseLimit(input.tpmLimit, 'tpmLimit');
    if (input.expiresAt !== undefined) {
      if (input.expiresAt !== null && (Number.isNaN(input.expiresAt.getTime()) || input.expiresAt.getTime() <= Date.now())) {
        throw new InvalidArgumentError('expiresAt', 'must be a date in the future');
      }
      changes.expiresAt = input.expiresAt;
    }
    if (!UUID.test(id)) return null;
    const row = await this.keys.updateInOrg(orgId, id, changes);
    if (row === null) return null;
    const message: KeyRevocationMessage = { secretHash: row.secretHash, keyId: row.id };
    await this.redis.publish(this.redisKeys.key(KEY_CHANGED_CHANNEL), JSON.stringify(message));
    const { secretHash: _hash, ...rest } = row;
    return rest;
  }

  /**
   * Revokes a key of an org (by id) and announces it; null when the org has no such key.
   * @throws RevocationNotPublishedError (revoked, not announced).
   */
  async revokeInOrg(orgId: string, id: string): Promise<ApiKeyListRow | null> {
    if (!UUID.test(id) || (await this.keys.findInOrg(orgId, id)) === null) return null;
    await this.revoke(id);
    return this.find(orgId, id);
  }
}
