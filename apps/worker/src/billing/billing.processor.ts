import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Logger } from '@nestjs/common';
import { BillingSyncService } from '@spot/billing';
import { JOB, type JobName, type JobPayload, QUEUE } from '@spot/queue';
import { Telemetry } from '@spot/telemetry';
import { type Job, UnrecoverableError } from 'bullmq';
import { traceJob } from '../tracing/job-span';

/** The `billing` queue: pushes rollup deltas to Stripe meter events (exactly once, see BillingSyncService). */
@Processor(QUEUE.billing, { concurrency: 1 })
export class BillingProcessor extends WorkerHost {
  private readonly logger = new Logger('BillingProcessor');

  constructor(
    private readonly sync: BillingSyncService,
    private readonly telemetry: Telemetry,
  ) {
    super();
  }

  process(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    return traceJob(this.telemetry, QUEUE.billing, job, () => this.run(job));
  }

  private async run(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    const name = job.name as JobName;
    switch (name) {
      case JOB.billingSync: {
        const pass = await this.sync.runPass();
        if (pass.queued + pass.accepted + pass.duplicates + pass.rejected > 0 || pass.pending > 0) {
          this.logger.log(
            `billing sync: ${pass.queued} meter events queued from ${pass.rollups} rollups, ${pass.accepted} accepted, ` +
              `${pass.duplicates} already billed, ${pass.rejected} refused, ${pass.pending} pending in ${pass.ms} ms`,
          );
        }
        if (pass.rejected > 0) this.logger.error(`${pass.rejected} meter events refused by Stripe: see meter_event_outbox (status rejected*)`);
        if (pass.failedOrgs.length > 0) {
          this.logger.warn(`billing sync: ${pass.held} meter events of ${pass.failedOrgs.length} failing org(s) held (${pass.failedOrgs.join(', ')}); the others synced`);
        }
        return pass;
      }
      case JOB.usageRollup:
      case JOB.usageRetention:
      case JOB.usagePartitions:
      case JOB.tiersIdle:
      case JOB.batchValidate:
      case JOB.batchChunk:
      case JOB.batchSweep:
      case JOB.filesCleanup:
        throw new UnrecoverableError(`job ${name} does not belong on the ${QUEUE.billing} queue`);
    }
  }
}
