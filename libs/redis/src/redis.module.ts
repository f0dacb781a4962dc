import { Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { Redis, type RedisOptions } from 'ioredis';

/** Injection token of the process's shared ioredis client (commands only; subscribers make their own). */
export const REDIS = Symbol('REDIS');

/** Options every client of ours uses: fail fast instead of queueing forever while Redis is down. */
export function redisOptions(extra: RedisOptions = {}): RedisOptions {
  return {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    connectTimeout: 2_000,
    // ioredis otherwise keeps a 2 s timer alive after disconnecting a client that never connected
    disconnectTimeout: 200,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    ...extra,
  };
}

/** Closes a client: QUIT when connected (pending replies arrive), at once otherwise (QUIT would wait for a connection). */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
  else redis.disconnect();
}

/** Builds `prefix + name` Redis keys and channels from the configured REDIS_PREFIX. */
@Injectable()
export class RedisKeys {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  key(name: string): string {
    return this.config.REDIS_PREFIX + name;
  }
}

@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await closeRedis(this.redis);
  }
}

/** Redis for a process: one command client under {@link REDIS}, closed on shutdown. */
@Global()
@Module({
  providers: [
    { provide: REDIS, inject: [APP_CONFIG], useFactory: (c: AppConfig) => new Redis(c.REDIS_URL, redisOptions()) },
    RedisKeys,
    RedisCloser,
  ],
  exports: [REDIS, RedisKeys],
})
export class RedisModule {}
