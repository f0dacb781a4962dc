import type { PrismaService } from '@spot/db';
import type { Redis } from 'ioredis';
import { ServiceUnreachableError } from '../cli.errors';
import { redactUrl } from '@spot/config';
import { assertReachable } from './connectivity';

describe('redactUrl', () => {
  it('masks a password and keeps the rest', () => {
    expect(redactUrl('postgresql://postgres:s3cret@db:5432/spot')).toBe('postgresql://postgres:***@db:5432/spot');
    expect(redactUrl('redis://:pw@127.0.0.1:6379')).toBe('redis://:***@127.0.0.1:6379');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });
});

describe('assertReachable', () => {
  const ok = { ping: async () => undefined } as unknown as PrismaService;
  const pong = { ping: async () => 'PONG' } as unknown as Redis;
  const base = { prisma: ok, databaseUrl: 'postgresql://u:p@db/x', redis: pong, redisUrl: 'redis://r:6379', lastRedisError: () => null };

  it('passes when both answer', async () => {
    await expect(assertReachable(base)).resolves.toBeUndefined();
  });

  it('names Postgres with the driver message Prisma wraps', async () => {
    const prisma = {
      ping: async () => {
        throw new Error('\nInvalid `prisma.$queryRaw()` invocation:\n\n\nRaw query failed. Code: `N/A`. Message: `Can\'t reach database server at db:5432`');
      },
    } as unknown as PrismaService;
    const err = await assertReachable({ ...base, prisma }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnreachableError);
    expect((err as Error).message).toBe("Postgres (postgresql://u:***@db/x) is not available: Can't reach database server at db:5432");
  });

  it('names Redis with its last connection error, and gives up after the timeout', async () => {
    const redis = { ping: () => new Promise(() => undefined) } as unknown as Redis;
    const err = await assertReachable({ ...base, redis, lastRedisError: () => new Error('connect ETIMEDOUT') }, 50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnreachableError);
    expect((err as Error).message).toBe('Redis (redis://r:6379) is not available: connect ETIMEDOUT');
  });
});
