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
    const { count } = await this.prisma.usageEvent.createMany({ data: sorted, skipDuplicates: true });
    return count;
  }

  findByRequestId(requestId: string): Promise<UsageEvent | null> {
    return this.prisma.usageEvent.findUnique({ where: { requestId } });
  }

  findByRequestIds(requestIds: readonly string[]): Promise<UsageEvent[]> {
    return this.prisma.usageEvent.findMany({ where: { requestId: { in: [...requestIds] } } });
  }
}
