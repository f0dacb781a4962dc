import { type DynamicModule, Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { type Command, Redis, type RedisOptions } from 'ioredis';

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
 * A client whose every command fails ("Command timed out") when Redis has not answered it within its deadline,
 * an open connection that stopped answering included. Unlike ioredis' `commandTimeout`, a reply that arrived
 * in time but was not read yet (the event loop was busy past the deadline) still wins: the deadline is
 * enforced after the pending I/O of that turn, so a loaded process does not take a slow loop for a dead Redis.
 */
// the compiler does not carry ioredis' constructor overloads over to a subclass: name the one used here
const RedisByUrl = Redis as unknown as new (url: string, options: RedisOptions) => Redis;

class DeadlineRedis extends RedisByUrl {
  /** Set once constructed (the connection, and so the first command, comes on a later turn). */
  deadlineMs = 0;

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    if (this.deadlineMs > 0 && !command.isSettled) setTimeout(expire, this.deadlineMs, command).unref();
    return super.sendCommand(command, stream);
  }
}

function expire(command: Command): void {
  if (command.isSettled) return;
  // a reply already in the socket's buffer is read in this turn's poll phase, before the check phase
  setImmediate(() => {
    if (!command.isSettled) command.reject(new Error('Command timed out'));
  });
}

/**
 * A client for a request path: every command fails after `commandTimeoutMs` without an answer
 * ({@link DeadlineRedis}), none waits for a connection (no offline queue), and none is re-sent after a
 * reconnect (a command that failed on its deadline must not be applied later behind its caller's back).
 */
export function deadlineRedis(url: string, commandTimeoutMs: number, extra: RedisOptions = {}): Redis {
  const redis = new DeadlineRedis(url, redisOptions({ enableOfflineQueue: false, autoResendUnfulfilledCommands: false, ...extra }));
  redis.deadlineMs = commandTimeoutMs;
  return redis;
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
   * while disconnected ({@link deadlineRedis}): for a process that serves requests from Redis.
   */
  static withCommandDeadline(): DynamicModule {
    return {
      module: RedisWithDeadlineModule,
      global: true,
      providers: [
        {
          provide: REDIS,
          inject: [APP_CONFIG],
          useFactory: (c: AppConfig) => deadlineRedis(c.REDIS_URL, c.REDIS_COMMAND_TIMEOUT_MS),
        },
        RedisKeys,
        RedisCloser,
      ],
      exports: [REDIS, RedisKeys],
    };
  }
}
