export { parseTiersFile, loadTiersFile, tiersFileSchema, TiersFileError } from './tiers-file';
export type { TiersFile, TierSpec, ModelPrice, WakeSpec } from './tiers-file';
export { ModelCatalog } from './model-catalog';
export { costNanos, worstCaseNanos } from './pricing';
export type { TokenCounts } from './pricing';
export type { ModelRoute, TierView } from './model-catalog';
export { wakeDriver } from './wake-driver';
export type { WakeDriver } from './wake-driver';
