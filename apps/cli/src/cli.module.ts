import { Module } from '@nestjs/common';
import { BillingModule } from '@spot/billing';
import { ConfigModule } from '@spot/config';
import { DbModule } from '@spot/db';
import { KeysModule } from '@spot/keys';
import { RedisModule } from '@spot/redis';
import { PreemptionNoticeStore } from '@spot/tiers';
import { OrgsService } from './orgs/orgs.service';

/** Everything the CLI's commands use: config, Postgres, Redis, the keys, orgs, usage and billing services, tier notices. */
@Module({
  imports: [ConfigModule, DbModule, RedisModule, KeysModule, BillingModule],
  providers: [OrgsService, PreemptionNoticeStore],
})
export class CliModule {}
