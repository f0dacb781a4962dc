import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Logger } from '@nestjs/common';
import { UsagePartitionService, UsageRollupService } from '@spot/billing';
import { ResponsesRepository } from '@spot/db';
import { JOB, type JobName, type JobPayload, QUEUE } from '@spot/queue';
import { Telemetry } from '@spot/telemetry';
import { type Job, UnrecoverableError } from 'bullmq';
import { traceJob } from '../tracing/job-span';

/** The `usage` queue: hourly rollups (exactly once), usage_events partitions ahead, and retention of raw events. */
@Processor(QUEUE.usage, { concurrency: 1 })
export class UsageProcessor extends WorkerHost {
  private readonly logger = new Logger('UsageProcessor');

  constructor(
    private readonly rollups: UsageRollupService,
    private readonly partitions: UsagePartitionService,
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
        const events = await this.partitions.dropExpired();
        if (events.dropped.length > 0) this.logger.log(`dropped usage_events partitions past retention: ${events.dropped.join(', ')}`);
        if (events.kept.length > 0) this.logger.log(`kept usage_events partitions past retention until their rows are rolled up: ${events.kept.join(', ')}`);
        if (events.deleted > 0) this.logger.log(`deleted ${events.deleted} rolled-up usage events past retention`);
        // stored Responses past RESPONSES_RETENTION_DAYS (already 404 at the gateway: expires_at is checked on read)
        const responses = await this.responses.deleteExpired(new Date());
        if (responses > 0) this.logger.log(`deleted ${responses} stored responses past retention`);
        if (events.failed.length > 0) throw new Error(`usage_events partitions not dropped (locks not granted in time): ${events.failed.join(', ')}`);
        return { ...events, responses };
      }
      case JOB.usagePartitions: {
        const pass = await this.partitions.ensureAhead();
        if (pass.created.length > 0) this.logger.log(`created usage_events partitions ${pass.created.join(', ')}${pass.moved > 0 ? ` (${pass.moved} events moved out of the default partition)` : ''}`);
        return pass;
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
