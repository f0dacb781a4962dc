export { DbModule } from './db.module';
export { PrismaService } from './prisma.service';
export { OrgsRepository } from './orgs.repository';
export { ApiKeysRepository } from './api-keys.repository';
export type { ApiKeyAuthRow, NewApiKey, ApiKeyListRow, ApiKeyChanges } from './api-keys.repository';
export { UsersRepository } from './users.repository';
export type { GitHubIdentity } from './users.repository';
export { SessionsRepository } from './sessions.repository';
export type { SessionWithUser } from './sessions.repository';
export { MembershipsRepository } from './memberships.repository';
export type { OrgOfMember, MemberRow } from './memberships.repository';
export { InvitationsRepository } from './invitations.repository';
export { UsageRollupsRepository } from './usage-rollups.repository';
export type { RollupBatch, UsageGroup, UsageGroupRow } from './usage-rollups.repository';
export { BillingLinesRepository } from './billing-lines.repository';
export type { NewBillingLine } from './billing-lines.repository';
export { BillingOutboxRepository } from './billing-outbox.repository';
export type {
  UnsyncedRollup,
  NewOutboxEvent,
  RollupSyncPlan,
  ClaimedOutboxEvent,
  RollupCursor,
  OutboxStatus,
  OutboxLineTotal,
} from './billing-outbox.repository';
export { OrgBillingRepository } from './org-billing.repository';
export type { OrgStripeLink, OrgSyncFailure, FailingOrg } from './org-billing.repository';
export { WebhookEventsRepository } from './webhook-events.repository';
export { PipelineLagRepository } from './pipeline-lag.repository';
export type { BillingLine, BillingSubscriptionItem, MeterEventOutbox } from './generated/prisma/client';
export { ResponsesRepository } from './responses.repository';
export type { NewStoredResponse, StoredResponseRow, ResponseTurn } from './responses.repository';
export { UsageEventsRepository } from './usage-events.repository';
export { UsagePartitionsRepository } from './usage-partitions.repository';
export type { UsagePartition, CreateOutcome, DropOutcome } from './usage-partitions.repository';
export type { UsageEventRow, TierStreamCounts } from './usage-events.repository';
export type { Org, User, ApiKey, UsageEvent, Membership, Invitation, UsageRollup } from './generated/prisma/client';
export type { BillingStatus, MemberRole } from './generated/prisma/enums';
export { FilesRepository } from './files.repository';
export type { FileRow, FileListQuery } from './files.repository';
export { BatchesRepository, CANCELLABLE_BATCH_STATUSES } from './batches.repository';
export type { BatchRow, NewBatch, NewBatchLine, PendingLine, LineResult, FinishedLine, RenderLine, FinalFiles, SweepItem } from './batches.repository';
