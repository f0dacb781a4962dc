export { BillingModule } from './billing.module';
export { UsageRollupService } from './usage-rollup.service';
export type { RollupPass } from './usage-rollup.service';
export { UsagePartitionService, utcDay, partitionName } from './usage-partition.service';
export type { PartitionPass, RetentionPass } from './usage-partition.service';
export { BillingSyncService, meterEventIdentifier, orgRetryDelayMs } from './billing-sync.service';
export { BillingSyncMetrics } from './billing-sync-metrics';
export type { SyncPass, SyncTuning } from './billing-sync.service';
export { BillingSetupService, billingStatusOf } from './billing-setup.service';
export type { EnabledBilling } from './billing-setup.service';
export { BillCalculator, periodRange, InvalidPeriodError } from './bill-calculator';
export type { OrgBill, BillLine, StripeInvoicePreview } from './bill-calculator';
export { StripeClient, BillingDisabledError } from './stripe-client';
export { PriceBook } from './price-book';
export { BillingError } from './billing.errors';
export { classifyStripeError, orgFailureOf, plainWords } from './stripe-failure';
export type { StripeFailure, OrgStripeFailure } from './stripe-failure';
export { monthStart, nextMonthStart, meterTimestamp } from './billing-calendar';
export {
  centsPerToken,
  centsPerSecond,
  lineAmountCents,
  priceLine,
  priceLines,
  tokensByDirection,
  DIRECTIONS,
  PriceNotBillableError,
} from './price-lines';
export type { Direction, PriceLine } from './price-lines';
