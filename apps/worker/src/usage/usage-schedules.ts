import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { DEFAULT_JOB_OPTIONS, JOB, QUEUE } from '@spot/queue';
import type { Queue } from 'bullmq';

/**
 * Upserts the usage queue's job schedulers at boot: idempotent, so every worker replica may do it, and
 * BullMQ runs each scheduled job once whatever the number of workers.
 */
@Injectable()
export class UsageSchedules implements OnApplicationBootstrap {
  constructor(
    @InjectQueue(QUEUE.usage) private readonly queue: Queue,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.queue.upsertJobScheduler(
      JOB.usageRollup,
      { every: this.config.USAGE_ROLLUP_EVERY_MS },
      { name: JOB.usageRollup, data: { trigger: 'schedule' }, opts: DEFAULT_JOB_OPTIONS },
    );
    await this.queue.upsertJobScheduler(
      JOB.usageRetention,
      { every: 3_600_000 },
      { name: JOB.usageRetention, data: { trigger: 'schedule' }, opts: DEFAULT_JOB_OPTIONS },
    );
    // hourly, for today and USAGE_PARTITION_DAYS_AHEAD days: a few missed runs only send rows to the default partition
    await this.queue.upsertJobScheduler(
      JOB.usagePartitions,
      { every: 3_600_000 },
      { name: JOB.usagePartitions, data: { trigger: 'schedule' }, opts: DEFAULT_JOB_OPTIONS },
    );
  }
}
