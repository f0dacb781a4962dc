import { BullModule } from '@nestjs/bullmq';
import { Logger, Module } from '@nestjs/common';
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
    { provide: ModelCatalog, inject: [APP_CONFIG], useFactory: batchCatalog },
    CapacityGate,
    LineClient,
    BatchRunner,
    BatchValidator,
    BatchesProcessor,
  ],
})
export class BatchesModule {}

/** The tiers batches run on; a worker without a tiers file still runs its other queues (its batches fail validation). */
function batchCatalog(config: AppConfig): ModelCatalog {
  try {
    return new ModelCatalog(loadTiersFile(config.TIERS_FILE));
  } catch (err) {
    new Logger('Batches').warn(`no batch tiers: ${err instanceof Error ? err.message : String(err)}`);
    return new ModelCatalog({ tiers: [] });
  }
}
