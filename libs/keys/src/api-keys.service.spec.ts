import type { ApiKey, ApiKeysRepository, NewApiKey } from '@spot/db';
import type { RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import { hashApiKey, isWellFormedApiKey } from './api-key';
import { ApiKeysService } from './api-keys.service';
import { ApiKeyNotFoundError, InvalidArgumentError, RevocationNotPublishedError } from './keys.errors';

const ORG = '0f8fad5b-d9cb-469f-a165-70867728950e';

/** Repository stand-in: a unit test of the service's rules; the real table is exercised in test/e2e. */
class KeysRepoStub {
  readonly rows: ApiKey[] = [];

  async create(data: NewApiKey): Promise<ApiKey> {
    const row: ApiKey = {
      id: crypto.randomUUID(),
      orgId: data.orgId,
      name: data.name,
      prefix: data.prefix,
      secretHash: data.secretHash,
      allowedModels: data.allowedModels,
      rpmLimit: data.rpmLimit ?? null,
      tpmLimit: data.tpmLimit ?? null,
      createdById: data.createdById,
      createdAt: new Date(),
      expiresAt: data.expiresAt,
      revokedAt: null,
      lastUsedAt: null,
    };
    this.rows.push(row);
    return row;
  }

  async findByIdOrPrefix(ref: string): Promise<ApiKey | null> {
    return this.rows.find((r) => r.id === ref || r.prefix === ref) ?? null;
  }

  async revoke(id: string, at: Date): Promise<ApiKey | null> {
    const row = this.rows.find((r) => r.id === id);
    if (row && !row.revokedAt) row.revokedAt = at;
    return row ?? null;
  }
}

function setup(publish: (channel: string, message: string) => Promise<number>) {
  const repo = new KeysRepoStub();
  const redisKeys = { key: (name: string) => `t:${name}` } as RedisKeys;
  const service = new ApiKeysService(repo as unknown as ApiKeysRepository, { publish } as unknown as Redis, redisKeys);
  return { repo, service };
}

const base = { orgId: ORG, name: 'ci', allowedModels: [], expiresAt: null, createdById: null };

describe('ApiKeysService', () => {
  it('returns the key once and stores only its hash and prefix', async () => {
    const { repo, service } = setup(async () => 1);
    const created = await service.create({ ...base, allowedModels: ['a', 'b', 'a'], rpmLimit: 60 });
    expect(isWellFormedApiKey(created.key)).toBe(true);
    expect(created.key.startsWith(`${created.prefix}-`)).toBe(true);
    expect(created.allowedModels).toEqual(['a', 'b']);
    const [row] = repo.rows;
    expect(row.secretHash).toBe(hashApiKey(created.key));
    expect(JSON.stringify(row)).not.toContain(created.key.slice(created.prefix.length));
    expect(row.rpmLimit).toBe(60);
  });

  it('rejects bad input before touching the table', async () => {
    const { repo, service } = setup(async () => 1);
    await expect(service.create({ ...base, name: 'x'.repeat(101) })).rejects.toThrow(InvalidArgumentError);
    await expect(service.create({ ...base, orgId: 'acme' })).rejects.toThrow('orgId: expected a UUID');
    await expect(service.create({ ...base, allowedModels: ['no spaces'] })).rejects.toThrow('allowedModels:');
    await expect(service.create({ ...base, expiresAt: new Date(Date.now() - 1000) })).rejects.toThrow(
      'expiresAt: must be in the future',
    );
    await expect(service.create({ ...base, tpmLimit: 0 })).rejects.toThrow('tpmLimit:');
    expect(repo.rows).toHaveLength(0);
  });

  it('revokes by prefix and publishes the hash, never the key', async () => {
    const published: [string, string][] = [];
    const { service } = setup(async (channel, message) => {
      published.push([channel, message]);
      return 1;
    });
    const created = await service.create(base);
    const row = await service.revoke(created.prefix);
    expect(row.revokedAt).toBeInstanceOf(Date);
    expect(published).toEqual([
      ['t:keys:revoked', JSON.stringify({ secretHash: hashApiKey(created.key), keyId: created.id })],
    ]);

    const first = row.revokedAt;
    const again = await service.revoke(created.id);
    expect(again.revokedAt).toBe(first);
    expect(published).toHaveLength(2);
  });

  it('throws a typed not-found error for an unknown key', async () => {
    const { service } = setup(async () => 1);
    await expect(service.revoke('sk-spot-AAAAAAAAAAAA')).rejects.toMatchObject({ code: 'api_key_not_found' });
    await expect(service.revoke(crypto.randomUUID())).rejects.toThrow(ApiKeyNotFoundError);
  });

  it('says so when the revocation could not be announced', async () => {
    const { repo, service } = setup(async () => {
      throw new Error('Connection is closed.');
    });
    const created = await service.create(base);
    const err = await service.revoke(created.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RevocationNotPublishedError);
    expect((err as RevocationNotPublishedError).cause).toBeInstanceOf(Error);
    expect(repo.rows[0].revokedAt).not.toBeNull();
  });
});
