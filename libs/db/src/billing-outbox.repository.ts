import { Injectable } from '@nestjs/common';
import type { MeterEventOutbox } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** A rollup with changes not yet turned into meter events, and its org's Stripe customer. */
export interface UnsyncedRollup {
  orgId: string;
  keyId: string;
  model: string;
  tier: string;
  hour: Date;
  version: bigint;
  promptTokens: bigint;
  completionTokens: bigint;
  cachedTokens: bigint;
  audioSeconds: bigint;
  syncedInput: bigint;
  syncedCached: bigint;
  syncedOutput: bigint;
  syncedAudio: bigint;
  stripeCustomerId: string;
}

/** A meter event to queue. */
export type NewOutboxEvent = Pick<
  MeterEventOutbox,
  'identifier' | 'orgId' | 'stripeCustomerId' | 'lineKey' | 'eventName' | 'value' | 'timestamp' | 'keyId' | 'model' | 'tier' | 'hour' | 'direction' | 'rollupVersion'
>;

/** The synced state a rollup moves to, with the events that account for the move. */
export interface RollupSyncPlan {
  rollup: UnsyncedRollup;
  syncedInput: bigint;
  syncedCached: bigint;
  syncedOutput: bigint;
  syncedAudio: bigint;
  events: NewOutboxEvent[];
}

/**
 * A claimed outbox row, with the org's subscription (items are added to it lazily), its mirrored status and its
 * sync failures in a row (a failing org is checked with Stripe before its events are sent).
 */
export type ClaimedOutboxEvent = MeterEventOutbox & {
  stripeSubscriptionId: string | null;
  orgSlug: string;
  billingStatus: string;
  billingSyncFailures: number;
};

export type RollupCursor = Pick<UnsyncedRollup, 'orgId' | 'keyId' | 'model' | 'tier' | 'hour'>;

export type OutboxStatus = 'pending' | 'accepted' | 'rejected' | 'rejected_too_old';

/** Tokens (seconds, for an audio line) per line over a time range, from the outbox. */
export interface OutboxLineTotal {
  lineKey: string;
  model: string;
  tier: string;
  direction: string;
  tokens: bigint;
}

/**
 * meter_event_outbox, and the transaction that turns rollup changes into outbox rows exactly once.
 */
