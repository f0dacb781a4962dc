import { Module } from '@nestjs/common';
import { ConfigModule } from '@spot/config';
import { DbModule } from '@spot/db';
import { KeysModule } from '@spot/keys';
import { RedisModule } from '@spot/redis';
import { OrgsService } from './orgs/orgs.service';

/** Everything the CLI's commands use: config, Postgres, Redis, the keys and orgs services. */
@Module({
  imports: [ConfigModule, DbModule, RedisModule, KeysModule],
  providers: [OrgsService],
})
export class CliModule {}
