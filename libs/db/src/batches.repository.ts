import { Injectable } from '@nestjs/common';
import type { Batch, Prisma } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

export type BatchRow = Batch;

/** A batch to store (POST /v1/batches): `validating` until the worker has read its input file. */
export interface NewBatch {
  id: string;
  orgId: string;
  keyId: string;
  endpoint: string;
  inputFileId: string;
  completionWindow: string;
  metadata: Record<string, string> | null;
  expiresAt: Date;
}

/** One line of a batch's input, as validation stores it. */
export interface NewBatchLine {
  line: number;
  customId: string;
  body: string;
}

/** A line still to run. */
export interface PendingLine {
  line: number;
  customId: string;
  body: string;
  attempts: number;
}

/** A line's outcome: an HTTP response (2xx: completed, else failed), with its usage event when it is billed. */
export interface LineResult {
  batchId: string;
  line: number;
  status: number;
  body: string;
  costNanos: number;
  /** The usage event (batch lines are billed from here, never by the gateway), or null for an unbilled error. */
  usage: {
    requestId: string;
    orgId: string;
    keyId: string;
    model: string;
    tier: string;
    promptTokens: number;
    completionTokens: number;
    cachedTokens: number;
    /** Counted on the batch (OpenAI's `usage.output_tokens_details`), not on the usage event. */
    reasoningTokens: number;
    durationMs: number;
  } | null;
}

/** A finished line as finalization renders it into the output or error file. */
export interface FinishedLine {
  line: number;
  customId: string;
  state: string;
  responseStatus: number | null;
  responseBody: string | null;
  error: unknown;
}

/** What finalization writes: the rendered JSONL line of a finished line, and which file it goes to. */
export type RenderLine = (row: FinishedLine) => { file: 'output' | 'error'; text: string };

/** The files finalization writes (ids chosen by the caller). */
export interface FinalFiles {
  outputFileId: string;
  errorFileId: string;
  /** An error object for lines that never ran, by why the batch ended. */
  unrun: { expired: unknown; cancelled: unknown };
}

/** A batch the sweep must act on, and why. */
export interface SweepItem {
  id: string;
  status: string;
  /** in_progress only: every line has a result, or the window has passed. */
  due: boolean;
  /** in_progress only: the chunks were never queued (the validation that stored the lines died first). */
  chunksMissing: boolean;
}

const TERMINAL = ['completed', 'failed', 'expired', 'cancelled'];
/** The statuses a cancel moves to `cancelling` (OpenAI's: a batch that has not ended and is not being cancelled). */
export const CANCELLABLE_BATCH_STATUSES: readonly string[] = ['validating', 'in_progress', 'finalizing'];
const PAGE = 1_000;
const CHUNK_BYTES = 1024 * 1024;

/**
 * batches and batch_requests. A line's result, its batch's counters (lines, cost, tokens) and its usage event are written in ONE
 * transaction, and only while the line is `pending`: however many times a line is run (a worker killed after
 * the engine answered, two workers on one chunk), it is recorded, and billed, once.
 */
@Injectable()
export class BatchesRepository {
  constructor(private readonly prisma: PrismaService) {}

  create(b: NewBatch): Promise<BatchRow> {
    return this.prisma.batch.create({
      data: {
        id: b.id,
        orgId: b.orgId,
        keyId: b.keyId,
        endpoint: b.endpoint,
        inputFileId: b.inputFileId,
        completionWindow: b.completionWindow,
        metadata: b.metadata ?? undefined,
        expiresAt: b.expiresAt,
      },
    });
  }

  /** An org's batch, or null (another org's is a miss). */
  find(orgId: string, id: string): Promise<BatchRow | null> {
    return this.prisma.batch.findFirst({ where: { id, orgId } });
  }

  findById(id: string): Promise<BatchRow | null> {
    return this.prisma.batch.findUnique({ where: { id } });
  }

  /** An org's batches newest first, `limit` + 1 rows after the batch `after` (a cursor of its own org). */
  async list(orgId: string, limit: number, after?: string): Promise<BatchRow[]> {
    let where: Prisma.BatchWhereInput = { orgId };
    if (after !== undefined) {
      const cursor = await this.find(orgId, after);
      if (cursor === null) return [];
      where = { orgId, OR: [{ createdAt: { lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { lt: cursor.id } }] };
    }
    return this.prisma.batch.findMany({ where, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], take: limit + 1 });
  }

