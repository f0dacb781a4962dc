export { QUEUE, JOB, DEFAULT_JOB_OPTIONS, bullPrefix } from './queues';
export type { QueueName, JobName, JobTrigger, JobPayload, JobData } from './queues';
