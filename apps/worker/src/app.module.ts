import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig, ConfigModule } from '@spot/config';
import { DbModule } from '@spot/db';
import { bullPrefix } from '@spot/queue';
import { RedisModule } from '@spot/redis';
import { TelemetryModule } from '@spot/telemetry';
import { Redis } from 'ioredis';
import { BatchesModule } from './batches/batches.module';
import { BillingQueueModule } from './billing/billing-queue.module';
import { TiersModule } from './tiers/tiers.module';
import { UsageModule } from './usage/usage.module';
import { WorkerLifecycle } from './worker-lifecycle';

/** The worker: BullMQ processors, one module per queue (`<queue>/<queue>.processor.ts`). */
@Module({
  imports: [
    ConfigModule,
    TelemetryModule.forRoot('spotinference-worker'),
    DbModule,
    RedisModule,
    BullModule.forRootAsync({
      inject: [APP_CONFIG],
      // BullMQ's workers block on Redis: their connection must retry forever instead of failing commands
      useFactory: (config: AppConfig) => ({
        connection: new Redis(config.REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: true }),
        prefix: bullPrefix(config.REDIS_PREFIX),
        defaultJobOptions: { removeOnComplete: { count: 1_000 }, removeOnFail: { count: 5_000 } },
      }),
    }),
    UsageModule,
    BillingQueueModule,
    TiersModule,
    BatchesModule,
  ],
  providers: [WorkerLifecycle],
})
export class AppModule {}
