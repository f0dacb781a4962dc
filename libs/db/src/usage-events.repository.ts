import { Injectable } from '@nestjs/common';
import type { Prisma, UsageEvent } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

export type UsageEventRow = Prisma.UsageEventCreateManyInput;

/** usage_events: append-only, idempotent on request_id. */
@Injectable()
export class UsageEventsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Inserts a batch; rows whose request_id is already stored are skipped, so replaying a batch after a
   * crash or a timeout never counts a request twice. Returns how many rows were new.
   */
  async insertMany(rows: readonly UsageEventRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    const sorted = [...rows].sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
    const col = <T>(pick: (r: UsageEventRow) => T): T[] => sorted.map(pick);
    // One statement with one array parameter per column: a few ms for 500 rows, where createMany's
    // per-row parameters cost hundreds of ms and stalled the gateway's event loop.
    return this.prisma.$executeRaw`
      INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens,
        completion_tokens, cached_tokens, ttft_ms, duration_ms, status, estimated, cost_nanos)
      SELECT * FROM unnest(
        ${col((r) => r.requestId)}::text[], ${col((r) => new Date(r.createdAt))}::timestamptz[],
        ${col((r) => r.orgId)}::uuid[], ${col((r) => r.keyId)}::uuid[], ${col((r) => r.model)}::text[],
        ${col((r) => r.tier)}::text[], ${col((r) => r.promptTokens)}::int[], ${col((r) => r.completionTokens)}::int[],
        ${col((r) => r.cachedTokens ?? 0)}::int[], ${col((r) => r.ttftMs ?? null)}::int[], ${col((r) => r.durationMs)}::int[],
        ${col((r) => r.status)}::smallint[], ${col((r) => r.estimated ?? false)}::boolean[],
        ${col((r) => String(r.costNanos ?? 0))}::bigint[])
      ON CONFLICT (request_id) DO NOTHING`;
  }

  /** What an org's events since `since` cost, in nano-USD (the gateway seeds its budget ledger from this). */
  async costSince(orgId: string, since: Date): Promise<number> {
    const rows = await this.prisma.$queryRaw<Array<{ total: string }>>`
      SELECT coalesce(sum(cost_nanos), 0)::text AS total FROM usage_events WHERE org_id = ${orgId}::uuid AND created_at >= ${since}`;
    return Number(rows[0]?.total ?? 0);
  }

  findByRequestId(requestId: string): Promise<UsageEvent | null> {
    return this.prisma.usageEvent.findUnique({ where: { requestId } });
  }

  findByRequestIds(requestIds: readonly string[]): Promise<UsageEvent[]> {
    return this.prisma.usageEvent.findMany({ where: { requestId: { in: [...requestIds] } } });
  }
}
