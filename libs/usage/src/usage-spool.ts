import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { appendFile, mkdir, open, readdir, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { toUsageRow, type UsageEvent } from './usage-event';

/** A spool segment this process has claimed (renamed to `<segment>.claimed-<pid>-<token>`) for replay. */
export interface ClaimedSegment {
  /** The segment's own name, `usage-<ms>-<pid>-<token>-<seq>.ndjson`: oldest first when sorted. */
  segment: string;
  /** The file name it has on disk while claimed. */
  file: string;
}

/** A line of a segment that cannot become a row, with why; kept in a `rejected-*.ndjson` file. */
export interface RejectedLine {
  reason: string;
  line: string;
}

export interface SegmentContents {
  rows: UsageEvent[];
  rejected: RejectedLine[];
  /** The last line was cut short (a crash while writing a file that was never renamed, or a foreign writer). */
  torn: boolean;
}

interface Entry {
  file: string;
  segment: string;
  kind: 'ready' | 'claimed' | 'tmp';
  pid: number;
  token: string;
}

/** `usage-<ms>-<pid>-<token>-<seq>.ndjson`; a progress journal's seq ends in `p` (see {@link isProgressSegment}). */
const SEGMENT = String.raw`usage-\d{13}-\d+-[0-9a-z]+-\d+p?\.ndjson`;
const WRITER = /^usage-\d{13}-(\d+-[0-9a-z]+)-/;

/** Whether a segment is a progress journal (streams in flight), replayed after its writer's other files. */
export function isProgressSegment(segment: string): boolean {
  return segment.endsWith('p.ndjson');
}

/** The process (pid and token) that wrote a segment. */
function writerOf(segment: string): string {
  return WRITER.exec(segment)?.[1] ?? '';
}
const READY = new RegExp(`^(${SEGMENT})$`);
const CLAIMED = new RegExp(`^(${SEGMENT})\\.claimed-(\\d+)-([0-9a-z]+)$`);
const TMP = new RegExp(`^\\.(${SEGMENT})\\.tmp$`);
/** A usage recorder's write-ahead journal; replayed like an abandoned temp file once its writer stops touching it. */
const JOURNAL = new RegExp(`^\\.(${SEGMENT})\\.journal$`);

/** A progress journal's rows, one per request and segment: its last line, the furthest it got. */
function lastPerRequest(rows: readonly UsageEvent[]): UsageEvent[] {
  const last = new Map<string, UsageEvent>();
  for (const row of rows) last.set(`${row.requestId}\u0000${row.segment ?? 0}`, row);
  return [...last.values()];
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function isMissing(err: unknown): boolean {
  return errno(err) === 'ENOENT';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return errno(err) === 'EPERM';
  }
}

/**
 * The usage recorder's disk spool: NDJSON segment files in one directory, possibly shared by several processes.
 * A segment is written to a hidden temp name, fsynced, then renamed (and the directory fsynced), so a segment
 * name always denotes a whole file. Replay claims a segment by renaming it to `<segment>.claimed-<pid>-<token>`;
 * rename is atomic, so two processes never both claim the same name, and claims of dead processes (or stale
 * ones) are taken over. Taking over a live claim is harmless: inserts are idempotent on the request id.
 */
export class UsageSpool {
  private readonly token = randomBytes(4).toString('hex');
  private seq = 0;

  constructor(
    readonly dir: string,
    private readonly options: { staleClaimMs: number; now: () => number },
  ) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Writes rows as one new segment (durably) and returns the segment's name. */
  async write(rows: readonly UsageEvent[]): Promise<string> {
    const segment = this.nextSegment();
    const tmp = path.join(this.dir, `.${segment}.tmp`);
    await mkdir(this.dir, { recursive: true });
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(this.serialize(rows));
      await handle.sync();
    } catch (err) {
      await handle.close();
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await handle.close();
    await rename(tmp, path.join(this.dir, segment));
    await this.syncDir();
    return segment;
  }

  /**
   * A fresh path for a write-ahead journal, named after a segment, so that if its writer dies the spool's
   * rule for abandoned temp files (untouched for `staleClaimMs`) makes any process replay its whole lines.
   * The writer must keep touching it while it lives.
   */
  journalPath(): string {
    return path.join(this.dir, `.${this.nextSegment()}.journal`);
  }

  /**
   * A fresh path for a progress journal (see ProgressJournal): a journal too, replayed like one once its writer
   * dies, but only after every other file that writer left, and with one row per request (its last line).
   */
  progressPath(): string {
    const name = this.nextSegment();
    return path.join(this.dir, `.${name.slice(0, -'.ndjson'.length)}p.ndjson.journal`);
  }

  /** {@link write}, blocking: for the rare event recorded after the recorder has stopped. */
  writeSync(rows: readonly UsageEvent[]): string {
    const segment = this.nextSegment();
    const tmp = path.join(this.dir, `.${segment}.tmp`);
    mkdirSync(this.dir, { recursive: true });
    const fd = openSync(tmp, 'wx');
    try {
      writeSync(fd, this.serialize(rows));
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      unlinkSync(tmp);
      throw err;
    }
    closeSync(fd);
    renameSync(tmp, path.join(this.dir, segment));
    return segment;
  }

  /**
   * Claims the oldest segment nobody live is replaying: a ready one, one this process claimed before, a claim
   * left by a dead (or, after `staleClaimMs`, silent) process, or a temp file abandoned that long (its whole
   * lines are events a crashed writer held only in memory). Null when there is none.
   */
  async claimNext(): Promise<ClaimedSegment | null> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
    const entries = names.map((n) => this.parse(n)).filter((e): e is Entry => e !== null);
    entries.sort((a, b) => (a.segment < b.segment ? -1 : a.segment > b.segment ? 1 : 0));
    for (const entry of entries) {
      if (entry.kind === 'claimed' && entry.pid === process.pid && entry.token === this.token) {
        return { segment: entry.segment, file: entry.file };
      }
      if (entry.kind !== 'ready' && !(await this.isAbandoned(entry))) continue;
      // a dead writer's progress goes last: its final events (journals, spilled segments) win over progress
      if (isProgressSegment(entry.segment) && this.writerLeftOthers(entry, entries)) continue;
      const file = `${entry.segment}.claimed-${process.pid}-${this.token}`;
      const target = path.join(this.dir, file);
      try {
        await rename(path.join(this.dir, entry.file), target);
        // The claim's age is its mtime: a live claimant is not taken over before staleClaimMs.
        const now = new Date(this.options.now());
        await utimes(target, now, now);
      } catch (err) {
        if (isMissing(err)) continue; // another process claimed it first
        throw err;
      }
      return { segment: entry.segment, file };
    }
    return null;
  }

  /** Whether `progress`'s writer left files that must be replayed first: any but an older progress journal. */
  private writerLeftOthers(progress: Entry, entries: readonly Entry[]): boolean {
    const writer = writerOf(progress.segment);
    return entries.some(
      (e) => e !== progress && writerOf(e.segment) === writer && (!isProgressSegment(e.segment) || e.segment > progress.segment),
    );
  }

  /** Parses a claimed segment. Lines that cannot become rows are returned as rejected, never thrown. */
  async read(claim: ClaimedSegment): Promise<SegmentContents> {
    const text = await readFile(path.join(this.dir, claim.file), 'utf8');
    const lines = text.split('\n');
    const complete = text.endsWith('\n');
    if (complete) lines.pop();
    const rows: UsageEvent[] = [];
    const rejected: RejectedLine[] = [];
    let torn = false;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (err) {
        const last = i === lines.length - 1 && !complete;
        torn ||= last;
        rejected.push({ reason: last ? 'torn last line' : `unparseable line: ${(err as Error).message}`, line });
        continue;
      }
      const row = toUsageRow(parsed);
      if (typeof row === 'string') rejected.push({ reason: row, line });
      else rows.push(row);
    }
    if (isProgressSegment(claim.segment)) return { rows: lastPerRequest(rows), rejected, torn };
    return { rows, rejected, torn };
  }

  /** Deletes a claimed segment once all its rows are committed. */
  async remove(claim: ClaimedSegment): Promise<void> {
    await unlink(path.join(this.dir, claim.file)).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
  }

  /** Gives a claimed segment back (after a failed write), so that any process may replay it. */
  async release(claim: ClaimedSegment): Promise<void> {
    await rename(path.join(this.dir, claim.file), path.join(this.dir, claim.segment)).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
  }

  /** Appends lines that can never be inserted to this process's `rejected-*.ndjson` file, for an operator. */
  async reject(lines: readonly RejectedLine[], source: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const at = new Date(this.options.now()).toISOString();
    const body = lines.map((l) => JSON.stringify({ at, source, reason: l.reason, line: l.line })).join('\n') + '\n';
    await appendFile(path.join(this.dir, `rejected-${process.pid}-${this.token}.ndjson`), body);
  }

  private serialize(rows: readonly UsageEvent[]): string {
    let body = '';
    for (const row of rows) body += JSON.stringify(row) + '\n';
    return body;
  }

  private nextSegment(): string {
    const ms = String(this.options.now()).padStart(13, '0');
    const seq = String(this.seq++).padStart(9, '0');
    return `usage-${ms}-${process.pid}-${this.token}-${seq}.ndjson`;
  }

  private parse(file: string): Entry | null {
    let m = READY.exec(file);
    if (m) return { file, segment: m[1], kind: 'ready', pid: 0, token: '' };
    m = CLAIMED.exec(file);
    if (m) return { file, segment: m[1], kind: 'claimed', pid: Number(m[2]), token: m[3] };
    m = TMP.exec(file) ?? JOURNAL.exec(file);
    if (m) return { file, segment: m[1], kind: 'tmp', pid: 0, token: '' };
    return null;
  }

  private async isAbandoned(entry: Entry): Promise<boolean> {
    if (entry.kind === 'claimed') {
      // Same pid, other token: an earlier incarnation of this process (pid 1 in a container, say).
      if (entry.pid === process.pid) return true;
      if (!isAlive(entry.pid)) return true;
    }
    try {
      const s = await stat(path.join(this.dir, entry.file));
      return this.options.now() - s.mtimeMs > this.options.staleClaimMs;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  private async syncDir(): Promise<void> {
    // Makes the rename durable; some filesystems do not support fsync on a directory.
    let handle;
    try {
      handle = await open(this.dir, 'r');
      await handle.sync();
    } catch (err) {
      if (!['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes(errno(err) ?? '')) throw err;
    } finally {
      await handle?.close();
    }
  }
}
