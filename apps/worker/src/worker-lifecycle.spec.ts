import { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';
import { loadConfig } from '@spot/config';
import type { PrismaService } from '@spot/db';
import type { Redis } from 'ioredis';
import { WorkerLifecycle } from './worker-lifecycle';

const config = loadConfig({ DATABASE_URL: 'postgresql://u:pw@db:5432/spot', REDIS_URL: 'redis://cache:6379', LOG_LEVEL: 'silent' });

function redisStub(ping: () => Promise<string>): Redis {
  return Object.assign(new EventEmitter(), { ping }) as unknown as Redis;
}

describe('WorkerLifecycle', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('starts when Postgres and Redis answer, and lets go of the process on shutdown', async () => {
    const prisma = { ping: async () => undefined } as unknown as PrismaService;
    const lifecycle = new WorkerLifecycle(config, prisma, redisStub(async () => 'PONG'));
    await lifecycle.onApplicationBootstrap();
    expect((lifecycle as unknown as { keepAlive: unknown }).keepAlive).not.toBeNull();
    lifecycle.onApplicationShutdown('SIGTERM');
    expect((lifecycle as unknown as { keepAlive: unknown }).keepAlive).toBeNull();
  });

  it('refuses to start, naming what is down and where (password masked)', async () => {
    const prisma = {
      ping: async () => {
        throw new Error('Raw query failed. Code: `N/A`. Message: `Can\'t reach database server at db:5432`');
      },
    } as unknown as PrismaService;
    const redis = redisStub(async () => {
      throw new Error('Reached the max retries per request limit');
    });
    const lifecycle = new WorkerLifecycle(config, prisma, redis);
    redis.emit('error', new Error('connect ECONNREFUSED 10.0.0.2:6379'));
    await expect(lifecycle.onApplicationBootstrap()).rejects.toThrow(
      "Postgres (postgresql://u:***@db:5432/spot) is not available: Can't reach database server at db:5432; " +
        'Redis (redis://cache:6379) is not available: connect ECONNREFUSED 10.0.0.2:6379',
    );
  });
});
