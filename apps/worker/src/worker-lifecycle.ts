import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig, redactUrl } from '@spot/config';
import { PrismaService } from '@spot/db';
import { REDIS } from '@spot/redis';
import { Redis } from 'ioredis';

const STARTUP_TIMEOUT_MS = 5_000;

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function lastLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const last = message.split('\n').filter((l) => l.trim() !== '').at(-1)?.trim() ?? message;
  return /Message: `(.*)`$/.exec(last)?.[1] ?? last;
}

/**
 * The worker's process lifecycle: checks Postgres and Redis at boot (failing fast, naming what is down),
 * then holds the process open until shutdown. Queue processors (BullMQ) will live beside it and close in
 * their own onModuleDestroy.
 */
@Injectable()
export class WorkerLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Worker');
  private keepAlive: NodeJS.Timeout | null = null;
  private redisDown = false;
  private lastRedisError: Error | null = null;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly prisma: PrismaService,
    @Inject(REDIS) private readonly redis: Redis,
  ) {
    // ioredis reconnects by itself; say so once per outage instead of once per attempt.
    this.redis.on('error', (err: Error) => {
      this.lastRedisError = err;
      if (this.redisDown) return;
      this.redisDown = true;
      this.logger.warn(`Redis (${redactUrl(this.config.REDIS_URL)}) unavailable, reconnecting: ${err.message}`);
    });
    this.redis.on('ready', () => {
      if (this.redisDown) this.logger.log('Redis is back');
      this.redisDown = false;
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    const [pg, redis] = await Promise.allSettled([
      within(this.prisma.ping(), STARTUP_TIMEOUT_MS),
      within(this.redis.ping(), STARTUP_TIMEOUT_MS),
    ]);
    const problems: string[] = [];
    if (pg.status === 'rejected') {
      problems.push(`Postgres (${redactUrl(this.config.DATABASE_URL)}) is not available: ${lastLine(pg.reason)}`);
    }
    if (redis.status === 'rejected') {
      problems.push(`Redis (${redactUrl(this.config.REDIS_URL)}) is not available: ${lastLine(this.lastRedisError ?? redis.reason)}`);
    }
    if (problems.length > 0) throw new Error(problems.join('; '));

    // Nothing else holds the event loop yet (no processors): keep the process up until a signal.
    this.keepAlive = setInterval(() => undefined, 1 << 30);
    this.logger.log('running: connected to Postgres and Redis (no queue processors yet)');
  }

  onApplicationShutdown(signal?: string): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    this.logger.log(`stopping${signal ? ` on ${signal}` : ''}`);
  }
}
