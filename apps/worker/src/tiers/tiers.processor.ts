import { Processor, WorkerHost } from '@nestjs/bullmq';
import { JOB, type JobName, type JobPayload, QUEUE } from '@spot/queue';
import { Telemetry } from '@spot/telemetry';
import { type Job, UnrecoverableError } from 'bullmq';
import { traceJob } from '../tracing/job-span';
import { TierIdleService } from './tier-idle.service';

/** The `tiers` queue: scale-to-zero of idle tiers. */
@Processor(QUEUE.tiers, { concurrency: 1 })
export class TiersProcessor extends WorkerHost {
  constructor(
    private readonly idle: TierIdleService,
    private readonly telemetry: Telemetry,
  ) {
    super();
  }

  process(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    return traceJob(this.telemetry, QUEUE.tiers, job, () => this.run(job));
  }

  private async run(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    const name = job.name as JobName;
    switch (name) {
      case JOB.tiersIdle:
        return this.idle.runPass();
      case JOB.usageRollup:
      case JOB.usageRetention:
      case JOB.usagePartitions:
      case JOB.billingSync:
      case JOB.batchValidate:
      case JOB.batchChunk:
      case JOB.batchSweep:
      case JOB.filesCleanup:
        throw new UnrecoverableError(`job ${name} does not belong on the ${QUEUE.tiers} queue`);
    }
  }
}
