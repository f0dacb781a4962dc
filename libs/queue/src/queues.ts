import type { JobsOptions } from 'bullmq';

/** BullMQ queue names. One queue per concern, so a slow Stripe cannot hold up rollups or tier sleep. */
export const QUEUE = {
  usage: 'usage',
  billing: 'billing',
  tiers: 'tiers',
  batches: 'batches',
} as const;
export type QueueName = (typeof QUEUE)[keyof typeof QUEUE];

/** Job names, and the queue each one runs on. */
export const JOB = {
  /** Fold new usage_events into hourly rollups (exactly once). */
  usageRollup: 'usage.rollup',
  /** Drop (or delete from) raw usage_events partitions past the retention period (rolled-up rows only). */
  usageRetention: 'usage.retention',
  /** Create usage_events day partitions ahead (moving rows out of the default partition). */
  usagePartitions: 'usage.partitions',
  /** Push rollup deltas to Stripe meter events. */
  billingSync: 'billing.sync',
  /** Put tiers idle past their `idle_sleep_s` to sleep. */
  tiersIdle: 'tiers.idle',
  /** Validate a batch's input file, store its lines and queue its chunks. */
  batchValidate: 'batch.validate',
  /** Run the pending lines of one chunk of a batch. */
  batchChunk: 'batch.chunk',
  /** Find batches to validate, expire, cancel or finalize (and chunks a dead validation never queued). */
  batchSweep: 'batch.sweep',
  /** Delete uploads that never finished (their gateway died mid-upload): FILES_STALE_UPLOAD_S. */
  filesCleanup: 'files.cleanup',
} as const;
export type JobName = (typeof JOB)[keyof typeof JOB];

/** Who asked for a pass: a job scheduler, or an operator (`npm run cli -- usage rollup`). */
export type JobTrigger = 'schedule' | 'cli';

/** Every job's name and payload, one discriminated union: a processor switches on `name` exhaustively. */
export type JobPayload =
  | { name: typeof JOB.usageRollup; data: { trigger: JobTrigger } }
  | { name: typeof JOB.usageRetention; data: { trigger: JobTrigger } }
  | { name: typeof JOB.usagePartitions; data: { trigger: JobTrigger } }
  | { name: typeof JOB.billingSync; data: { trigger: JobTrigger } }
  | { name: typeof JOB.tiersIdle; data: { trigger: JobTrigger } }
  | { name: typeof JOB.batchValidate; data: { batchId: string } }
  | { name: typeof JOB.batchChunk; data: { batchId: string; fromLine: number; toLine: number } }
  | { name: typeof JOB.batchSweep; data: { trigger: JobTrigger } }
  | { name: typeof JOB.filesCleanup; data: { trigger: JobTrigger } };

export type JobData<N extends JobName> = Extract<JobPayload, { name: N }>['data'];

/** Defaults for every job: a few retries with backoff, bounded history. */
export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: { count: 1_000 },
  removeOnFail: { count: 5_000 },
};

/** BullMQ's key prefix for a REDIS_PREFIX (`spot:` gives `spot:bull`), so stacks sharing a Redis stay apart. */
export function bullPrefix(redisPrefix: string): string {
  return `${redisPrefix}bull`;
}
