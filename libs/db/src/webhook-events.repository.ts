import { Injectable } from '@nestjs/common';
import { PrismaService } from './prisma.service';

/** stripe_webhook_events: the Stripe events already handled, so that a redelivery is a no-op. */
@Injectable()
export class WebhookEventsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Records an event; false when it was recorded before (a replay). */
  async record(id: string, type: string, orgId: string | null, created: Date): Promise<boolean> {
    const n = await this.prisma.$executeRaw`
      INSERT INTO stripe_webhook_events (id, type, org_id, created) VALUES (${id}, ${type}, ${orgId}::uuid, ${created})
      ON CONFLICT (id) DO NOTHING`;
    return n > 0;
  }

  /** Whether an event of the org created after `created` was already handled (then an older one must not win). */
  async newerExists(orgId: string, created: Date, exceptId: string): Promise<boolean> {
    const row = await this.prisma.stripeWebhookEvent.findFirst({ where: { orgId, created: { gt: created }, id: { not: exceptId } }, select: { id: true } });
    return row !== null;
  }
}
