import { Injectable } from '@nestjs/common';
import type { Prisma, UsageEvent } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

export type UsageEventRow = Prisma.UsageEventCreateManyInput;

/** What the streams of one tier went through since a moment, over every org (an operator's view). */
export interface TierStreamCounts {
  tier: string;
  /** Streams whose engine on this tier was lost mid-stream and that went on on another engine (a later segment). */
  continuedOff: number;
  /** Streams of which this tier served a continuation (a segment > 0). */
  tookOver: number;
  /**
   * Streams that ended with an engine failure here and were not continued: their last segment was served on this
   * tier, is recorded with a 5xx status, and had delivered tokens (or was itself a continuation).
   */
  lost: number;
}

/**
 * usage_events: append-only, partitioned by UTC day of created_at (see UsagePartitionsRepository), idempotent on
 * (request_id, segment, created_at). A partitioned table's unique keys must hold the partition key, so created_at
 * is in the key; that keeps inserts idempotent because an event's created_at is the request's start, fixed when
 * the gateway builds the event (every segment and every journal snapshot of a request carries the same one) and
 * kept to the millisecond through the recorder's retries and its journal and spool replays (ISO strings, and a
 * timestamptz(3) column).
 */
@Injectable()
export class UsageEventsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Inserts a batch; rows whose (request_id, segment, created_at) is already stored are skipped, so replaying a
   * batch after a crash or a timeout never counts a request (or a segment of a continued stream) twice. Returns
   * how many rows were new.
   */
  async insertMany(rows: readonly UsageEventRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    // sorted, so that replicas inserting overlapping batches take the index's locks in one order (no deadlocks)
    const sorted = [...rows].sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : (a.segment ?? 0) - (b.segment ?? 0)));
    // The whole batch is one JSON parameter (one native JSON.stringify here; Postgres parses it with
    // json_to_recordset). One array parameter per column cost 14 us of the gateway's CPU a row (Prisma and pg
    // serialise every element) against 8 here, and blocked its event loop for longer (bench/usage-insert.ts).
    const batch = JSON.stringify(sorted, sorted.some((r) => typeof r.costNanos === 'bigint') ? bigintAsString : undefined);
    return this.prisma.$executeRaw`
      INSERT INTO usage_events (request_id, segment, created_at, org_id, key_id, model, tier, prompt_tokens,
        completion_tokens, cached_tokens, audio_seconds, ttft_ms, duration_ms, status, estimated, cost_nanos)
      SELECT r."requestId", coalesce(r.segment, 0), r."createdAt", r."orgId", r."keyId", r.model, r.tier, r."promptTokens",
        r."completionTokens", coalesce(r."cachedTokens", 0), coalesce(r."audioSeconds", 0), r."ttftMs", r."durationMs", r.status,
        coalesce(r.estimated, false), coalesce(r."costNanos", 0)
      FROM json_to_recordset(${batch}::json) AS r("requestId" text, segment smallint, "createdAt" timestamptz, "orgId" uuid,
        "keyId" uuid, model text, tier text, "promptTokens" int, "completionTokens" int, "cachedTokens" int,
        "audioSeconds" int, "ttftMs" int, "durationMs" int, status smallint, estimated boolean, "costNanos" bigint)
      ON CONFLICT (request_id, segment, created_at) DO NOTHING`;
  }

  /** What an org's events since `since` cost, in nano-USD (the gateway seeds its budget ledger from this). */
  async costSince(orgId: string, since: Date): Promise<number> {
    const rows = await this.prisma.$queryRaw<Array<{ total: string }>>`
      SELECT coalesce(sum(cost_nanos), 0)::text AS total FROM usage_events WHERE org_id = ${orgId}::uuid AND created_at >= ${since}`;
    return Number(rows[0]?.total ?? 0);
  }

  /** A request's event (the first segment's, for a continued stream). Not by key: its created_at is not known here. */
  findByRequestId(requestId: string): Promise<UsageEvent | null> {
    return this.prisma.usageEvent.findFirst({ where: { requestId, segment: 0 } });
  }

  /** Every segment's event of a request, in order (one for a request no continuation served). */
  findSegments(requestId: string): Promise<UsageEvent[]> {
    return this.prisma.usageEvent.findMany({ where: { requestId }, orderBy: { segment: 'asc' } });
  }

  /**
   * Per tier, the streams continued off it, the continuations it served and the streams it lost since `since`, over
   * every org. Each branch reads only rows that are rare (segments > 0, 5xx statuses) through a partial index of its
   * own (usage_events_continuations_idx, usage_events_failed_idx), and their neighbours by primary key. Tiers with
   * none of the three are left out.
   */
  async streamCountsByTier(since: Date): Promise<TierStreamCounts[]> {
    const rows = await this.prisma.$queryRaw<Array<{ tier: string; continued_off: number; took_over: number; lost: number }>>`
      SELECT tier, sum(continued_off)::int AS continued_off, sum(took_over)::int AS took_over, sum(lost)::int AS lost FROM (
        SELECT p.tier, count(DISTINCT s.request_id) AS continued_off, 0 AS took_over, 0 AS lost
          FROM usage_events s JOIN usage_events p ON p.request_id = s.request_id AND p.segment = s.segment - 1
          WHERE s.segment > 0 AND s.created_at >= ${since}
          GROUP BY p.tier
        UNION ALL
        SELECT s.tier, 0, count(DISTINCT s.request_id), 0
          FROM usage_events s
          WHERE s.segment > 0 AND s.created_at >= ${since}
          GROUP BY s.tier
        UNION ALL
        SELECT e.tier, 0, 0, count(*)
          FROM usage_events e
          WHERE e.status >= 500 AND e.created_at >= ${since} AND (e.completion_tokens > 0 OR e.segment > 0)
            AND NOT EXISTS (SELECT 1 FROM usage_events n WHERE n.request_id = e.request_id AND n.segment = e.segment + 1)
          GROUP BY e.tier
      ) AS per_branch
      GROUP BY tier
      ORDER BY tier`;
    return rows.map((r) => ({ tier: r.tier, continuedOff: r.continued_off, tookOver: r.took_over, lost: r.lost }));
  }

  /** The events of these requests (every segment of a continued stream). */
  findByRequestIds(requestIds: readonly string[]): Promise<UsageEvent[]> {
    return this.prisma.usageEvent.findMany({ where: { requestId: { in: [...requestIds] } }, orderBy: [{ requestId: 'asc' }, { segment: 'asc' }] });
  }
}

/** JSON.stringify replacer for rows whose costNanos is a bigint (JSON has no bigint; Postgres casts the text). */
function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
