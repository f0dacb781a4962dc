import { closeSync, openSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { type LiveUsage, ProgressJournal } from './progress-journal';
import { toUsageRow, type UsageEvent } from './usage-event';
import type { UsageSink } from './usage-sink';
import { UsageSpool, type ClaimedSegment, type RejectedLine } from './usage-spool';

/** Milliseconds since the epoch; injected so tests can drive time. */
export interface UsageClock {
  now(): number;
}

export interface UsageLogger {
  warn(message: string): void;
  error(message: string): void;
}

export interface UsageRecorderOptions {
  /** Directory of the disk spool (created if missing); may be shared by several processes. */
  spoolDir: string;
  /** Flush period in ms (default 200). */
  flushMs?: number;
  /** Rows per insert; a flush starts as soon as this many events are pending (default 500). */
  batchSize?: number;
  /** Events held in memory; beyond this the oldest are spilled to the spool (default 20,000). */
  memoryMax?: number;
  /** First retry delay after a failed write, doubled on each failure up to `retryMaxMs` (100 / 5,000). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** A write (insert or last-used bump) that takes longer counts as failed and is retried (default 10,000). */
  writeTimeoutMs?: number;
  /** How long {@link UsageRecorder.stop} tries Postgres before spilling what is left (default 3,000). */
  stopTimeoutMs?: number;
  /** A claim on a spool segment older than this is taken over even if its process looks alive (60,000). */
  staleClaimMs?: number;
  /** How often the spool is scanned for segments other processes left behind (default 10,000). */
  spoolScanMs?: number;
  /**
   * Write-ahead journal (default on): every event is appended to a file in the spool directory on the event
   * loop turn it is recorded, so a crash (SIGKILL, OOM) loses nothing that was recorded; files are deleted
   * once their events are in Postgres or the spool, and a dead process's file is replayed like a spool segment.
   */
  journal?: boolean;
  /** How often the progress of streams in flight is journaled (default 50 ms; only with the journal on). */
  progressMs?: number;
  /**
   * A key's last_used_at is bumped at most once per this period per process (default 60 s): it is shown to
   * people, and one UPDATE per batch would double the statements the recorder sends.
   */
  touchIntervalMs?: number;
  clock?: UsageClock;
  logger?: UsageLogger;
}

/** Counters for metrics. */
export interface UsageRecorderStats {
  /** Events in memory: queued, being written or being spilled. */
  pending: number;
  /** Events this process spilled to disk and has not replayed yet. */
  spooledEvents: number;
  /** Rows newly inserted. */
  written: number;
  /** Rows sent that were already stored (replays after a crash or a timed-out write). */
  duplicates: number;
  /** Failed write attempts (each retried; no event is dropped). */
  failures: number;
  /** Failed `last_used_at` bumps (usage itself was committed). */
  touchFailures: number;
  /** Events or spool lines that can never be inserted, set aside in `rejected-*.ndjson` in the spool dir. */
  rejected: number;
  /** Spool segments whose last line was cut short. */
  tornLines: number;
  lastError?: string;
}

/** Thrown by {@link UsageRecorder.stop} when events could reach neither Postgres nor the disk. */
export class UsageSpoolError extends Error {
  readonly code = 'usage_spool_failed';
}

class UsageWriteTimeoutError extends Error {
  readonly code = 'usage_write_timeout';
}

function describe(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text.replace(/\s+/g, ' ').trim().slice(0, 500);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UsageWriteTimeoutError(`${what} took more than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves true when the promise settles within ms, false otherwise. */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  const settled = promise.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Records one usage event per request and writes them to Postgres in batches, off the request path.
 * Usage is money: an event is never dropped (failed writes are retried with capped backoff; beyond
 * `memoryMax` events, or when Postgres is unreachable at shutdown, events go to a durable disk spool that is
 * replayed later, by this or any process sharing the directory) and never counted twice (inserts are
 * idempotent on the request id, so replays are harmless).
 *
 * Lifecycle: {@link start} (Nest: `onModuleInit`), {@link record} per request, {@link stop} once the last
 * request has been recorded (Nest: `onApplicationShutdown` at the latest).
 */
export class UsageRecorder implements OnModuleInit, OnApplicationShutdown {
  private readonly flushMs: number;
  private readonly batchSize: number;
  private readonly memoryMax: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly writeTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly spoolScanMs: number;
  private readonly touchIntervalMs: number;
  private readonly touchedAt = new Map<string, number>();
  private readonly clock: UsageClock;
  private readonly logger: UsageLogger;
  private readonly spool: UsageSpool;

  private pending: UsageEvent[] = [];
  /** The batch being written: stop() takes it over if the write hangs past the deadline. */
  private inflight: UsageEvent[] | null = null;
  private spillingCount = 0;
  private wakeQueued = false;
  private pumping: Promise<void> | null = null;
  private spilling: Promise<void> | null = null;
  private flushDue = false;
  private spoolDue = true;
  private spoolTurn = false;
  private lastScanAt = 0;
  private retryAt = 0;
  private backoffMs = 0;
  private spillRetryAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private stopping: Promise<void> | null = null;
  /** Segments this process wrote, with their event counts, until it replays them. */
  private readonly ownSegments = new Map<string, number>();
  /** Rows of a segment already committed before a failed write, so a retry resumes there. */
  private readonly replayProgress = new Map<string, number>();
  private readonly counters = {
    spooledEvents: 0,
    written: 0,
    duplicates: 0,
    failures: 0,
    touchFailures: 0,
    rejected: 0,
    tornLines: 0,
  };
  private lastError: string | undefined;
  private readonly journalOn: boolean;
  private journalFd: number | null = null;
  private journalFile: string | null = null;
  /** Journal files closed by a rotation, deleted once every event they hold is durable elsewhere. */
  private sealed: string[] = [];
  private lastJournalTouch = 0;
  /** Journal lines recorded this turn, written together (one write per turn of the event loop, not per event). */
  private journalLines = '';
  private journalQueued = false;
  private journalWaiters: Array<() => void> = [];
  /** Streams in flight, journaled as they go (with the journal on): a crash bills what their clients received. */
  private readonly progress: ProgressJournal | null;

  constructor(
    private readonly sink: UsageSink,
    options: UsageRecorderOptions,
  ) {
    this.flushMs = options.flushMs ?? 200;
    this.batchSize = options.batchSize ?? 500;
    this.memoryMax = Math.max(options.memoryMax ?? 20_000, 1);
    this.retryMinMs = options.retryMinMs ?? 100;
    this.retryMaxMs = Math.max(options.retryMaxMs ?? 5_000, this.retryMinMs);
    this.writeTimeoutMs = options.writeTimeoutMs ?? 10_000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 3_000;
    this.spoolScanMs = options.spoolScanMs ?? 10_000;
    this.touchIntervalMs = options.touchIntervalMs ?? 60_000;
    this.journalOn = options.journal ?? true;
    this.clock = options.clock ?? { now: () => Date.now() };
    this.logger = options.logger ?? new Logger('UsageRecorder');
    this.spool = new UsageSpool(options.spoolDir, {
      staleClaimMs: options.staleClaimMs ?? 60_000,
      now: () => this.clock.now(),
    });
    this.progress = this.journalOn ? new ProgressJournal(this.spool, { intervalMs: options.progressMs, logger: this.logger }) : null;
  }

  /**
   * Journals a request in flight (a stream) as it goes, from admission to its final {@link record}: if this
   * process dies meanwhile, whichever process replays the spool bills it what `live` last said. Costs a map
   * insert; the writes happen on a timer, in one batch for all live requests.
   */
  follow(live: LiveUsage): void {
    this.progress?.follow(live);
  }

  /** Ends {@link follow}: call right after the request's final {@link record}. */
  unfollow(live: LiveUsage): void {
    this.progress?.unfollow(live);
  }

  /**
   * Hands over one request's usage. Costs a push onto an array: no I/O, no await, no serialization. The
   * recorder owns the object from here on; do not mutate it. After {@link stop}, the event is written to the
   * spool synchronously (replayed at the next start).
   */
  record(event: UsageEvent): void {
    if (this.closed) {
      this.recordLate(event);
      return;
    }
    const n = this.pending.push(event);
    if (this.journalOn) this.journal(event);
    if (n === this.batchSize || n > this.memoryMax) this.wakeSoon();
  }

  /**
   * Appends an event to the journal at once (one small write into the page cache: a process crash keeps it,
   * a machine crash may not), so that a caller that records before releasing its response's last bytes
   * never has told a client about usage a crash could lose.
   */
  private journal(event: UsageEvent): void {
    this.journalLines += JSON.stringify(event) + '\n';
    if (this.journalQueued) return;
    this.journalQueued = true;
    setImmediate(this.writeJournal);
  }

  /**
   * Runs `then` once every event recorded so far is in the journal: at once when none waits, else right after
   * the one write that takes all the events of this turn of the event loop. A caller that releases its
   * response's last bytes in `then` never has told a client about usage a crash could lose.
   */
  afterJournal(then: () => void): void {
    if (this.journalLines === '') then();
    else this.journalWaiters.push(then);
  }

  /** Appends the events recorded since the last write, in one write, then releases who waits for them. */
  private readonly writeJournal = (): void => {
    this.journalQueued = false;
    const lines = this.journalLines;
    if (lines !== '') {
      this.journalLines = '';
      try {
        if (this.journalFd === null) {
          this.journalFile = this.spool.journalPath();
          this.journalFd = openSync(this.journalFile, 'a');
        }
        writeSync(this.journalFd, lines);
      } catch (err) {
        // the events are still in memory; only their crash safety is lost until the disk takes writes again
        this.lastError = describe(err);
        this.logger.error(`usage journal write failed (the events are in memory only): ${this.lastError}`);
      }
    }
    if (this.journalWaiters.length === 0) return;
    const waiters = this.journalWaiters;
    this.journalWaiters = [];
    for (const then of waiters) then();
  };

  /** Closes the current journal file; events recorded from now on go to a new one. Returns how many are sealed. */
  private rotateJournal(): number {
    // the lines recorded this turn belong to the events being sealed
    this.writeJournal();
    if (this.journalFd !== null && this.journalFile !== null) {
      closeSync(this.journalFd);
      this.sealed.push(this.journalFile);
      this.journalFd = null;
      this.journalFile = null;
    }
    return this.sealed.length;
  }

  /** Deletes the first `count` sealed journal files: every event in them is in Postgres or the spool. */
  private dropSealed(count: number): void {
    for (const file of this.sealed.splice(0, count)) {
      try {
        unlinkSync(file);
      } catch (err) {
        this.logger.warn(`could not delete usage journal ${file}: ${describe(err)}`);
      }
    }
  }

  /** Keeps live journal files fresh, so no other process takes them for a dead writer's. */
  private touchJournal(now: number): void {
    if (now - this.lastJournalTouch < 5_000) return;
    this.lastJournalTouch = now;
    const at = new Date(now);
    this.progress?.touch(at);
    for (const file of this.journalFile === null ? this.sealed : [...this.sealed, this.journalFile]) {
      try {
        utimesSync(file, at, at);
      } catch (err) {
        this.logger.warn(`could not touch usage journal ${file}: ${describe(err)}`);
      }
    }
  }

  /**
   * Creates the spool directory, starts the flush timer and starts replaying segments left by earlier
   * processes. Does not wait for Postgres (a gateway must start while Postgres is down).
   */
  async start(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    await this.spool.init();
    this.timer = setInterval(this.onTick, this.flushMs);
    this.timer.unref();
    this.progress?.start();
    this.lastScanAt = this.clock.now();
    this.spoolDue = true;
    this.wake();
  }

  /**
   * Writes everything pending now and replays the spool, ignoring any backoff. Resolves true when all of it was
   * written, false when a write failed (the events are kept and retried). For tests, benches and scripts.
   */
  async flush(): Promise<boolean> {
    if (this.closed) return false;
    if (this.pumping) await this.pumping;
    this.flushDue = true;
    this.spoolDue = true;
    this.retryAt = 0;
    await this.pump();
    return this.retryAt === 0 && this.pending.length === 0;
  }

  /**
   * Stops the timer, then writes what is pending; if Postgres does not take it within `stopTimeoutMs`, spills
   * it to the spool for the next start. Idempotent.
   * @throws UsageSpoolError when events could be written neither to Postgres nor to disk.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  stats(): UsageRecorderStats {
    const stats: UsageRecorderStats = {
      pending: this.pending.length + (this.inflight?.length ?? 0) + this.spillingCount,
      ...this.counters,
    };
    if (this.lastError !== undefined) stats.lastError = this.lastError;
    return stats;
  }

  onModuleInit(): Promise<void> {
    return this.start();
  }

  /**
   * Safety net: stops (flushes) unless the app already did after draining its requests (the gateway does, in
   * a before-shutdown hook). Runs before the global DbModule's PrismaService disconnects in the same phase.
   */
  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  private readonly onTick = (): void => {
    this.flushDue = true;
    const now = this.clock.now();
    if (this.journalOn) this.touchJournal(Date.now());
    if (now - this.lastScanAt >= this.spoolScanMs) {
      this.lastScanAt = now;
      this.spoolDue = true;
    }
    this.wake();
  };

  /** Deferred so that record() never does the work itself; at most one wake-up queued at a time. */
  private wakeSoon(): void {
    if (this.wakeQueued) return;
    this.wakeQueued = true;
    setImmediate(this.wake);
  }

  private readonly wake = (): void => {
    this.wakeQueued = false;
    if (this.closed) return;
    this.maybeSpill();
    void this.pump();
  };

  private pump(): Promise<void> {
    this.pumping ??= this.runPump().finally(() => {
      this.pumping = null;
    });
    return this.pumping;
  }

  /** The one writer, one write at a time: full batches (and on the timer the rest), and spool segments. */
  private async runPump(): Promise<void> {
    try {
      while (!this.closed) {
        if (this.retryAt > this.clock.now()) {
          // the retry timer may have fired while this pump was busy (and found it running): arm it again
          this.armRetry();
          return;
        }
        const memoryReady = this.pending.length >= this.batchSize || (this.flushDue && this.pending.length > 0);
        // Memory and spool take turns, so that neither starves the other under sustained load.
        if (this.spoolDue && (!memoryReady || this.spoolTurn)) {
          this.spoolTurn = false;
          if (!(await this.replayOne())) this.spoolDue = false;
          continue;
        }
        if (memoryReady) {
          await this.flushBatch(this.writeTimeoutMs);
          this.spoolTurn = true;
          continue;
        }
        this.flushDue = false;
        return;
      }
    } catch (err) {
      // Spool I/O failed (permissions, disk): keep everything where it is and try again later.
      this.noteFailure(err, 'usage spool replay failed');
    }
  }

  private takeBatch(): UsageEvent[] {
    if (this.pending.length <= this.batchSize) {
      const batch = this.pending;
      this.pending = [];
      return batch;
    }
    return this.pending.splice(0, this.batchSize);
  }

  private async flushBatch(timeoutMs: number): Promise<boolean> {
    // Taking everything (nothing on its way to the spool either): once this batch is in, every event of the
    // journal files sealed now is durable, so they can go.
    const sealing = this.journalOn && this.pending.length <= this.batchSize && this.spilling === null ? this.rotateJournal() : 0;
    const batch = this.takeBatch();
    this.inflight = batch;
    try {
      const rows = await this.validate(batch, 'memory');
      const ok = rows.length === 0 || (await this.persist(rows, timeoutMs));
      if (ok && sealing > 0) this.dropSealed(sealing);
      // Put back unless stop() has taken the batch over meanwhile.
      if (!ok && this.inflight === batch) this.pending = rows.concat(this.pending);
      return ok;
    } finally {
      if (this.inflight === batch) this.inflight = null;
    }
  }

  /** Splits off events Postgres would refuse (they would poison every retry), and sets them aside on disk. */
  private async validate(events: readonly UsageEvent[], source: string): Promise<UsageEvent[]> {
    const rows: UsageEvent[] = [];
    let rejected: RejectedLine[] | undefined;
    for (const event of events) {
      const row = toUsageRow(event);
      if (typeof row !== 'string') {
        rows.push(row);
        continue;
      }
      rejected ??= [];
      rejected.push({ reason: row, line: JSON.stringify(event) ?? String(event) });
    }
    if (rejected) await this.reject(rejected, source);
    return rows;
  }

  private async reject(lines: readonly RejectedLine[], source: string): Promise<void> {
    this.counters.rejected += lines.length;
    this.lastError = `rejected ${lines.length} usage event(s): ${lines[0].reason}`;
    this.logger.error(`${this.lastError} (kept in ${this.spool.dir}/rejected-*.ndjson)`);
    try {
      await this.spool.reject(lines, source);
    } catch (err) {
      this.logger.error(`could not keep rejected usage events (${describe(err)}): ${lines.map((l) => l.line).join(' ')}`);
    }
  }

  /** Inserts rows (idempotent), then bumps the keys' last_used_at. False when the insert failed. */
  private async persist(rows: UsageEvent[], timeoutMs: number): Promise<boolean> {
    try {
      const inserted = await withTimeout(this.sink.insertMany(rows), timeoutMs, 'usage insert');
      this.counters.written += inserted;
      this.counters.duplicates += rows.length - inserted;
      this.backoffMs = 0;
      this.retryAt = 0;
    } catch (err) {
      this.noteFailure(err, `usage write of ${rows.length} event(s) failed, will retry`);
      return false;
    }
    await this.touch(rows, timeoutMs);
    return true;
  }

  private async touch(rows: readonly UsageEvent[], timeoutMs: number): Promise<void> {
    const now = this.clock.now();
    const ids = new Set<string>();
    let at = 0;
    for (const row of rows) {
      if (ids.has(row.keyId)) {
        at = Math.max(at, row.createdAt.getTime());
        continue;
      }
      const last = this.touchedAt.get(row.keyId);
      if (last !== undefined && now - last < this.touchIntervalMs) continue;
      ids.add(row.keyId);
      at = Math.max(at, row.createdAt.getTime());
    }
    if (ids.size === 0) return;
    if (this.touchedAt.size > 50_000) this.touchedAt.clear(); // bounded: forgetting only means one extra bump
    for (const id of ids) this.touchedAt.set(id, now);
    try {
      await withTimeout(this.sink.touchLastUsed([...ids], new Date(at)), timeoutMs, 'api key last_used_at bump');
    } catch (err) {
      // Usage is committed; last_used_at is advisory and the next batch bumps it again.
      this.counters.touchFailures++;
      this.lastError = describe(err);
      this.logger.warn(`api key last_used_at bump failed: ${this.lastError}`);
    }
  }

  private noteFailure(err: unknown, what: string): void {
    this.counters.failures++;
    this.lastError = describe(err);
    this.backoffMs = this.backoffMs === 0 ? this.retryMinMs : Math.min(this.backoffMs * 2, this.retryMaxMs);
    this.retryAt = this.clock.now() + this.backoffMs;
    this.logger.warn(`${what} in ${this.backoffMs} ms: ${this.lastError}`);
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(this.wake, this.backoffMs);
    this.retryTimer.unref();
  }

  private armRetry(): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    const wait = Math.min(this.retryMaxMs, Math.max(1, this.retryAt - this.clock.now()));
    this.retryTimer = setTimeout(this.wake, wait);
    this.retryTimer.unref();
  }

  /** Replays the oldest available spool segment. False when there is none. */
  private async replayOne(): Promise<boolean> {
    const claim = await this.spool.claimNext();
    if (claim === null) return false;
    const { rows, rejected, torn } = await this.spool.read(claim);
    let done = this.replayProgress.get(claim.segment) ?? 0;
    while (done < rows.length) {
      const chunk = rows.slice(done, done + this.batchSize);
      if (this.closed || !(await this.persist(chunk, this.writeTimeoutMs))) {
        this.replayProgress.set(claim.segment, done);
        await this.spool.release(claim);
        return true;
      }
      done += chunk.length;
    }
    if (torn) this.counters.tornLines++;
    if (rejected.length > 0) await this.reject(rejected, claim.segment);
    await this.spool.remove(claim);
    this.forgetSegment(claim);
    return true;
  }

  private forgetSegment(claim: ClaimedSegment): void {
    this.replayProgress.delete(claim.segment);
    const own = this.ownSegments.get(claim.segment);
    if (own !== undefined) {
      this.ownSegments.delete(claim.segment);
      this.counters.spooledEvents -= own;
    }
  }

  private maybeSpill(): void {
    if (this.spilling || this.pending.length <= this.memoryMax || this.spillRetryAt > this.clock.now()) return;
    this.spilling = this.spillOldest().finally(() => {
      this.spilling = null;
      if (!this.closed) this.maybeSpill();
    });
  }

  /** Moves the oldest events to disk, down to half the memory bound (so segments are not tiny). */
  private async spillOldest(): Promise<void> {
    const events = this.pending.splice(0, this.pending.length - Math.floor(this.memoryMax / 2));
    this.spillingCount = events.length;
    try {
      await this.spillToDisk(events);
      this.spillRetryAt = 0;
    } catch (err) {
      this.pending = events.concat(this.pending);
      this.spillRetryAt = this.clock.now() + this.retryMaxMs;
      this.lastError = describe(err);
      this.logger.error(`usage spill to ${this.spool.dir} failed, holding ${this.pending.length} events in memory: ${this.lastError}`);
    } finally {
      this.spillingCount = 0;
    }
  }

  private async spillToDisk(events: readonly UsageEvent[]): Promise<void> {
    const rows = await this.validate(events, 'memory');
    if (rows.length === 0) return;
    const segment = await this.spool.write(rows);
    this.ownSegments.set(segment, rows.length);
    this.counters.spooledEvents += rows.length;
    this.spoolDue = true;
  }

  private recordLate(event: UsageEvent): void {
    const row = toUsageRow(event);
    if (typeof row === 'string') {
      this.counters.rejected++;
      this.lastError = `rejected a usage event: ${row}`;
      this.logger.error(`${this.lastError}: ${JSON.stringify(event)}`);
      return;
    }
    try {
      const segment = this.spool.writeSync([row]);
      this.ownSegments.set(segment, 1);
      this.counters.spooledEvents++;
    } catch (err) {
      this.lastError = describe(err);
      this.logger.error(`usage event recorded after stop could not be spooled (${this.lastError}): ${JSON.stringify(row)}`);
    }
  }

  private async shutdown(): Promise<void> {
    // The write-timeout timers are unref'd; this keeps the process alive until the events are safe.
    const keepAlive = setInterval(() => undefined, 1_000);
    try {
      if (this.journalOn) this.rotateJournal();
      await this.drainOrSpill();
      // everything recorded is in Postgres or the spool now (drainOrSpill throws otherwise: journals stay)
      if (this.journalOn) this.dropSealed(this.sealed.length);
      // requests still followed now were cut by the shutdown and record late (to the spool): progress is moot
      this.progress?.close();
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async drainOrSpill(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    const deadline = this.clock.now() + this.stopTimeoutMs;
    const left = () => Math.max(0, deadline - this.clock.now());
    if (this.pumping) await settlesWithin(this.pumping, left());
    if (this.spilling) await this.spilling;
    // A write still hanging past the deadline: take its batch over (if it lands after all, replay is idempotent).
    let reachable = this.inflight === null;
    if (this.inflight !== null) {
      this.pending = this.inflight.concat(this.pending);
      this.inflight = null;
    }
    while (reachable && this.pending.length > 0 && left() > 0) {
      reachable = await this.flushBatch(left());
    }
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    this.spillingCount = events.length;
    try {
      await this.spillToDisk(events);
    } catch (err) {
      this.pending = events;
      this.lastError = describe(err);
      throw new UsageSpoolError(`${events.length} usage events reached neither Postgres nor ${this.spool.dir}`, {
        cause: err,
      });
    } finally {
      this.spillingCount = 0;
    }
  }
}
