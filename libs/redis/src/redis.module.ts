import { type DynamicModule, Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
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

/**
 * Options of a client on a request path: every command fails after `commandTimeoutMs` (an open connection
 * that stopped answering included), none waits for a connection (no offline queue), and none is re-sent
 * after a reconnect (a command that failed on its deadline must not be applied later behind its caller's back).
 */
export function deadlineRedisOptions(commandTimeoutMs: number, extra: RedisOptions = {}): RedisOptions {
  return redisOptions({ commandTimeout: commandTimeoutMs, enableOfflineQueue: false, autoResendUnfulfilledCommands: false, ...extra });
}

/** How long QUIT may take on a connection that looks alive (a Redis that stopped answering never replies). */
const QUIT_TIMEOUT_MS = 1_000;

/**
 * Closes a client: QUIT when connected (pending replies arrive), at once otherwise (QUIT would wait for a
 * connection) or when QUIT is not answered within {@link QUIT_TIMEOUT_MS}.
 */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const answered = await Promise.race([
    redis.quit().then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(resolve, QUIT_TIMEOUT_MS, false);
    }),
  ]);
  clearTimeout(timer);
  if (!answered) redis.disconnect();
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

@Module({})
class RedisWithDeadlineModule {}

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
export class RedisModule {
  /**
   * The same module, with the shared client's commands bounded by REDIS_COMMAND_TIMEOUT_MS and never queued
   * while disconnected ({@link deadlineRedisOptions}): for a process that serves requests from Redis.
   */
  static withCommandDeadline(): DynamicModule {
    return {
      module: RedisWithDeadlineModule,
      global: true,
      providers: [
        {
          provide: REDIS,
          inject: [APP_CONFIG],
          useFactory: (c: AppConfig) => new Redis(c.REDIS_URL, deadlineRedisOptions(c.REDIS_COMMAND_TIMEOUT_MS)),
        },
        RedisKeys,
        RedisCloser,
      ],
      exports: [REDIS, RedisKeys],
    };
  }
}
