import { Injectable } from '@nestjs/common';
import { PrismaService } from './prisma.service';

/** How far behind the usage -> money pipeline is, for the worker's metrics (each read rides a partial index). */
@Injectable()
export class PipelineLagRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** created_at of the oldest usage event not rolled up yet (usage_events_unrolled_idx); null when none. */
  async oldestUnrolledEventAt(): Promise<Date | null> {
    const [row] = await this.prisma.$queryRaw<Array<{ at: Date | null }>>`
      SELECT min(created_at) AS at FROM usage_events WHERE rolled_up_at IS NULL`;
    return row?.at ?? null;
  }

  /**
   * The oldest usage that billing sync owes Stripe: a rollup of a billed org changed since it was last turned into
   * meter events (usage_rollups_unsynced_idx, the rows billing sync picks), or a meter event still pending in the
   * outbox. null when nothing is owed.
   */
  async oldestUnbilledAt(): Promise<Date | null> {
    const [row] = await this.prisma.$queryRaw<Array<{ at: Date | null }>>`
      SELECT LEAST(
        (SELECT min(r.updated_at) FROM usage_rollups r JOIN orgs o ON o.id = r.org_id
          WHERE r.version > r.synced_version AND o.stripe_customer_id IS NOT NULL AND o.stripe_subscription_id IS NOT NULL
            AND o.billing_since IS NOT NULL AND r.hour >= o.billing_since),
        (SELECT min(created_at) FROM meter_event_outbox WHERE status = 'pending')) AS at`;
    return row?.at ?? null;
  }
}
