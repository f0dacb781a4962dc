export { DbModule } from './db.module';
export { PrismaService } from './prisma.service';
export { OrgsRepository } from './orgs.repository';
export { ApiKeysRepository } from './api-keys.repository';
export type { ApiKeyAuthRow, NewApiKey } from './api-keys.repository';
export { UsageEventsRepository } from './usage-events.repository';
export type { UsageEventRow } from './usage-events.repository';
export type { Org, User, ApiKey, UsageEvent, Membership } from './generated/prisma/client';
export type { BillingStatus } from './generated/prisma/enums';
