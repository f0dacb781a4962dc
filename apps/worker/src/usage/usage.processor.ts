import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Logger } from '@nestjs/common';
import { UsageRollupService } from '@spot/billing';
import { ResponsesRepository } from '@spot/db';
import { JOB, type JobName, type JobPayload, QUEUE } from '@spot/queue';
import { Telemetry } from '@spot/telemetry';
import { type Job, UnrecoverableError } from 'bullmq';
import { traceJob } from '../tracing/job-span';

/** The `usage` queue: hourly rollups (exactly once) and retention of raw events. */
@Processor(QUEUE.usage, { concurrency: 1 })
export class UsageProcessor extends WorkerHost {
  private readonly logger = new Logger('UsageProcessor');

  constructor(
    private readonly rollups: UsageRollupService,
    private readonly responses: ResponsesRepository,
    private readonly telemetry: Telemetry,
  ) {
    super();
  }

  process(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    return traceJob(this.telemetry, QUEUE.usage, job, () => this.run(job));
  }

  private async run(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    const name = job.name as JobName;
    switch (name) {
      case JOB.usageRollup: {
        const pass = await this.rollups.runPass();
        if (pass.events > 0) this.logger.log(`rolled up ${pass.events} events into ${pass.rollups} rollup rows in ${pass.ms} ms`);
        return pass;
      }
      case JOB.usageRetention: {
        const deleted = await this.rollups.dropExpired();
        if (deleted > 0) this.logger.log(`deleted ${deleted} rolled-up usage events past retention`);
        // stored Responses past RESPONSES_RETENTION_DAYS (already 404 at the gateway: expires_at is checked on read)
        const responses = await this.responses.deleteExpired(new Date());
        if (responses > 0) this.logger.log(`deleted ${responses} stored responses past retention`);
        return { deleted, responses };
      }
      case JOB.billingSync:
      case JOB.tiersIdle:
      case JOB.batchValidate:
      case JOB.batchChunk:
      case JOB.batchSweep:
      case JOB.filesCleanup:
        throw new UnrecoverableError(`job ${name} does not belong on the ${QUEUE.usage} queue`);
    }
  }
}
