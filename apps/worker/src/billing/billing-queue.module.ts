import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { BillingModule } from '@spot/billing';
import { QUEUE } from '@spot/queue';
import { BillingSchedules } from './billing-schedules';
import { PipelineMetrics } from '../metrics/pipeline-metrics';
import { WorkerMetricsServer } from '../metrics/worker-metrics.server';
import { BillingProcessor } from './billing.processor';

/** Stripe sync on the `billing` queue, and the worker's /metrics (billing sync's registry). */
@Module({
  imports: [BullModule.registerQueue({ name: QUEUE.billing }), BillingModule],
  providers: [BillingProcessor, BillingSchedules, WorkerMetricsServer, PipelineMetrics],
})
export class BillingQueueModule {}
