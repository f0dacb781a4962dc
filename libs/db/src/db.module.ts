import { Global, Module } from '@nestjs/common';
import { ApiKeysRepository } from './api-keys.repository';
import { BatchesRepository } from './batches.repository';
import { BillingLinesRepository } from './billing-lines.repository';
import { FilesRepository } from './files.repository';
import { BillingOutboxRepository } from './billing-outbox.repository';
import { InvitationsRepository } from './invitations.repository';
import { MembershipsRepository } from './memberships.repository';
import { OrgBillingRepository } from './org-billing.repository';
import { OrgsRepository } from './orgs.repository';
import { PipelineLagRepository } from './pipeline-lag.repository';
import { PrismaService } from './prisma.service';
import { ResponsesRepository } from './responses.repository';
import { SessionsRepository } from './sessions.repository';
import { UsageEventsRepository } from './usage-events.repository';
import { UsagePartitionsRepository } from './usage-partitions.repository';
import { UsageRollupsRepository } from './usage-rollups.repository';
import { UsersRepository } from './users.repository';
import { WebhookEventsRepository } from './webhook-events.repository';

const REPOSITORIES = [
  ApiKeysRepository,
  OrgsRepository,
  UsageEventsRepository,
  UsagePartitionsRepository,
  UsersRepository,
  SessionsRepository,
  MembershipsRepository,
  InvitationsRepository,
  UsageRollupsRepository,
  BillingLinesRepository,
  BillingOutboxRepository,
  OrgBillingRepository,
  WebhookEventsRepository,
  ResponsesRepository,
  PipelineLagRepository,
  FilesRepository,
  BatchesRepository,
];

/** Postgres access: the Prisma client and the repositories that own every query. */
@Global()
@Module({
  providers: [PrismaService, ...REPOSITORIES],
  exports: [PrismaService, ...REPOSITORIES],
})
export class DbModule {}
