import { BullModule, InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Module, type OnApplicationBootstrap } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { DEFAULT_JOB_OPTIONS, JOB, QUEUE } from '@spot/queue';
import type { Queue } from 'bullmq';
import { TierIdleService } from './tier-idle.service';
import { TiersProcessor } from './tiers.processor';

/** Upserts the idle check's job scheduler (every TIER_IDLE_CHECK_MS; idempotent across worker replicas). */
@Injectable()
export class TiersSchedules implements OnApplicationBootstrap {
  constructor(
    @InjectQueue(QUEUE.tiers) private readonly queue: Queue,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.queue.upsertJobScheduler(
      JOB.tiersIdle,
      { every: this.config.TIER_IDLE_CHECK_MS },
      { name: JOB.tiersIdle, data: { trigger: 'schedule' }, opts: { ...DEFAULT_JOB_OPTIONS, attempts: 1 } },
    );
  }
}

/** Scale-to-zero on the `tiers` queue. */
@Module({
  imports: [BullModule.registerQueue({ name: QUEUE.tiers })],
  providers: [TierIdleService, TiersProcessor, TiersSchedules],
})
export class TiersModule {}
