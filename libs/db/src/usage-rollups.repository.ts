import { Injectable } from '@nestjs/common';
import type { UsageRollup } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** What one rollup batch did. */
export interface RollupBatch {
  events: number;
  rollups: number;
}

/** usage_rollups, and the exactly-once fold of usage_events into them. */
@Injectable()
export class UsageRollupsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Folds up to `limit` unrolled events into their hourly rollups in ONE statement (one transaction): the
   * events are picked with FOR UPDATE SKIP LOCKED, marked rolled up, summed, and added to their rollup rows.
   * So an event is counted exactly once: a concurrent pass skips rows another holds, an event whose insert
   * has not committed yet is not visible and is picked by a later pass (no sequence watermark to get wrong),
   * and a crash rolls back the marks with the sums. Rows are upserted in key order so that concurrent passes
   * lock them in one order.
   */
  async rollupBatch(limit: number): Promise<RollupBatch> {
    const rows = await this.prisma.$queryRaw<Array<{ events: bigint; rollups: bigint }>>`
      WITH picked AS (
        SELECT request_id FROM usage_events
        WHERE rolled_up_at IS NULL
        ORDER BY created_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), marked AS (
        UPDATE usage_events e SET rolled_up_at = now()
        FROM picked p WHERE e.request_id = p.request_id
        RETURNING e.org_id, e.key_id, e.model, e.tier, date_trunc('hour', e.created_at, 'UTC') AS hour,
          e.prompt_tokens, e.completion_tokens, e.cached_tokens, e.cost_nanos
      ), sums AS (
        SELECT org_id, key_id, model, tier, hour, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,
          sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens, sum(cost_nanos) AS cost_nanos
        FROM marked GROUP BY org_id, key_id, model, tier, hour
      ), upserted AS (
        INSERT INTO usage_rollups AS r (org_id, key_id, model, tier, hour, requests, prompt_tokens, completion_tokens,
          cached_tokens, cost_nanos, version, updated_at)
        SELECT org_id, key_id, model, tier, hour, requests, prompt_tokens, completion_tokens, cached_tokens, cost_nanos, 1, now()
        FROM sums ORDER BY org_id, key_id, model, tier, hour
        ON CONFLICT (org_id, key_id, model, tier, hour) DO UPDATE SET
          requests = r.requests + EXCLUDED.requests,
          prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens,
          completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens,
          cached_tokens = r.cached_tokens + EXCLUDED.cached_tokens,
          cost_nanos = r.cost_nanos + EXCLUDED.cost_nanos,
          version = r.version + 1,
          updated_at = now()
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM upserted) AS rollups`;
    return { events: Number(rows[0].events), rollups: Number(rows[0].rollups) };
  }

  /** Deletes up to `limit` rolled-up events created before `cutoff`; returns how many. Never an unrolled one. */
  deleteRolledUpBefore(cutoff: Date, limit: number): Promise<number> {
    return this.prisma.$executeRaw`
      DELETE FROM usage_events WHERE request_id IN (
        SELECT request_id FROM usage_events WHERE rolled_up_at IS NOT NULL AND created_at < ${cutoff} LIMIT ${limit})`;
  }

  findByOrg(orgId: string): Promise<UsageRollup[]> {
    return this.prisma.usageRollup.findMany({ where: { orgId }, orderBy: [{ hour: 'asc' }, { keyId: 'asc' }, { model: 'asc' }, { tier: 'asc' }] });
  }
}
