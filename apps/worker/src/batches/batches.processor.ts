import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { objectId } from '@spot/contract';
import { BatchesRepository, FilesRepository } from '@spot/db';
import { bullPrefix, JOB, type JobData, type JobName, type JobPayload, QUEUE } from '@spot/queue';
import { type Job, type Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { CANCELLED_ERROR, EXPIRED_ERROR, renderLine } from './batch-lines';
import { BatchRunner } from './batch-runner';
import { BatchValidator } from './batch-validator';

/**
 * A chunk job is retried for as long as its batch may run (its lines' own retries are inside it). It has a
 * priority, so that the sweep and validations (which have none, and so go first) never wait behind a batch's chunks.
 */
const CHUNK_OPTIONS = { priority: 10, attempts: 1_000_000, backoff: { type: 'fixed', delay: 1_000 }, removeOnComplete: true, removeOnFail: 1_000 };
/** Dropped once done, so that the sweep may queue a batch's validation again if it died. */
const VALIDATE_OPTIONS = { attempts: 3, backoff: { type: 'exponential', delay: 1_000 }, removeOnComplete: true, removeOnFail: true };
/** A validation that died is queued again by the sweep after this long without its chunks. */
const CHUNK_GRACE_MS = 10_000;

/**
 * The `batches` queue: validation, chunk runs, the sweep, and the cleanup of uploads that never finished (the Files
 * API's, every FILES_CLEANUP_EVERY_MS). Its BullMQ worker is built here rather than by a
 * decorator because its lock (BATCH_LOCK_MS: how soon a chunk of a killed worker is taken up by another) and its
 * stall policy come from the config. A chunk job that stalls (its worker died) is taken up again however often
 * that happens (maxStalledCount): its lines with a result are skipped, the others run.
 */
@Injectable()
export class BatchesProcessor implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Batches');
  private worker: Worker | null = null;
  private connection: Redis | null = null;
  private readonly abort = new AbortController();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectQueue(QUEUE.batches) private readonly queue: Queue,
    private readonly batches: BatchesRepository,
    private readonly files: FilesRepository,
    private readonly runner: BatchRunner,
    private readonly validator: BatchValidator,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.queue.upsertJobScheduler(
      JOB.batchSweep,
      { every: this.config.BATCH_SWEEP_MS },
      { name: JOB.batchSweep, data: { trigger: 'schedule' }, opts: { attempts: 1, removeOnComplete: true, removeOnFail: 100 } },
    );
    await this.queue.upsertJobScheduler(
      JOB.filesCleanup,
      { every: this.config.FILES_CLEANUP_EVERY_MS },
      { name: JOB.filesCleanup, data: { trigger: 'schedule' }, opts: { attempts: 1, removeOnComplete: true, removeOnFail: 100 } },
    );
    this.connection = new Redis(this.config.REDIS_URL, { maxRetriesPerRequest: null });
    this.worker = new Worker(QUEUE.batches, (job: Job) => this.process(job as Job<JobPayload['data'], unknown, JobName>), {
      connection: this.connection,
      prefix: bullPrefix(this.config.REDIS_PREFIX),
      concurrency: 8,
      lockDuration: this.config.BATCH_LOCK_MS,
      stalledInterval: Math.max(1_000, Math.floor(this.config.BATCH_LOCK_MS / 2)),
      maxStalledCount: 1_000_000,
    });
    this.worker.on('failed', (job, err) => {
      if (job?.name !== JOB.batchSweep) this.logger.warn(`${job?.name ?? 'job'} ${job?.id ?? ''} failed: ${err.message}`);
    });
    this.worker.on('error', (err) => this.logger.warn(`batches worker: ${err.message}`));
  }

  async onModuleDestroy(): Promise<void> {
    this.abort.abort();
    await this.worker?.close();
    this.connection?.disconnect();
  }

  async process(job: Job<JobPayload['data'], unknown, JobName>): Promise<unknown> {
    const name = job.name as JobName;
    switch (name) {
      case JOB.batchValidate: {
        const { batchId } = job.data as JobData<typeof JOB.batchValidate>;
        const result = await this.validator.run(batchId);
        if (result?.ok === true) await this.queueChunks(batchId);
        return result;
      }
      case JOB.batchChunk: {
        const { batchId, fromLine, toLine } = job.data as JobData<typeof JOB.batchChunk>;
        const run = await this.runner.runChunk(batchId, fromLine, toLine, this.abort.signal);
        if (this.abort.signal.aborted) throw new Error('worker stopping: the chunk is run again');
        await this.finalizeIfDue(batchId);
        return run;
      }
      case JOB.batchSweep:
        return this.sweep();
      case JOB.filesCleanup: {
        const deleted = await this.files.deleteStaleUploads(new Date(Date.now() - this.config.FILES_STALE_UPLOAD_S * 1000));
        if (deleted > 0) this.logger.log(`deleted ${deleted} stale uploads`);
        return { deleted };
      }
      case JOB.usageRollup:
      case JOB.usageRetention:
      case JOB.usagePartitions:
      case JOB.billingSync:
      case JOB.tiersIdle:
        throw new UnrecoverableError(`job ${name} does not belong on the ${QUEUE.batches} queue`);
    }
  }

  /** Queues a batch's chunks (idempotent: one job id per chunk), then notes that they are queued. */
  private async queueChunks(batchId: string): Promise<void> {
    const size = this.config.BATCH_CHUNK_LINES;
    // line numbers count blank lines too: chunks cover [1, the last line]
    const last = await this.batches.lastLine(batchId);
    const jobs = [];
    for (let from = 1; from <= last; from += size) {
      jobs.push({ name: JOB.batchChunk, data: { batchId, fromLine: from, toLine: from + size - 1 }, opts: { ...CHUNK_OPTIONS, jobId: `chunk-${batchId}-${from}` } });
    }
    for (let i = 0; i < jobs.length; i += 500) await this.queue.addBulk(jobs.slice(i, i + 500));
    await this.batches.markChunksQueued(batchId);
  }

  /** Acts on every batch that needs it: validation to queue, cancels and expiries to finish, finished batches to close. */
  private async sweep(): Promise<{ acted: number }> {
    const items = await this.batches.sweepItems(new Date(), CHUNK_GRACE_MS);
    for (const item of items) {
      try {
        if (item.status === 'validating') {
          await this.queue.add(JOB.batchValidate, { batchId: item.id }, { ...VALIDATE_OPTIONS, jobId: `validate-${item.id}` });
        } else if (item.status === 'cancelling' || item.due) {
          await this.finalizeIfDue(item.id);
        } else if (item.chunksMissing) {
          await this.queueChunks(item.id);
        }
      } catch (err) {
        this.logger.warn(`sweep of batch ${item.id} failed: ${String(err)}`);
      }
    }
    return { acted: items.length };
  }

  /** Ends the batch if it is due (every line done, cancelled, or past its window), writing its output and error files. */
  private async finalizeIfDue(batchId: string): Promise<void> {
    await this.batches.markFinalizing(batchId);
    const status = await this.batches.finalize(
      batchId,
      new Date(),
      { outputFileId: objectId('file-'), errorFileId: objectId('file-'), unrun: { expired: EXPIRED_ERROR, cancelled: CANCELLED_ERROR } },
      (row) => renderLine(batchId, row),
    );
    if (status !== null) this.logger.log(`batch ${batchId} ${status}`);
  }
}
