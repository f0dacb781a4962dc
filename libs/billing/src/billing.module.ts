import { Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { KeysModule } from '@spot/keys';
import { loadTiersFile } from '@spot/tiers';
import { BillCalculator } from './bill-calculator';
import { BillingSetupService } from './billing-setup.service';
import { BillingSyncService } from './billing-sync.service';
import { BillingSyncMetrics } from './billing-sync-metrics';
import { PriceBook } from './price-book';
import { StripeClient } from './stripe-client';
import { UsagePartitionService } from './usage-partition.service';
import { UsageRollupService } from './usage-rollup.service';

/**
 * Usage rollups, Stripe setup and sync, and bills. Needs the global DbModule and RedisModule and the config.
 * The price book is TIERS_FILE, read once; Stripe is off without STRIPE_SECRET_KEY.
 */
@Module({
  imports: [KeysModule],
  providers: [
    { provide: StripeClient, inject: [APP_CONFIG], useFactory: (config: AppConfig) => new StripeClient(config) },
    { provide: PriceBook, inject: [APP_CONFIG], useFactory: (config: AppConfig) => new PriceBook(() => loadTiersFile(config.TIERS_FILE)) },
    UsageRollupService,
    UsagePartitionService,
    BillingSetupService,
    BillingSyncService,
    BillingSyncMetrics,
    BillCalculator,
  ],
  exports: [StripeClient, PriceBook, UsageRollupService, UsagePartitionService, BillingSetupService, BillingSyncService, BillingSyncMetrics, BillCalculator],
})
export class BillingModule {}
