import type { Telemetry } from '@spot/telemetry';
import type { Job } from 'bullmq';

/**
 * Runs one job's processing in a CONSUMER span `process {queue}` (messaging conventions: BullMQ, the queue, the
 * job's id, name and attempt), failed with the error's `error.type` when it throws. With tracing off it only
 * calls `run`.
 */
export function traceJob<T>(telemetry: Telemetry, queue: string, job: Job, run: () => Promise<T>): Promise<T> {
  const tracing = telemetry.tracing;
  if (tracing === null) return run();
  return tracing.run(
    `process ${queue}`,
    tracing.kind.consumer,
    {
      'messaging.system': 'bullmq',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.name': queue,
      'messaging.message.id': job.id,
      'spot.job.name': job.name,
      'spot.job.attempt': job.attemptsMade + 1,
    },
    run,
  );
}
