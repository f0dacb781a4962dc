import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { BillingModule } from '@spot/billing';
import { type AppConfig, ConfigModule } from '@spot/config';
import { DbModule } from '@spot/db';
import { KeysModule } from '@spot/keys';
import { RedisModule } from '@spot/redis';
import { PreemptionNoticeStore } from '@spot/tiers';
import { AuthController } from './auth/auth.controller';
import { CsrfGuard } from './auth/csrf.guard';
import { GitHubOAuthService } from './auth/github-oauth.service';
import { SessionGuard } from './auth/session.guard';
import { SessionService } from './auth/session.service';
import { BatchesController } from './batches/batches.controller';
import { BatchesPagesController } from './batches/batches-pages.controller';
import { ConsoleBatchesService } from './batches/console-batches.service';
import { BillingController } from './billing/billing.controller';
import { BillingPagesController } from './billing/billing-pages.controller';
import { ConsoleBillingService } from './billing/console-billing.service';
import { StripeWebhookController } from './billing/stripe-webhook.controller';
import { StripeWebhookService } from './billing/stripe-webhook.service';
import { ConsoleExceptionFilter } from './errors/console-exception.filter';
import { HealthController } from './health/health.controller';
import { ConsoleKeysService } from './keys/console-keys.service';
import { KeysController } from './keys/keys.controller';
import { OrgAccessService } from './orgs/org-access.service';
import { OrgsController } from './orgs/orgs.controller';
import { OrgsService } from './orgs/orgs.service';
import { AssetsController } from './pages/assets.controller';
import { PagesController } from './pages/pages.controller';
import { TierStreamsService } from './tiers/tier-streams.service';
import { TiersPageController } from './tiers/tiers-page.controller';
import { UsageController } from './usage/usage.controller';
import { UsageService } from './usage/usage.service';

/** The console: GitHub sign-in, orgs, members, keys, limits, usage, batches and bills (pages and JSON API). */
@Module({})
export class ConsoleModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ConsoleModule,
      imports: [ConfigModule.forRoot(config), DbModule, RedisModule, KeysModule, BillingModule],
      controllers: [HealthController, AuthController, OrgsController, KeysController, UsageController, BatchesController, BillingController, StripeWebhookController, BillingPagesController, BatchesPagesController, TiersPageController, PagesController, AssetsController],
      providers: [
        { provide: APP_FILTER, useClass: ConsoleExceptionFilter },
        SessionService,
        SessionGuard,
        CsrfGuard,
        GitHubOAuthService,
        OrgAccessService,
        OrgsService,
        ConsoleKeysService,
        UsageService,
        ConsoleBatchesService,
        ConsoleBillingService,
        StripeWebhookService,
        PreemptionNoticeStore,
        TierStreamsService,
      ],
    };
  }
}
