export type { LiveUsage } from './progress-journal';
export type { UsageEvent } from './usage-event';
export { toUsageRow } from './usage-event';
export { UsageRecorder, UsageSpoolError } from './usage-recorder';
export type { UsageClock, UsageLogger, UsageRecorderOptions, UsageRecorderStats } from './usage-recorder';
export { RepositoryUsageSink } from './usage-sink';
export type { UsageSink } from './usage-sink';
export { UsageModule, usageRecorderOptions } from './usage.module';