  /** Asks a running batch to stop: `cancelling` (the worker finishes it as `cancelled`). Null when none of the org's. */
  async requestCancel(orgId: string, id: string): Promise<BatchRow | null> {
    await this.prisma.batch.updateMany({
      where: { id, orgId, status: { in: [...CANCELLABLE_BATCH_STATUSES] } },
      data: { status: 'cancelling', cancellingAt: new Date() },
    });
    return this.find(orgId, id);
  }

  /** Validation failed: the batch is `failed` with OpenAI's `errors` list (only from `validating`). */
  async failValidation(id: string, errors: unknown): Promise<boolean> {
    const n = await this.prisma.batch.updateMany({
      where: { id, status: 'validating' },
      data: { status: 'failed', failedAt: new Date(), errors: errors as Prisma.InputJsonValue },
    });
    return n.count > 0;
  }

  /**
   * Stores the validated lines (`pages`, read as they come: the input file is not held whole) and moves the batch
   * to `in_progress`, in ONE transaction (a validation that dies half way leaves the batch `validating`, to be
   * validated again). False when the batch left `validating` meanwhile (cancelled): nothing is stored.
   */
  async startLines(id: string, pages: AsyncIterable<readonly NewBatchLine[]>): Promise<boolean> {
    return this.prisma.$transaction(
      async (tx) => {
        const locked = await tx.$queryRaw<Array<{ status: string }>>`SELECT status FROM batches WHERE id = ${id} FOR UPDATE`;
        if (locked[0]?.status !== 'validating') return false;
        await tx.$executeRaw`DELETE FROM batch_requests WHERE batch_id = ${id}`;
        let total = 0;
        for await (const page of pages) {
          if (page.length === 0) continue;
          total += page.length;
          await tx.$executeRaw`
            INSERT INTO batch_requests (batch_id, line, custom_id, body)
            SELECT ${id}, u.line, u.custom_id, u.body
            FROM unnest(${page.map((l) => l.line)}::int[], ${page.map((l) => l.customId)}::text[], ${page.map((l) => l.body)}::text[])
              AS u(line, custom_id, body)`;
        }
        await tx.batch.update({ where: { id }, data: { status: 'in_progress', inProgressAt: new Date(), total } });
        return true;
      },
      { timeout: 600_000, maxWait: 10_000 },
    );
  }

  /** The number of a batch's last line (0: none). */
  async lastLine(batchId: string): Promise<number> {
    const r = await this.prisma.batchRequest.aggregate({ where: { batchId }, _max: { line: true } });
    return r._max.line ?? 0;
  }

  async markChunksQueued(id: string): Promise<void> {
    await this.prisma.batch.updateMany({ where: { id, chunksQueuedAt: null }, data: { chunksQueuedAt: new Date() } });
  }

  /** The lines of [fromLine, toLine] without a result yet, in order. */
  pendingLines(batchId: string, fromLine: number, toLine: number): Promise<PendingLine[]> {
    return this.prisma.batchRequest.findMany({
      where: { batchId, line: { gte: fromLine, lte: toLine }, state: 'pending' },
      select: { line: true, customId: true, body: true, attempts: true },
      orderBy: { line: 'asc' },
    });
  }

  /** A try of a line failed in a way worth retrying; returns its tries so far. */
  async noteAttempt(batchId: string, line: number): Promise<number> {
    const rows = await this.prisma.$queryRaw<Array<{ attempts: number }>>`
      UPDATE batch_requests SET attempts = attempts + 1 WHERE batch_id = ${batchId} AND line = ${line} RETURNING attempts`;
    return rows[0]?.attempts ?? 0;
  }