@Injectable()
export class BillingOutboxRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * In ONE transaction: locks up to `limit` rollups of the account's billed orgs that changed since their last
   * sync (SKIP LOCKED: a concurrent sync takes others), asks `plan` for the meter events and the new synced
   * state of each, inserts the events and advances the rollups. A crash anywhere rolls all of it back; the
   * next pass plans the same events with the same identifiers. Returns the rollups seen and events queued.
   */
  async planBatch(
    account: string,
    limit: number,
    after: RollupCursor | null,
    plan: (rows: UnsyncedRollup[]) => RollupSyncPlan[],
  ): Promise<{ rollups: UnsyncedRollup[]; events: number }> {
    return this.prisma.$transaction(
      async (tx) => {
        const a = after ?? { orgId: '00000000-0000-0000-0000-000000000000', keyId: '00000000-0000-0000-0000-000000000000', model: '', tier: '', hour: new Date(0) };
        const rows = await tx.$queryRaw<UnsyncedRollup[]>`
          SELECT r.org_id AS "orgId", r.key_id AS "keyId", r.model, r.tier, r.hour, r.version,
            r.prompt_tokens AS "promptTokens", r.completion_tokens AS "completionTokens", r.cached_tokens AS "cachedTokens",
            r.audio_seconds AS "audioSeconds", r.synced_input AS "syncedInput", r.synced_cached AS "syncedCached",
            r.synced_output AS "syncedOutput", r.synced_audio AS "syncedAudio", o.stripe_customer_id AS "stripeCustomerId"
          FROM usage_rollups r JOIN orgs o ON o.id = r.org_id
          WHERE o.stripe_account = ${account} AND o.stripe_customer_id IS NOT NULL AND o.stripe_subscription_id IS NOT NULL
            AND o.billing_since IS NOT NULL AND r.hour >= o.billing_since AND r.version > r.synced_version
            AND (r.org_id, r.key_id, r.model, r.tier, r.hour) > (${a.orgId}::uuid, ${a.keyId}::uuid, ${a.model}, ${a.tier}, ${a.hour})
          ORDER BY r.org_id, r.key_id, r.model, r.tier, r.hour
          LIMIT ${limit}
          FOR UPDATE OF r SKIP LOCKED`;
        if (rows.length === 0) return { rollups: rows, events: 0 };
        const plans = plan(rows);
        const events = plans.flatMap((p) => p.events);
        if (events.length > 0) {
          const col = <T>(pick: (e: NewOutboxEvent) => T): T[] => events.map(pick);
          await tx.$executeRaw`
            INSERT INTO meter_event_outbox (identifier, account, org_id, stripe_customer_id, line_key, event_name, value, timestamp,
              key_id, model, tier, hour, direction, rollup_version)
            SELECT u.identifier, ${account}, u.org_id, u.customer, u.line_key, u.event_name, u.value, u.ts, u.key_id, u.model, u.tier,
              u.hour, u.direction, u.version
            FROM unnest(${col((e) => e.identifier)}::text[], ${col((e) => e.orgId)}::uuid[], ${col((e) => e.stripeCustomerId)}::text[],
              ${col((e) => e.lineKey)}::text[], ${col((e) => e.eventName)}::text[], ${col((e) => e.value.toString())}::bigint[],
              ${col((e) => e.timestamp)}::timestamptz[], ${col((e) => e.keyId)}::uuid[], ${col((e) => e.model)}::text[],
              ${col((e) => e.tier)}::text[], ${col((e) => e.hour)}::timestamptz[], ${col((e) => e.direction)}::text[],
              ${col((e) => e.rollupVersion.toString())}::bigint[])
              AS u(identifier, org_id, customer, line_key, event_name, value, ts, key_id, model, tier, hour, direction, version)
            ON CONFLICT (identifier) DO NOTHING`;
        }
        if (plans.length > 0) {
          const col = <T>(pick: (p: RollupSyncPlan) => T): T[] => plans.map(pick);
          await tx.$executeRaw`
            UPDATE usage_rollups r SET synced_version = u.version, synced_input = u.si, synced_cached = u.sc, synced_output = u.so,
              synced_audio = u.sa
            FROM unnest(${col((p) => p.rollup.orgId)}::uuid[], ${col((p) => p.rollup.keyId)}::uuid[], ${col((p) => p.rollup.model)}::text[],
              ${col((p) => p.rollup.tier)}::text[], ${col((p) => p.rollup.hour)}::timestamptz[], ${col((p) => p.rollup.version.toString())}::bigint[],
              ${col((p) => p.syncedInput.toString())}::bigint[], ${col((p) => p.syncedCached.toString())}::bigint[],
              ${col((p) => p.syncedOutput.toString())}::bigint[], ${col((p) => p.syncedAudio.toString())}::bigint[])
              AS u(org_id, key_id, model, tier, hour, version, si, sc, so, sa)
            WHERE r.org_id = u.org_id AND r.key_id = u.key_id AND r.model = u.model AND r.tier = u.tier AND r.hour = u.hour`;
        }
        return { rollups: rows, events: events.length };
      },
      { timeout: 60_000, maxWait: 10_000 },
    );
  }

  /**
   * Claims up to `limit` pending events of the account for `leaseMs` (SKIP LOCKED: two senders take different
   * rows; a sender that dies releases its rows when the lease runs out). Oldest first. Events of orgs whose sync
   * failed and whose retry time is after `at` are left alone (one org's failure does not hold up the others).
   */
  claim(account: string, limit: number, leaseMs: number, at: Date): Promise<ClaimedOutboxEvent[]> {
    return this.prisma.$queryRaw<ClaimedOutboxEvent[]>`
      WITH picked AS (
        SELECT m.identifier FROM meter_event_outbox m JOIN orgs f ON f.id = m.org_id
        WHERE m.account = ${account} AND m.status = 'pending' AND (m.claimed_until IS NULL OR m.claimed_until < now())
          AND (f.billing_sync_retry_at IS NULL OR f.billing_sync_retry_at <= ${at})
        ORDER BY m.created_at, m.identifier
        LIMIT ${limit}
        FOR UPDATE OF m SKIP LOCKED
      )
      UPDATE meter_event_outbox m SET claimed_until = now() + ${leaseMs} * interval '1 millisecond'
      FROM picked p, orgs o
      WHERE m.identifier = p.identifier AND o.id = m.org_id
      RETURNING m.identifier, m.account, m.org_id AS "orgId", m.stripe_customer_id AS "stripeCustomerId", m.line_key AS "lineKey",
        m.event_name AS "eventName", m.value, m.timestamp, m.key_id AS "keyId", m.model, m.tier, m.hour, m.direction,
        m.rollup_version AS "rollupVersion", m.status, m.attempts, m.claimed_until AS "claimedUntil", m.sent_at AS "sentAt",
        m.accepted_at AS "acceptedAt", m.last_error AS "lastError", m.created_at AS "createdAt",
        o.stripe_subscription_id AS "stripeSubscriptionId", o.slug AS "orgSlug", o.billing_status::text AS "billingStatus",
        o.billing_sync_failures AS "billingSyncFailures"`;
  }

  /** Gives back claimed events unsent (their org's sync failed): claimable again once the org's retry time passes. */
  async release(identifiers: readonly string[], error: string): Promise<void> {
    if (identifiers.length === 0) return;
    await this.prisma.$executeRaw`
      UPDATE meter_event_outbox SET claimed_until = NULL, last_error = ${error.slice(0, 1000)}
      WHERE identifier = ANY(${[...identifiers]}::text[]) AND status = 'pending'`;
  }

  /** Points an org's unsent events at its new Stripe customer (billing enabled again after the old one was deleted). */
  async moveUnsentToCustomer(orgId: string, account: string, customerId: string): Promise<number> {
    return this.prisma.$executeRaw`
      UPDATE meter_event_outbox SET stripe_customer_id = ${customerId}
      WHERE org_id = ${orgId}::uuid AND account = ${account} AND status = 'pending' AND sent_at IS NULL`;
  }

  /** Stripe has the event (accepted now, or it already had it: `note` says so), after `tries` requests. */
  async markAccepted(identifier: string, tries: number, note: string | null = null): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE meter_event_outbox SET status = 'accepted', accepted_at = now(), sent_at = coalesce(sent_at, now()),
        claimed_until = NULL, last_error = ${note}, attempts = attempts + ${tries}
      WHERE identifier = ${identifier}`;
  }

  /** `tries` failed requests that may be retried: stays pending, not claimable again before `retryInMs`. */
  async markRetry(identifier: string, tries: number, error: string, retryInMs: number): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE meter_event_outbox SET sent_at = coalesce(sent_at, now()), last_error = ${error.slice(0, 1000)}, attempts = attempts + ${tries},
        claimed_until = now() + ${retryInMs} * interval '1 millisecond'
      WHERE identifier = ${identifier} AND status = 'pending'`;
  }

  /** Stripe refused the event for good (kept, with the reason, for the operator; never silently dropped). */
  async markRejected(identifier: string, tries: number, status: 'rejected' | 'rejected_too_old', error: string): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE meter_event_outbox SET status = ${status}, last_error = ${error.slice(0, 1000)}, claimed_until = NULL, attempts = attempts + ${tries}
      WHERE identifier = ${identifier} AND status = 'pending'`;
  }

  /** Outbox rows of an account by status. */
  async countByStatus(account: string): Promise<Record<OutboxStatus, number>> {
    const rows = await this.prisma.$queryRaw<Array<{ status: OutboxStatus; n: bigint }>>`
      SELECT status, count(*) AS n FROM meter_event_outbox WHERE account = ${account} GROUP BY status`;
    const counts: Record<OutboxStatus, number> = { pending: 0, accepted: 0, rejected: 0, rejected_too_old: 0 };
    for (const r of rows) counts[r.status] = Number(r.n);
    return counts;
  }

  /** Tokens per line queued or accepted for an org, with timestamps in [from, to). Rejected events are not billed. */
  lineTotals(orgId: string, account: string, from: Date, to: Date): Promise<OutboxLineTotal[]> {
    return this.prisma.$queryRaw<OutboxLineTotal[]>`
      SELECT line_key AS "lineKey", model, tier, direction, sum(value)::bigint AS tokens
      FROM meter_event_outbox
      WHERE org_id = ${orgId}::uuid AND account = ${account} AND timestamp >= ${from} AND timestamp < ${to}
        AND status IN ('pending', 'accepted')
      GROUP BY line_key, model, tier, direction`;
  }

  /**
   * An org's usage not turned into meter events yet: its rollups with unsynced changes (hour >= `since`) and
   * its events not rolled up yet (synced totals 0), per model, tier and hour. Read in one statement.
   */
  unsyncedOfOrg(orgId: string, since: Date): Promise<UnsyncedRollup[]> {
    return this.prisma.$queryRaw<UnsyncedRollup[]>`
      SELECT org_id AS "orgId", key_id AS "keyId", model, tier, hour, version, prompt_tokens AS "promptTokens",
        completion_tokens AS "completionTokens", cached_tokens AS "cachedTokens", audio_seconds AS "audioSeconds",
        synced_input AS "syncedInput", synced_cached AS "syncedCached", synced_output AS "syncedOutput",
        synced_audio AS "syncedAudio", '' AS "stripeCustomerId"
      FROM usage_rollups WHERE org_id = ${orgId}::uuid AND version > synced_version AND hour >= ${since}
      UNION ALL
      SELECT org_id, key_id, model, tier, date_trunc('hour', created_at, 'UTC'), 0, sum(prompt_tokens)::bigint,
        sum(completion_tokens)::bigint, sum(cached_tokens)::bigint, sum(audio_seconds)::bigint, 0, 0, 0, 0, ''
      FROM usage_events WHERE org_id = ${orgId}::uuid AND rolled_up_at IS NULL AND created_at >= ${since}
      GROUP BY org_id, key_id, model, tier, date_trunc('hour', created_at, 'UTC')`;
  }

  /** Events Stripe refused for an org in [from, to), for the bill page. */
  rejected(orgId: string, from: Date, to: Date): Promise<MeterEventOutbox[]> {
    return this.prisma.meterEventOutbox.findMany({
      where: { orgId, timestamp: { gte: from, lt: to }, status: { in: ['rejected', 'rejected_too_old'] } },
      orderBy: { timestamp: 'asc' },
    });
  }
}
