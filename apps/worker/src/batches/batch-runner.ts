import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { BatchesRepository, type BatchRow, type PendingLine } from '@spot/db';
import { batchTierName, costNanos, ModelCatalog } from '@spot/tiers';
import { CapacityGate } from './capacity-gate';
import { lineIds, usageOfBody } from './batch-lines';
import { LineClient } from './line-client';

/** How long a batch's status is trusted before it is read again (cancel stops new lines within about this). */
const STATUS_TTL_MS = 1_000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5_000;

/** Lines in flight in this process, over every chunk being run (BATCH_CONCURRENCY). */
class Slots {
  private free: number;
  private readonly queue: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.queue.push(resolve));
  }

  give(): void {
    const next = this.queue.shift();
    if (next !== undefined) next();
    else this.free++;
  }
}

/** What one chunk run did. */
export interface ChunkRun {
  recorded: number;
  /** Lines already recorded by another run when this one finished them (done twice, recorded and billed once). */
  duplicates: number;
  retries: number;
  /** The batch stopped (cancelled, expired) before every line had a result. */
  stopped: boolean;
}

/**
 * Runs the pending lines of one chunk: each through the gateway (its routing, wake and failover, on batch tiers
 * only), when the capacity gate lets it start, within this process's BATCH_CONCURRENCY. A line's result and its
 * usage event are written in one transaction, only while the line is pending, so a line done twice (its worker
 * killed after the engine answered, a chunk taken over) is recorded and billed once. A line that fails in a way
 * worth retrying (spot replica lost, tier waking, gateway restarting) is tried again, with backoff, until the
 * batch's window ends; the chunk returns when every line has a result or the batch stopped.
 */
@Injectable()
export class BatchRunner {
  private readonly logger = new Logger('BatchRunner');
  private readonly slots: Slots;
  private readonly status = new Map<string, { at: number; row: BatchRow | null }>();

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly batches: BatchesRepository,
    private readonly gate: CapacityGate,
    private readonly client: LineClient,
  ) {
    this.slots = new Slots(config.BATCH_CONCURRENCY);
  }

  async runChunk(batchId: string, fromLine: number, toLine: number, signal?: AbortSignal): Promise<ChunkRun> {
    const run: ChunkRun = { recorded: 0, duplicates: 0, retries: 0, stopped: false };
    const batch = await this.batch(batchId, true);
    if (batch === null || batch.status !== 'in_progress') {
      run.stopped = true;
      return run;
    }
    if (!this.client.configured) throw new Error('ADMIN_TOKEN is not set: the worker cannot send batch lines to the gateway');
    const lines = await this.batches.pendingLines(batchId, fromLine, toLine);
    await Promise.all(lines.map((line) => this.runLine(batch, line, run, signal)));
    return run;
  }

  private async runLine(batch: BatchRow, line: PendingLine, run: ChunkRun, signal?: AbortSignal): Promise<void> {
    const { requestId } = lineIds(batch.id, line.customId);
    const body = outgoingBody(line.body);
    let attempts = line.attempts;
    for (;;) {
      if (signal?.aborted || !(await this.active(batch.id))) {
        run.stopped = true;
        return;
      }
      // no capacity: look at the batch again (a cancel is seen within a second even while engines are busy)
      if (!(await this.gate.admit())) continue;
      await this.slots.take();
      let outcome;
      try {
        if (!(await this.active(batch.id))) {
          run.stopped = true;
          return;
        }
        outcome = await this.client.send(batch.endpoint, batch.keyId, requestId, body.text);
      } finally {
        this.slots.give();
      }
      if (outcome.kind === 'retry') {
        attempts = await this.batches.noteAttempt(batch.id, line.line);
        run.retries++;
        if (outcome.fatalAfter === null || attempts < outcome.fatalAfter) {
          await sleep(Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempts, 5)) * (0.5 + Math.random() / 2));
          continue;
        }
        // an engine error that keeps coming back is the line's answer
        await this.record(batch, line, requestId, body.model, { status: outcome.status, body: outcome.body, tier: null, durationMs: 0 }, run);
        return;
      }
      await this.record(batch, line, requestId, body.model, outcome, run);
      return;
    }
  }

  private async record(
    batch: BatchRow,
    line: PendingLine,
    requestId: string,
    model: string,
    answer: { status: number; body: string; tier: string | null; durationMs: number },
    run: ChunkRun,
  ): Promise<void> {
    let parsed: unknown;
    let body = answer.body;
    try {
      parsed = JSON.parse(body);
    } catch {
      // the output file is JSONL: a body that is not JSON is kept as a JSON string
      parsed = null;
      body = JSON.stringify(body);
    }
    let usage = null;
    let cost = 0;
    const ok = answer.status >= 200 && answer.status < 300;
    if (ok) {
      const tokens = usageOfBody(parsed) ?? { prompt: 0, completion: 0, cached: 0, reasoning: 0 };
      const route = answer.tier === null ? undefined : this.catalog.routesFor(model)?.find((r) => r.tier === answer.tier);
      if (route === undefined) this.logger.warn(`batch ${batch.id} line ${line.line}: no price for ${model} on tier ${answer.tier ?? '(unnamed)'}; billed at 0`);
      cost = route === undefined ? 0 : costNanos(route.batchPrice, { promptTokens: tokens.prompt, completionTokens: tokens.completion, cachedTokens: tokens.cached });
      usage = {
        requestId,
        orgId: batch.orgId,
        keyId: batch.keyId,
        model,
        tier: batchTierName(answer.tier ?? 'unknown'),
        promptTokens: tokens.prompt,
        completionTokens: tokens.completion,
        cachedTokens: tokens.cached,
        reasoningTokens: tokens.reasoning,
        durationMs: answer.durationMs,
      };
    }
    const recorded = await this.batches.recordLine({ batchId: batch.id, line: line.line, status: answer.status, body, costNanos: cost, usage });
    if (recorded) run.recorded++;
    else run.duplicates++;
  }

  /** Whether the batch still runs (read again after {@link STATUS_TTL_MS}). */
  private async active(batchId: string): Promise<boolean> {
    const b = await this.batch(batchId, false);
    return b !== null && b.status === 'in_progress' && b.expiresAt.getTime() > Date.now();
  }

  private async batch(batchId: string, fresh: boolean): Promise<BatchRow | null> {
    const held = this.status.get(batchId);
    const now = Date.now();
    if (!fresh && held !== undefined && now - held.at < STATUS_TTL_MS) return held.row;
    const row = await this.batches.findById(batchId);
    if (this.status.size > 1_000) this.status.clear();
    this.status.set(batchId, { at: now, row });
    return row;
  }
}

/** The body sent for a line: the input's, never streamed (a batch line's answer is one JSON body). */
function outgoingBody(text: string): { text: string; model: string } {
  const body = JSON.parse(text) as Record<string, unknown>;
  const model = typeof body.model === 'string' ? body.model : '';
  if (body.stream === undefined && body.stream_options === undefined) return { text, model };
  const { stream: _s, stream_options: _o, ...rest } = body;
  return { text: JSON.stringify(rest), model };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
