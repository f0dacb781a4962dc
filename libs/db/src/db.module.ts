import { Global, Module } from '@nestjs/common';
import { ApiKeysRepository } from './api-keys.repository';
import { InvitationsRepository } from './invitations.repository';
import { MembershipsRepository } from './memberships.repository';
import { OrgsRepository } from './orgs.repository';
import { PrismaService } from './prisma.service';
import { SessionsRepository } from './sessions.repository';
import { UsageEventsRepository } from './usage-events.repository';
import { UsageRollupsRepository } from './usage-rollups.repository';
import { UsersRepository } from './users.repository';

const REPOSITORIES = [
  ApiKeysRepository,
  OrgsRepository,
  UsageEventsRepository,
  UsersRepository,
  SessionsRepository,
  MembershipsRepository,
  InvitationsRepository,
  UsageRollupsRepository,
];

/** Postgres access: the Prisma client and the repositories that own every query. */
@Global()
@Module({
  providers: [PrismaService, ...REPOSITORIES],
  exports: [PrismaService, ...REPOSITORIES],
})
export class DbModule {}
