import { closeSync, openSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import type { UsageEvent } from './usage-event';
import type { UsageSpool } from './usage-spool';

/**
 * A request under way whose usage grows as it goes (a stream): what a crash of this process would bill it.
 * The recorder polls it; it never calls back.
 */
export interface LiveUsage {
  /** Grows as the request delivers (content events relayed so far); a change makes {@link snapshot} due. */
  readonly progress: number;
  /** The events to bill if the process died now (one per segment): the tokens delivered so far, `estimated: true`. */
  snapshot(): readonly UsageEvent[];
}

export interface ProgressJournalOptions {
  /** How often live requests' progress is appended (default 50 ms: a token delivered 100 ms before a crash is in). */
  intervalMs?: number;
  /** Past this size the file is rewritten as one snapshot of the live requests (default 1 MiB). */
  maxBytes?: number;
  logger: { error(message: string): void; warn(message: string): void };
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * The usage of streams in flight, journaled as they go, so that a crash (SIGKILL, OOM) bills each stream it cut
 * what its client had received. One file per process in the spool directory, appended in batches on a timer
 * (one write for all streams that moved, no fsync), rewritten as a snapshot when it grows. A dead process's file
 * is replayed by the spool only after every other file of that process (its event journals, its spilled
 * segments), and its lines are inserted like any event, idempotent on the request id: a stream whose final event
 * survived keeps it, a stream cut by the crash gets its last progress, marked estimated.
 */
export class ProgressJournal {
  private readonly live = new Map<LiveUsage, number>();
  private readonly intervalMs: number;
  private readonly maxBytes: number;
  private fd: number | null = null;
  private file: string | null = null;
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly spool: UsageSpool,
    private readonly options: ProgressJournalOptions,
  ) {
    this.intervalMs = options.intervalMs ?? 50;
    this.maxBytes = options.maxBytes ?? 1 << 20;
  }

  start(): void {
    this.timer ??= setInterval(this.tick, this.intervalMs);
    this.timer.unref();
  }

  /** Starts journaling `live`'s progress (nothing is written until it has delivered something). */
  follow(live: LiveUsage): void {
    this.live.set(live, 0);
  }

  /** Stops journaling `live`: call right after its final event was recorded (journaled) by the recorder. */
  unfollow(live: LiveUsage): void {
    this.live.delete(live);
  }

  /** Requests followed now. */
  get size(): number {
    return this.live.size;
  }

  /** Appends the progress of every request that moved since its last line; one write. Also run by the timer. */
  readonly tick = (): void => {
    if (this.live.size === 0) return;
    if (this.fd === null || this.bytes > this.maxBytes) {
      this.rewrite();
      return;
    }
    let out = '';
    for (const [live, written] of this.live) {
      const progress = live.progress;
      if (progress <= written) continue;
      for (const event of live.snapshot()) out += JSON.stringify(event) + '\n';
      this.live.set(live, progress);
    }
    if (out !== '') this.append(out);
  };

  /** Keeps the live file fresh, so that no other process takes it for a dead writer's. */
  touch(at: Date): void {
    if (this.file === null) return;
    try {
      utimesSync(this.file, at, at);
    } catch (err) {
      this.options.logger.warn(`could not touch usage progress journal ${this.file}: ${describe(err)}`);
    }
  }

  /** Stops the timer and deletes the file: every request has ended and recorded its final event. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.live.clear();
    this.drop();
  }

  /** A new file holding the progress of every live request that delivered anything, then the old one goes. */
  private rewrite(): void {
    const old = this.file;
    const oldFd = this.fd;
    let out = '';
    for (const [live] of this.live) {
      const progress = live.progress;
      if (progress <= 0) continue;
      for (const event of live.snapshot()) out += JSON.stringify(event) + '\n';
      this.live.set(live, progress);
    }
    if (out === '' && old === null) return;
    try {
      this.file = this.spool.progressPath();
      this.fd = openSync(this.file, 'a');
      this.bytes = 0;
    } catch (err) {
      this.file = old;
      this.fd = oldFd;
      this.options.logger.error(`usage progress journal could not be opened (streams cut by a crash now would go unbilled): ${describe(err)}`);
      return;
    }
    if (out !== '') this.append(out);
    if (old !== null && oldFd !== null) {
      closeSync(oldFd);
      this.unlink(old);
    }
  }

  private append(text: string): void {
    try {
      writeSync(this.fd!, text);
      this.bytes += text.length;
    } catch (err) {
      this.options.logger.error(`usage progress journal write failed (streams cut by a crash now would go unbilled): ${describe(err)}`);
    }
  }

  private drop(): void {
    if (this.fd !== null) closeSync(this.fd);
    if (this.file !== null) this.unlink(this.file);
    this.fd = null;
    this.file = null;
  }

  private unlink(file: string): void {
    try {
      unlinkSync(file);
    } catch (err) {
      this.options.logger.warn(`could not delete usage progress journal ${file}: ${describe(err)}`);
    }
  }
}
