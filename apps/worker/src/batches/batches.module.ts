import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { QUEUE } from '@spot/queue';
import { loadTiersFile, ModelCatalog } from '@spot/tiers';
import { BatchRunner } from './batch-runner';
import { BatchValidator } from './batch-validator';
import { BatchesProcessor } from './batches.processor';
import { CapacityGate } from './capacity-gate';
import { LineClient } from './line-client';

/** The Batch API's execution on the `batches` queue. */
@Module({
  imports: [BullModule.registerQueue({ name: QUEUE.batches })],
  providers: [
    { provide: ModelCatalog, inject: [APP_CONFIG], useFactory: (config: AppConfig) => new ModelCatalog(loadTiersFile(config.TIERS_FILE)) },
    CapacityGate,
    LineClient,
    BatchRunner,
    BatchValidator,
    BatchesProcessor,
  ],
})
export class BatchesModule {}
