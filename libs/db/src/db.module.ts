import { Global, Module } from '@nestjs/common';
import { ApiKeysRepository } from './api-keys.repository';
import { OrgsRepository } from './orgs.repository';
import { PrismaService } from './prisma.service';
import { UsageEventsRepository } from './usage-events.repository';

/** Postgres access: the Prisma client and the repositories that own every query. */
@Global()
@Module({
  providers: [PrismaService, ApiKeysRepository, OrgsRepository, UsageEventsRepository],
  exports: [PrismaService, ApiKeysRepository, OrgsRepository, UsageEventsRepository],
})
export class DbModule {}
