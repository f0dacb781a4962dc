export { UsageRollupService } from './usage-rollup.service';
export type { RollupPass } from './usage-rollup.service';
