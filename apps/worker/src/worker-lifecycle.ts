import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig, redactUrl } from '@spot/config';
import { PrismaService } from '@spot/db';
import { probeServices } from '@spot/health';
import { REDIS } from '@spot/redis';
import { Redis } from 'ioredis';

const STARTUP_TIMEOUT_MS = 5_000;

/**
 * The worker's process lifecycle: checks Postgres and Redis at boot (failing fast, naming what is down),
 * then holds the process open until shutdown. The queue processors (BullMQ) live beside it and close in
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
    const { problems } = await probeServices(
      {
        prisma: this.prisma,
        databaseUrl: this.config.DATABASE_URL,
        redis: this.redis,
        redisUrl: this.config.REDIS_URL,
        lastRedisError: () => this.lastRedisError,
      },
      STARTUP_TIMEOUT_MS,
    );
    if (problems.length > 0) throw new Error(problems.join('; '));

    // Keep the process up until a signal, whatever the processors hold.
    this.keepAlive = setInterval(() => undefined, 1 << 30);
    this.logger.log('running: connected to Postgres and Redis');
  }

  onApplicationShutdown(signal?: string): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    this.logger.log(`stopping${signal ? ` on ${signal}` : ''}`);
  }
}
