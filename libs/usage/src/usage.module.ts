import { Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiKeysRepository, UsageEventsRepository } from '@spot/db';
import { UsageRecorder, type UsageRecorderOptions } from './usage-recorder';
import { RepositoryUsageSink } from './usage-sink';

/** The recorder's options from the app config (USAGE_FLUSH_MS, USAGE_BATCH_SIZE, USAGE_MEMORY_MAX, USAGE_SPOOL_DIR, USAGE_SPOOL_STALE_MS). */
export function usageRecorderOptions(config: AppConfig): UsageRecorderOptions {
  return {
    spoolDir: config.USAGE_SPOOL_DIR,
    flushMs: config.USAGE_FLUSH_MS,
    batchSize: config.USAGE_BATCH_SIZE,
    memoryMax: config.USAGE_MEMORY_MAX,
    staleClaimMs: config.USAGE_SPOOL_STALE_MS,
    journal: config.USAGE_JOURNAL,
  };
}

/**
 * Provides the process's one {@link UsageRecorder}, writing through the DbModule's repositories. Relies on the
 * global ConfigModule and DbModule being imported by the app.
 */
@Module({
  providers: [
    {
      provide: UsageRecorder,
      inject: [APP_CONFIG, UsageEventsRepository, ApiKeysRepository],
      useFactory: (config: AppConfig, events: UsageEventsRepository, keys: ApiKeysRepository) =>
        new UsageRecorder(new RepositoryUsageSink(events, keys), usageRecorderOptions(config)),
    },
  ],
  exports: [UsageRecorder],
})
export class UsageModule {}
