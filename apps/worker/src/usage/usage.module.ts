import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { BillingModule } from '@spot/billing';
import { QUEUE } from '@spot/queue';
import { UsageSchedules } from './usage-schedules';
import { UsageProcessor } from './usage.processor';

/** Usage rollups and retention on the `usage` queue. */
@Module({
  imports: [BullModule.registerQueue({ name: QUEUE.usage }), BillingModule],
  providers: [UsageProcessor, UsageSchedules],
})
export class UsageModule {}
