import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { PrismaClient } from './generated/prisma/client';

/**
 * The one Prisma client of a process (engine-free client over node-postgres). Connects lazily on first
 * query, so a process whose hot path does not need Postgres (the gateway with warm keys) starts without it.
 */
@Injectable()
export class PrismaService extends PrismaClient implements OnApplicationShutdown {
  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    super({
      adapter: new PrismaPg({
        connectionString: config.DATABASE_URL,
        max: 10,
        connectionTimeoutMillis: 3_000,
      }),
    });
  }

  /** One round trip; rejects when Postgres cannot be reached or used. */
  async ping(): Promise<void> {
    await this.$queryRaw`SELECT 1`;
  }

  // Last of the shutdown hooks: in-flight requests and usage flushes (before-shutdown hooks) still need it.
  async onApplicationShutdown(): Promise<void> {
    await this.$disconnect();
  }
}