  /**
   * Records a line's response, its batch's counters and (when billed) its usage event in ONE transaction, only
   * if the line is still pending. Returns false when it was not (recorded before, or the batch ended first):
   * then nothing is written and nothing billed.
   */
  async recordLine(r: LineResult): Promise<boolean> {
    const state = r.status >= 200 && r.status < 300 ? 'completed' : 'failed';
    return this.prisma.$transaction(async (tx) => {
      // the batch row first, as finalize takes it: the same lock order everywhere (line before batch deadlocked
      // against a finalize marking the batch's pending lines)
      await tx.$queryRaw`SELECT 1 FROM batches WHERE id = ${r.batchId} FOR UPDATE`;
      const updated = await tx.$executeRaw`
        UPDATE batch_requests SET state = ${state}, response_status = ${r.status}, response_body = ${r.body},
          cost_nanos = ${r.costNanos}, finished_at = now()
        WHERE batch_id = ${r.batchId} AND line = ${r.line} AND state = 'pending'`;
      if (updated === 0) return false;
      const u = r.usage;
      if (u !== null) {
        // Exactly once because the line turned from pending to done in this transaction (the update above, under
        // the batch's row lock): a second recordLine of the line writes nothing. The ON CONFLICT on the key does
        // not carry that here: the key holds created_at (the partition key), and this one is now().
        await tx.$executeRaw`
          INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens,
            cached_tokens, cost_nanos, ttft_ms, duration_ms, status, estimated, batch_id)
          VALUES (${u.requestId}, now(), ${u.orgId}::uuid, ${u.keyId}::uuid, ${u.model}, ${u.tier}, ${u.promptTokens},
            ${u.completionTokens}, ${u.cachedTokens}, ${r.costNanos}, NULL, ${u.durationMs}, ${r.status}, false, ${r.batchId})
          ON CONFLICT (request_id, segment, created_at) DO NOTHING`;
      }
      await tx.$executeRaw`
        UPDATE batches SET completed = completed + ${state === 'completed' ? 1 : 0}, failed = failed + ${state === 'failed' ? 1 : 0},
          cost_nanos = cost_nanos + ${r.costNanos}, input_tokens = input_tokens + ${u?.promptTokens ?? 0},
          cached_tokens = cached_tokens + ${u?.cachedTokens ?? 0}, output_tokens = output_tokens + ${u?.completionTokens ?? 0},
          reasoning_tokens = reasoning_tokens + ${u?.reasoningTokens ?? 0}, model = COALESCE(model, ${u?.model ?? null}::text)
        WHERE id = ${r.batchId}`;
      return true;
    });
  }

  /** The batches the sweep must act on: validating ones, cancelling ones, running ones that are due or lost their chunks. */
  async sweepItems(now: Date, chunkGraceMs: number): Promise<SweepItem[]> {
    const rows = await this.prisma.$queryRaw<Array<{ id: string; status: string; due: boolean; chunks_missing: boolean }>>`
      SELECT id, status,
        (status = 'in_progress' AND (completed + failed >= total OR expires_at <= ${now})) OR status = 'finalizing' AS due,
        (status = 'in_progress' AND chunks_queued_at IS NULL AND in_progress_at < ${new Date(now.getTime() - chunkGraceMs)}) AS chunks_missing
      FROM batches
      WHERE status IN ('validating', 'cancelling', 'finalizing')
        OR (status = 'in_progress' AND (completed + failed >= total OR expires_at <= ${now} OR chunks_queued_at IS NULL))
      ORDER BY created_at
      LIMIT 500`;
    return rows.map((r) => ({ id: r.id, status: r.status, due: r.due, chunksMissing: r.chunks_missing }));
  }

