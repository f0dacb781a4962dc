export { parseTiersFile, loadTiersFile, tiersFileSchema, TiersFileError, MODEL_APIS, noticeUrls } from './tiers-file';
export type { TiersFile, TierSpec, ModelPrice, ModelApi, WakeSpec, NoticeSpec } from './tiers-file';
export { ModelCatalog } from './model-catalog';
export { cachedSavingsNanos, costNanos, worstCaseNanos } from './pricing';
export type { TokenCounts } from './pricing';
export type { ModelRoute, TierView, TierNotice } from './model-catalog';
export { wakeDriver } from './wake-driver';
export type { WakeDriver } from './wake-driver';
export { tierKeys } from './tier-keys';
export type { TierGatewayReport, TierHistoryEntry } from './tier-keys';
export {
  PreemptionNoticeStore,
  parseNoticeMessage,
  readNoticeAnswer,
  noticeTargets,
  noticesFor,
  NOTICE_RETENTION_MS,
  NOTICE_SOURCES,
  MAX_NOTICE_DEADLINE_S,
} from './preemption-notice';
export type { PreemptionNotice, NoticeMessage, NoticeAnswer, NoticeSource, NoticeTargets, ReplicaRef } from './preemption-notice';
export { acceptsBatch, batchPrice, batchTierName, tierOfBatch, priceEntries, DEFAULT_BATCH_DISCOUNT } from './batch-pricing';
export type { PriceEntry } from './batch-pricing';
