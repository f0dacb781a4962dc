import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { BillingModule } from '@spot/billing';
import { QUEUE } from '@spot/queue';
import { BillingSchedules } from './billing-schedules';
import { BillingProcessor } from './billing.processor';

/** Stripe sync on the `billing` queue. */
@Module({
  imports: [BullModule.registerQueue({ name: QUEUE.billing }), BillingModule],
  providers: [BillingProcessor, BillingSchedules],
})
export class BillingQueueModule {}
