import { Injectable } from '@nestjs/common';
import { Prisma, type UsageRollup } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** What one rollup batch did. */
export interface RollupBatch {
  events: number;
  rollups: number;
}

/** How usage is grouped for reports. */
export type UsageGroup = 'day' | 'model' | 'tier' | 'key';

/** One group of an org's usage over a period: rollups plus events not rolled up yet. */
export interface UsageGroupRow {
  /** The day (YYYY-MM-DD), model, tier or key id. */
  group: string;
  /** For `key`: the key's name and public prefix. */
  label: string | null;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Seconds of audio metered by duration (speech-to-text). */
  audioSeconds: number;
  costNanos: number;
}

/** usage_rollups, and the exactly-once fold of usage_events into them. */
@Injectable()
export class UsageRollupsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Folds up to `limit` unrolled events into their hourly rollups in ONE statement (in a transaction of its own): the
   * events are picked with FOR UPDATE SKIP LOCKED (across every day partition of usage_events, the default one
   * included), marked rolled up, summed, and added to their rollup rows.
   * So an event is counted exactly once: a concurrent pass skips rows another holds, an event whose insert
   * has not committed yet is not visible and is picked by a later pass (no sequence watermark to get wrong),
   * and a crash rolls back the marks with the sums. Rows are upserted in key order so that concurrent passes
   * lock them in one order.
   */
  async rollupBatch(limit: number): Promise<RollupBatch> {
    const rows = await this.prisma.$transaction(
      async (tx) => {
        // The marking join finds each picked row by its full key in its own day partition (a nested loop of
        // index probes, the partitions pruned row by row). Costed over every partition, the planner prefers a hash
        // join over a scan of the whole table, and JIT-compiles the plan (half a second a batch): neither pays
        // for at most `limit` rows, so both are off for this statement's transaction.
        await tx.$queryRaw`SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)`;
        return tx.$queryRaw<Array<{ events: bigint; rollups: bigint }>>`
      WITH picked AS (
        SELECT request_id, segment, created_at FROM usage_events
        WHERE rolled_up_at IS NULL
        ORDER BY created_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), marked AS (
        -- the whole primary key, partition key included: each row is found in its own day's partition
        UPDATE usage_events e SET rolled_up_at = now()
        FROM picked p WHERE e.request_id = p.request_id AND e.segment = p.segment AND e.created_at = p.created_at
        RETURNING e.org_id, e.key_id, e.model, e.tier, date_trunc('hour', e.created_at, 'UTC') AS hour, e.segment,
          e.prompt_tokens, e.completion_tokens, e.cached_tokens, e.audio_seconds, e.cost_nanos
      ), sums AS (
        -- a continued stream is one request (its first segment) whose tokens are split over its segments' tiers
        SELECT org_id, key_id, model, tier, hour, count(*) FILTER (WHERE segment = 0) AS requests, sum(prompt_tokens) AS prompt_tokens,
          sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
          sum(audio_seconds) AS audio_seconds, sum(cost_nanos) AS cost_nanos
        FROM marked GROUP BY org_id, key_id, model, tier, hour
      ), upserted AS (
        INSERT INTO usage_rollups AS r (org_id, key_id, model, tier, hour, requests, prompt_tokens, completion_tokens,
          cached_tokens, audio_seconds, cost_nanos, version, updated_at)
        SELECT org_id, key_id, model, tier, hour, requests, prompt_tokens, completion_tokens, cached_tokens, audio_seconds, cost_nanos, 1, now()
        FROM sums ORDER BY org_id, key_id, model, tier, hour
        ON CONFLICT (org_id, key_id, model, tier, hour) DO UPDATE SET
          requests = r.requests + EXCLUDED.requests,
          prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens,
          completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens,
          cached_tokens = r.cached_tokens + EXCLUDED.cached_tokens,
          audio_seconds = r.audio_seconds + EXCLUDED.audio_seconds,
          cost_nanos = r.cost_nanos + EXCLUDED.cost_nanos,
          version = r.version + 1,
          updated_at = now()
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM upserted) AS rollups`;
      },
      // a batch on a loaded database may take seconds: Prisma's 5 s default would abort (and roll back) it
      { maxWait: 10_000, timeout: 300_000 },
    );
    return { events: Number(rows[0].events), rollups: Number(rows[0].rollups) };
  }

  /**
   * An org's usage in [from, to), grouped: its rollups plus the events the worker has not rolled up yet, read
   * in one statement (one snapshot), so a rollup committing meanwhile is counted once either way. One row per
   * group, model and tier (what is priced alike: the caller prices what cached tokens saved), in group order.
   * Rollups are hourly: `from` and `to` are used at hour precision.
   */
  async usage(orgId: string, from: Date, to: Date, group: UsageGroup): Promise<Array<UsageGroupRow & { model: string; tier: string }>> {
    const key =
      group === 'day'
        ? Prisma.sql`to_char(date_trunc('day', u.hour, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD')`
        : group === 'model'
          ? Prisma.sql`u.model`
          : group === 'tier'
            ? Prisma.sql`u.tier`
            : Prisma.sql`u.key_id::text`;
    const rows = await this.prisma.$queryRaw<
      Array<{ grp: string; model: string; tier: string; label: string | null; requests: bigint; prompt: bigint; completion: bigint; cached: bigint; audio: bigint; cost: bigint }>
    >`
      WITH u AS (
        SELECT key_id, model, tier, hour, requests, prompt_tokens, completion_tokens, cached_tokens, audio_seconds, cost_nanos
        FROM usage_rollups WHERE org_id = ${orgId}::uuid AND hour >= date_trunc('hour', ${from}::timestamptz, 'UTC') AND hour < ${to}
        UNION ALL
        SELECT key_id, model, tier, date_trunc('hour', created_at, 'UTC'), (segment = 0)::int, prompt_tokens, completion_tokens, cached_tokens, audio_seconds, cost_nanos
        FROM usage_events WHERE org_id = ${orgId}::uuid AND rolled_up_at IS NULL
          AND created_at >= date_trunc('hour', ${from}::timestamptz, 'UTC') AND created_at < ${to}
      )
      SELECT ${key} AS grp, u.model, u.tier,
        ${group === 'key' ? Prisma.sql`max(k.name || ' (' || k.prefix || ')')` : Prisma.sql`NULL::text`} AS label,
        sum(u.requests)::bigint AS requests, sum(u.prompt_tokens)::bigint AS prompt, sum(u.completion_tokens)::bigint AS completion,
        sum(u.cached_tokens)::bigint AS cached, sum(u.audio_seconds)::bigint AS audio, sum(u.cost_nanos)::bigint AS cost
      FROM u ${group === 'key' ? Prisma.sql`LEFT JOIN api_keys k ON k.id = u.key_id` : Prisma.empty}
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;
    return rows.map((r) => ({
      group: r.grp,
      model: r.model,
      tier: r.tier,
      label: r.label,
      requests: Number(r.requests),
      promptTokens: Number(r.prompt),
      completionTokens: Number(r.completion),
      cachedTokens: Number(r.cached),
      audioSeconds: Number(r.audio),
      costNanos: Number(r.cost),
    }));
  }

  /** The bill's lines for [from, to): usage per model and tier (what was priced alike). */
  async billLines(orgId: string, from: Date, to: Date): Promise<Array<UsageGroupRow & { model: string; tier: string }>> {
    const rows = await this.prisma.$queryRaw<Array<{ model: string; tier: string; requests: bigint; prompt: bigint; completion: bigint; cached: bigint; audio: bigint; cost: bigint }>>`
      WITH u AS (
        SELECT model, tier, requests, prompt_tokens, completion_tokens, cached_tokens, audio_seconds, cost_nanos
        FROM usage_rollups WHERE org_id = ${orgId}::uuid AND hour >= ${from} AND hour < ${to}
        UNION ALL
        SELECT model, tier, (segment = 0)::int, prompt_tokens, completion_tokens, cached_tokens, audio_seconds, cost_nanos
        FROM usage_events WHERE org_id = ${orgId}::uuid AND rolled_up_at IS NULL AND created_at >= ${from} AND created_at < ${to}
      )
      SELECT model, tier, sum(requests)::bigint AS requests, sum(prompt_tokens)::bigint AS prompt,
        sum(completion_tokens)::bigint AS completion, sum(cached_tokens)::bigint AS cached, sum(audio_seconds)::bigint AS audio,
        sum(cost_nanos)::bigint AS cost
      FROM u GROUP BY model, tier ORDER BY model, tier`;
    return rows.map((r) => ({
      group: `${r.model} / ${r.tier}`,
      label: null,
      model: r.model,
      tier: r.tier,
      requests: Number(r.requests),
      promptTokens: Number(r.prompt),
      completionTokens: Number(r.completion),
      cachedTokens: Number(r.cached),
      audioSeconds: Number(r.audio),
      costNanos: Number(r.cost),
    }));
  }

  findByOrg(orgId: string): Promise<UsageRollup[]> {
    return this.prisma.usageRollup.findMany({ where: { orgId }, orderBy: [{ hour: 'asc' }, { keyId: 'asc' }, { model: 'asc' }, { tier: 'asc' }] });
  }
}
