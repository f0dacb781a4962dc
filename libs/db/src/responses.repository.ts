import { Injectable } from '@nestjs/common';
import type { Prisma } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** A Response to store (POST /v1/responses with `store`). */
export interface NewStoredResponse {
  id: string;
  orgId: string;
  keyId: string | null;
  model: string;
  createdAt: Date;
  expiresAt: Date;
  previousResponseId: string | null;
  /** This request's own input items. */
  input: unknown[];
  /** The Response object as the client got it. */
  response: Record<string, unknown>;
  requestId: string;
}

/** A stored Response as it is read back. */
export interface StoredResponseRow {
  id: string;
  model: string;
  previousResponseId: string | null;
  input: unknown[];
  response: Record<string, unknown>;
}

/** One turn of a chain of stored Responses, oldest first: its input items and the output it produced. */
export interface ResponseTurn {
  id: string;
  input: unknown[];
  output: unknown[];
}

/**
 * responses: the Responses the gateway keeps for previous_response_id, retrieval and input_items. Every read
 * is scoped to an org and to rows not past expires_at: another org's id and an expired one read as null.
 */
@Injectable()
export class ResponsesRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Stores one Response; an id already stored is left as it is (a replayed write is a no-op). */
  async insert(r: NewStoredResponse): Promise<void> {
    await this.prisma.storedResponse.createMany({
      data: [{ ...r, input: r.input as Prisma.InputJsonValue, response: r.response as Prisma.InputJsonValue }],
      skipDuplicates: true,
    });
  }

  /** An org's live Response by id, or null. */
  async find(orgId: string, id: string, now: Date): Promise<StoredResponseRow | null> {
    const row = await this.prisma.storedResponse.findFirst({
      where: { id, orgId, expiresAt: { gt: now } },
      select: { id: true, model: true, previousResponseId: true, input: true, response: true },
    });
    return row === null ? null : { ...row, input: row.input as unknown[], response: row.response as Record<string, unknown> };
  }

  /**
   * The chain that ends at `id` (that Response and every previous one it names, oldest first), in one
   * recursive query; null when `id` is not a live Response of the org. A link that is gone (deleted, expired)
   * ends the chain there, as OpenAI's conversation state does.
   */
  async chain(orgId: string, id: string, now: Date, maxTurns = 1_000): Promise<ResponseTurn[] | null> {
    const rows = await this.prisma.$queryRaw<Array<{ id: string; input: unknown[]; output: unknown[] | null; depth: number }>>`
      WITH RECURSIVE turns AS (
        SELECT id, previous_response_id, input, response -> 'output' AS output, 0 AS depth
        FROM responses WHERE id = ${id} AND org_id = ${orgId}::uuid AND expires_at > ${now}
        UNION ALL
        SELECT r.id, r.previous_response_id, r.input, r.response -> 'output', t.depth + 1
        FROM responses r JOIN turns t ON r.id = t.previous_response_id
        WHERE r.org_id = ${orgId}::uuid AND r.expires_at > ${now} AND t.depth < ${maxTurns}
      )
      SELECT id, input, output, depth FROM turns ORDER BY depth DESC`;
    if (rows.length === 0) return null;
    return rows.map((r) => ({ id: r.id, input: r.input, output: r.output ?? [] }));
  }

  /** Deletes an org's Response; false when it has none by that id (or it expired). */
  async delete(orgId: string, id: string, now: Date): Promise<boolean> {
    const r = await this.prisma.storedResponse.deleteMany({ where: { id, orgId, expiresAt: { gt: now } } });
    return r.count > 0;
  }

  /** Deletes Responses past their expires_at, at most `limit` per call; returns how many. */
  async deleteExpired(now: Date, limit = 10_000): Promise<number> {
    return this.prisma.$executeRaw`
      DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE expires_at <= ${now} LIMIT ${limit})`;
  }

  /** Sets a Response's expires_at (tests of retention, operators). */
  async expire(id: string, at: Date): Promise<void> {
    await this.prisma.storedResponse.updateMany({ where: { id }, data: { expiresAt: at } });
  }
}
