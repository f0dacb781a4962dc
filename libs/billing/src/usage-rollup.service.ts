import { Injectable, Logger } from '@nestjs/common';
import { UsageRollupsRepository } from '@spot/db';

/** What one pass did. */
export interface RollupPass {
  events: number;
  rollups: number;
  batches: number;
  ms: number;
}

const BATCH = 10_000;
const RETRIES = 5;

function retryable(err: unknown): boolean {
  // deadlock, serialization failure, lost connection: the batch rolled back, so running it again is safe
  const text = String((err as { message?: unknown })?.message ?? err);
  return /40P01|40001|deadlock|could not serialize|Connection|ECONNRESET|ECONNREFUSED|terminat/i.test(text);
}

/**
 * Rolls usage_events up into hourly usage_rollups, exactly once (see {@link UsageRollupsRepository.rollupBatch}).
 * Safe to run from several workers and the CLI at the same time. (Raw events past USAGE_RETENTION_DAYS go with
 * their day's partition: {@link UsagePartitionService.dropExpired}.)
 */
@Injectable()
export class UsageRollupService {
  private readonly logger = new Logger('UsageRollup');

  constructor(private readonly rollups: UsageRollupsRepository) {}

  /** Folds every event committed so far (batch by batch) and returns the totals. */
  async runPass(batchSize = BATCH): Promise<RollupPass> {
    const started = performance.now();
    const total: RollupPass = { events: 0, rollups: 0, batches: 0, ms: 0 };
    for (;;) {
      const batch = await this.withRetry(() => this.rollups.rollupBatch(batchSize));
      total.batches++;
      total.events += batch.events;
      total.rollups += batch.rollups;
      if (batch.events < batchSize) break;
    }
    total.ms = Math.round(performance.now() - started);
    return total;
  }

  private async withRetry<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (attempt >= RETRIES || !retryable(err)) throw err;
        this.logger.warn(`rollup batch failed (${String(err).slice(0, 200)}), retrying (${attempt}/${RETRIES - 1})`);
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }
}
