export { parseTiersFile, loadTiersFile, tiersFileSchema, TiersFileError } from './tiers-file';
export type { TiersFile, TierSpec, ModelPrice } from './tiers-file';
export { ModelCatalog } from './model-catalog';
export type { ModelRoute } from './model-catalog';