  /** Shows `finalizing` for a running batch whose every line has a result. */
  async markFinalizing(id: string): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE batches SET status = 'finalizing', finalizing_at = now()
      WHERE id = ${id} AND status = 'in_progress' AND completed + failed >= total`;
  }

  /**
   * Ends a batch if it is due, in ONE transaction under the batch's row lock: a cancelling batch becomes
   * `cancelled`, one past its window `expired` (its lines without a result are marked so, and land in the error
   * file), one whose every line has a result `completed`. The output and error files are written in the same
   * transaction (a crash leaves the batch as it was, and the next sweep does it again). Returns the final status,
   * or null when the batch is not due (or ended already).
   */
  async finalize(id: string, now: Date, files: FinalFiles, render: RenderLine): Promise<string | null> {
    return this.prisma.$transaction(
      async (tx) => {
        const [b] = await tx.$queryRaw<Array<{ status: string; org_id: string; expires_at: Date; total: number; completed: number; failed: number }>>`
          SELECT status, org_id, expires_at, total, completed, failed FROM batches WHERE id = ${id} FOR UPDATE`;
        if (b === undefined || TERMINAL.includes(b.status)) return null;
        let final: 'completed' | 'expired' | 'cancelled';
        if (b.status === 'cancelling') final = 'cancelled';
        else if (b.status === 'validating') return null;
        else if (b.completed + b.failed >= b.total) final = 'completed';
        else if (b.expires_at <= now) final = 'expired';
        else return null;
        if (final !== 'completed') {
          const error = final === 'expired' ? files.unrun.expired : files.unrun.cancelled;
          await tx.$executeRaw`
            UPDATE batch_requests SET state = ${final}, error = ${JSON.stringify(error)}::jsonb, finished_at = now()
            WHERE batch_id = ${id} AND state = 'pending'`;
        }
        // both files exist from the start (their chunks are written as they fill); one left empty is dropped
        for (const [which, fileId] of [['output', files.outputFileId], ['error', files.errorFileId]] as const) {
          await tx.file.create({
            data: { id: fileId, orgId: b.org_id, purpose: 'batch_output', filename: `${id}_${which}.jsonl`, status: 'processed', createdAt: now },
          });
        }
        const writers = {
          output: new ChunkWriter(tx, files.outputFileId),
          error: new ChunkWriter(tx, files.errorFileId),
        };
        let after = 0;
        for (;;) {
          const rows = await tx.batchRequest.findMany({
            where: { batchId: id, line: { gt: after } },
            select: { line: true, customId: true, state: true, responseStatus: true, responseBody: true, error: true },
            orderBy: { line: 'asc' },
            take: PAGE,
          });
          if (rows.length === 0) break;
          for (const row of rows) {
            const out = render(row);
            await writers[out.file].write(`${out.text}\n`);
          }
          after = rows[rows.length - 1].line;
        }
        const ids: Record<'output' | 'error', string | null> = { output: null, error: null };
        for (const which of ['output', 'error'] as const) {
          const w = writers[which];
          await w.flush();
          if (w.bytes === 0) {
            await tx.file.delete({ where: { id: w.fileId } });
            continue;
          }
          await tx.file.update({ where: { id: w.fileId }, data: { bytes: BigInt(w.bytes) } });
          ids[which] = w.fileId;
        }
        const stamp = final === 'completed' ? { completedAt: now } : final === 'expired' ? { expiredAt: now } : { cancelledAt: now };
        await tx.batch.update({
          where: { id },
          data: { status: final, outputFileId: ids.output, errorFileId: ids.error, finalizingAt: b.status === 'finalizing' ? undefined : now, ...stamp },
        });
        return final;
      },
      { timeout: 600_000, maxWait: 10_000 },
    );
  }

  /** An org's batches for the console, newest first. */
  recentOfOrg(orgId: string, limit: number): Promise<BatchRow[]> {
    return this.prisma.batch.findMany({ where: { orgId }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], take: limit });
  }

  /** The newest batches of every org (or of `orgId`), each with its org's slug: the operator's view. */
  async recent(limit: number, orgId?: string): Promise<Array<BatchRow & { orgSlug: string }>> {
    const rows = await this.prisma.batch.findMany({ where: orgId === undefined ? {} : { orgId }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], take: limit });
    const orgs = await this.prisma.org.findMany({ where: { id: { in: [...new Set(rows.map((r) => r.orgId))] } }, select: { id: true, slug: true } });
    const slugs = new Map(orgs.map((o) => [o.id, o.slug]));
    return rows.map((r) => ({ ...r, orgSlug: slugs.get(r.orgId) ?? r.orgId }));
  }
}

/** Writes a file's text as ~1 MiB chunks inside a transaction, as it comes. */
class ChunkWriter {
  bytes = 0;
  private seq = 0;
  private parts: Buffer[] = [];
  private held = 0;

  constructor(
    private readonly tx: Prisma.TransactionClient,
    readonly fileId: string,
  ) {}

  async write(text: string): Promise<void> {
    const buf = Buffer.from(text, 'utf8');
    this.parts.push(buf);
    this.held += buf.length;
    this.bytes += buf.length;
    if (this.held >= CHUNK_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.held === 0) return;
    const data = new Uint8Array(Buffer.concat(this.parts, this.held));
    this.parts = [];
    this.held = 0;
    await this.tx.fileChunk.create({ data: { fileId: this.fileId, seq: this.seq++, data } });
  }
}
