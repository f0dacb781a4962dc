import { readdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { UsageEvent } from './usage-event';
import { UsageRecorder, type UsageRecorderOptions } from './usage-recorder';
import type { UsageSink } from './usage-sink';

/** An in-memory sink with Postgres's semantics for what the recorder relies on: idempotent on requestId. */
class FakeSink implements UsageSink {
  readonly rows = new Map<string, UsageEvent>();
  readonly batches: number[] = [];
  readonly touches: { ids: string[]; at: Date }[] = [];
  active = 0;
  maxActive = 0;
  down = false;
  touchDown = false;
  /** While set, inserts wait for it. */
  gate: Promise<void> | null = null;

  async insertMany(rows: readonly UsageEvent[]): Promise<number> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await new Promise((r) => setImmediate(r));
      if (this.gate) await this.gate;
      if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      this.batches.push(rows.length);
      let inserted = 0;
      for (const row of rows) {
        if (this.rows.has(row.requestId)) continue;
        this.rows.set(row.requestId, row);
        inserted++;
      }
      return inserted;
    } finally {
      this.active--;
    }
  }

  async touchLastUsed(ids: readonly string[], at: Date): Promise<void> {
    if (this.touchDown) throw new Error('deadlock detected');
    this.touches.push({ ids: [...ids], at });
  }
}

const orgId = randomUUID();
const keyIds = [randomUUID(), randomUUID()];
let seq = 0;

function usageEvent(overrides: Partial<UsageEvent> = {}): UsageEvent {
  seq++;
  return {
    requestId: `req-${seq}-${randomUUID()}`,
    createdAt: new Date(Date.UTC(2030, 0, 1, 0, 0, 0, seq)),
    orgId,
    keyId: keyIds[seq % 2],
    model: 'llama-3.1-8b',
    tier: 'spot',
    promptTokens: 10 + seq,
    completionTokens: 20,
    cachedTokens: 0,
    audioSeconds: 0,
    ttftMs: 12.4,
    durationMs: 250.6,
    status: 200,
    estimated: false,
    costNanos: 1_000 + seq,
    ...overrides,
  };
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ticks = (n = 5) => new Promise((r) => setTimeout(r, n));

describe('UsageRecorder', () => {
  let dir: string;
  let sink: FakeSink;
  let warnings: string[];
  const recorders: UsageRecorder[] = [];

  function recorder(options: Partial<UsageRecorderOptions> = {}, target: UsageSink = sink): UsageRecorder {
    const r = new UsageRecorder(target, {
      spoolDir: dir,
      flushMs: 60_000,
      batchSize: 10,
      memoryMax: 1_000,
      retryMinMs: 5,
      retryMaxMs: 20,
      stopTimeoutMs: 300,
      logger: { warn: (m) => warnings.push(m), error: (m) => warnings.push(m) },
      ...options,
    });
    recorders.push(r);
    return r;
  }

  // spool segments, finished or being written (not the recorder's write-ahead journal)
  const spoolFiles = async () => (await readdir(dir)).filter((f) => f.startsWith('usage-') || (f.startsWith('.usage-') && f.endsWith('.tmp')));

  async function spooledLines(): Promise<string[]> {
    // a segment may be claimed (renamed) for a replay between the listing and the read: list again then
    for (let attempt = 0; ; attempt++) {
      try {
        const lines: string[] = [];
        for (const f of await spoolFiles()) {
          lines.push(...(await readFile(path.join(dir, f), 'utf8')).split('\n').filter(Boolean));
        }
        return lines;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'usage-spec-'));
    sink = new FakeSink();
    warnings = [];
  });

  afterEach(async () => {
    sink.down = false;
    sink.gate = null;
    await Promise.all(recorders.splice(0).map((r) => r.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  const journals = async () => (await readdir(dir)).filter((f) => f.endsWith('.journal'));

  it('journals every event on the turn it is recorded: a process that dies before its flush loses nothing', async () => {
    const crashed = recorder({ batchSize: 1_000 });
    await crashed.start();
    const events = Array.from({ length: 12 }, () => usageEvent());
    for (const e of events) crashed.record(e);
    await ticks();
    expect(sink.rows.size).toBe(0);
    expect(await journals()).toHaveLength(1);
    // the next process on the same spool dir takes the dead writer's journal once it goes untouched
    const survivor = new FakeSink();
    const next = recorder({ staleClaimMs: 20 }, survivor);
    await ticks(40);
    await next.start();
    await waitFor(() => survivor.rows.size === 12, 'the replayed journal');
    expect([...survivor.rows.keys()].sort()).toEqual(events.map((e) => e.requestId).sort());
    expect(survivor.rows.get(events[0].requestId)).toEqual({ ...events[0], segment: 0, ttftMs: 12, durationMs: 251 });
    await waitFor(async () => (await journals()).length === 0, 'the replayed journal removed');
  });

  it('journals a turn\'s events in one write, and lets a caller release its response only once they are written', async () => {
    const r = recorder({ batchSize: 1_000 });
    await r.start();
    const events = Array.from({ length: 5 }, () => usageEvent());
    for (const e of events) r.record(e);
    const seen: number[] = [];
    const lines = async () => {
      const [file] = await journals();
      return file === undefined ? 0 : (await readFile(path.join(dir, file), 'utf8')).split('\n').filter(Boolean).length;
    };
    // nothing on disk yet in this turn (looked at synchronously: any await would end the turn); whoever waits is
    // called once all five are
    expect(readdirSync(dir).filter((f) => f.endsWith('.journal'))).toEqual([]);
    await new Promise<void>((resolve) =>
      r.afterJournal(() => {
        void lines().then((n) => {
          seen.push(n);
          resolve();
        });
      }),
    );
    expect(seen).toEqual([5]);
    // nothing pending: called at once
    let now = false;
    r.afterJournal(() => (now = true));
    expect(now).toBe(true);
  });

  it('deletes journal files once their events are in Postgres, and keeps them while it is down', async () => {
    const r = recorder({ batchSize: 5 });
    await r.start();
    sink.down = true;
    for (let i = 0; i < 5; i++) r.record(usageEvent());
    await waitFor(() => r.stats().failures > 0, 'a failed write');
    expect((await journals()).length).toBeGreaterThan(0);
    sink.down = false;
    await waitFor(() => sink.rows.size === 5, 'the retried batch');
    for (let i = 0; i < 5; i++) r.record(usageEvent());
    await waitFor(() => sink.rows.size === 10, 'the next batch');
    await waitFor(async () => (await journals()).length === 0, 'journals deleted');
    await r.stop();
    expect(await journals()).toEqual([]);
  });

  it('bumps a key last_used_at at most once per touch interval', async () => {
    let now = Date.UTC(2030, 0, 1);
    const r = recorder({ touchIntervalMs: 60_000, clock: { now: () => now } });
    await r.start();
    const key = keyIds[0];
    for (let i = 0; i < 10; i++) r.record(usageEvent({ keyId: key }));
    await waitFor(() => sink.touches.length === 1, 'the first bump');
    for (let i = 0; i < 10; i++) r.record(usageEvent({ keyId: key }));
    await waitFor(() => sink.rows.size === 20, 'the second batch');
    await ticks(10);
    expect(sink.touches).toHaveLength(1);
    now += 60_001;
    for (let i = 0; i < 10; i++) r.record(usageEvent({ keyId: key }));
    await waitFor(() => sink.touches.length === 2, 'a bump after the interval');
    expect(sink.touches[1].ids).toEqual([key]);
  });

  it('flushes as soon as a batch is full, and not on the request path', async () => {
    const r = recorder();
    await r.start();
    for (let i = 0; i < 25; i++) r.record(usageEvent());
    expect(sink.batches).toEqual([]);
    await waitFor(() => sink.rows.size === 20, 'two full batches');
    await ticks(20);
    expect(sink.batches).toEqual([10, 10]);
    expect(r.stats().pending).toBe(5);
  });

  it('flushes a partial batch every flushMs', async () => {
    const r = recorder({ flushMs: 20, batchSize: 100 });
    await r.start();
    for (let i = 0; i < 3; i++) r.record(usageEvent());
    await ticks(1);
    expect(sink.rows.size).toBe(0);
    await waitFor(() => sink.rows.size === 3, 'the timer flush');
    expect(sink.batches).toEqual([3]);
    expect(r.stats()).toMatchObject({ pending: 0, written: 3, duplicates: 0, failures: 0 });
  });

  it('stores exactly the row fields, with durations rounded', async () => {
    const r = recorder();
    const e = usageEvent();
    r.record(Object.assign({ extra: 'not a column' }, e));
    await r.flush();
    expect(sink.rows.get(e.requestId)).toEqual({ ...e, segment: 0, ttftMs: 12, durationMs: 251 });
  });

  it('never runs two writes at once', async () => {
    const r = recorder({ flushMs: 2 });
    await r.start();
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 17; i++) r.record(usageEvent());
      await ticks(1);
    }
    await waitFor(() => sink.rows.size === 340, 'all events');
    expect(sink.maxActive).toBe(1);
  });

  it('bumps last_used_at once per batch for the distinct keys, at the newest event', async () => {
    const r = recorder();
    const events = Array.from({ length: 10 }, () => usageEvent());
    for (const e of events) r.record(e);
    await waitFor(() => sink.touches.length === 1, 'the bump');
    expect(sink.touches[0].ids.sort()).toEqual([...keyIds].sort());
    expect(sink.touches[0].at).toEqual(events[9].createdAt);
  });

  it('keeps the events and retries with doubling, capped backoff while Postgres fails', async () => {
    sink.down = true;
    const r = recorder({ flushMs: 2 });
    await r.start();
    const events = Array.from({ length: 30 }, () => usageEvent());
    for (const e of events) r.record(e);
    await waitFor(() => r.stats().failures >= 5, 'several failures');
    expect(sink.rows.size).toBe(0);
    expect(r.stats().pending).toBe(30);
    expect(r.stats().lastError).toContain('ECONNREFUSED');
    const delays = warnings.map((w) => /in (\d+) ms/.exec(w)?.[1]).filter(Boolean).slice(0, 5);
    expect(delays).toEqual(['5', '10', '20', '20', '20']);

    sink.down = false;
    await waitFor(() => sink.rows.size === 30, 'the retried events');
    expect([...sink.rows.keys()].sort()).toEqual(events.map((e) => e.requestId).sort());
    expect(r.stats()).toMatchObject({ pending: 0, written: 30, duplicates: 0 });
  });

  it('does not lose usage when the last_used_at bump fails', async () => {
    sink.touchDown = true;
    const r = recorder();
    for (let i = 0; i < 10; i++) r.record(usageEvent());
    expect(await r.flush()).toBe(true);
    expect(sink.rows.size).toBe(10);
    expect(sink.batches).toEqual([10]);
    expect(r.stats()).toMatchObject({ written: 10, failures: 0, touchFailures: 1 });
  });

  it('sets aside an event Postgres would refuse instead of poisoning its batch', async () => {
    const r = recorder();
    for (let i = 0; i < 4; i++) r.record(usageEvent());
    r.record(usageEvent({ orgId: 'not-a-uuid' }));
    expect(await r.flush()).toBe(true);
    expect(sink.rows.size).toBe(4);
    expect(r.stats().rejected).toBe(1);
    const rejected = (await readdir(dir)).filter((f) => f.startsWith('rejected-'));
    expect(rejected).toHaveLength(1);
    expect(await readFile(path.join(dir, rejected[0]), 'utf8')).toContain('orgId: expected a UUID');
  });

  it('spills the oldest events to disk beyond memoryMax, then replays them and empties the spool', async () => {
    sink.down = true;
    const r = recorder({ memoryMax: 50, flushMs: 2 });
    await r.start();
    const events = Array.from({ length: 120 }, () => usageEvent());
    for (const e of events) r.record(e);
    await waitFor(() => r.stats().pending <= 50, 'the spill');
    const spilled = await spooledLines();
    expect(spilled.length).toBe(r.stats().spooledEvents);
    expect(spilled.length + r.stats().pending).toBe(120);
    expect(JSON.parse(spilled[0]).requestId).toBe(events[0].requestId);

    sink.down = false;
    await waitFor(() => sink.rows.size === 120, 'all events');
    await waitFor(async () => (await spoolFiles()).length === 0, 'an empty spool');
    expect(r.stats()).toMatchObject({ pending: 0, spooledEvents: 0, written: 120, duplicates: 0 });
  });

  it('replays segments left by an earlier process at start, tolerating a torn last line', async () => {
    const events = Array.from({ length: 7 }, () => usageEvent());
    const body = events.map((e) => JSON.stringify(e)).join('\n') + '\n' + '{"requestId":"torn-';
    await writeFile(path.join(dir, `usage-0000000000001-999999-abc-000000000.ndjson`), body);
    const r = recorder();
    await r.start();
    await waitFor(() => sink.rows.size === 7, 'the replay');
    await waitFor(async () => (await spoolFiles()).length === 0, 'the segment deleted');
    expect(r.stats()).toMatchObject({ tornLines: 1, rejected: 1, written: 7 });
    expect(sink.rows.get(events[0].requestId)?.createdAt).toEqual(events[0].createdAt);
  });

  it('replays segments oldest first, and counts a replayed batch as duplicates, not twice', async () => {
    const old = usageEvent();
    const young = usageEvent();
    sink.rows.set(old.requestId, old);
    await writeFile(path.join(dir, `usage-0000000000002-1-abc-000000000.ndjson`), JSON.stringify(young) + '\n');
    await writeFile(path.join(dir, `usage-0000000000001-1-abc-000000000.ndjson`), JSON.stringify(old) + '\n');
    const r = recorder();
    expect(await r.flush()).toBe(true);
    expect([...sink.rows.keys()]).toEqual([old.requestId, young.requestId]);
    expect(sink.batches).toEqual([1, 1]);
    expect(r.stats()).toMatchObject({ written: 1, duplicates: 1 });
    expect(await spoolFiles()).toEqual([]);
  });

  it('stop() writes everything pending when Postgres is up', async () => {
    const r = recorder({ batchSize: 100 });
    await r.start();
    for (let i = 0; i < 5; i++) r.record(usageEvent());
    await r.stop();
    expect(sink.rows.size).toBe(5);
    expect(await spoolFiles()).toEqual([]);
  });

  it('stop() spills to disk when Postgres is down, and the next recorder writes it', async () => {
    sink.down = true;
    const first = recorder({ batchSize: 100 });
    await first.start();
    for (let i = 0; i < 5; i++) first.record(usageEvent());
    await first.stop();
    expect(sink.rows.size).toBe(0);
    expect(await spooledLines()).toHaveLength(5);
    expect(first.stats()).toMatchObject({ pending: 0, spooledEvents: 5 });

    sink.down = false;
    const second = recorder();
    await second.start();
    await waitFor(() => sink.rows.size === 5, 'the replay');
    await waitFor(async () => (await spoolFiles()).length === 0, 'an empty spool');
  });

  it('stop() spills a write that hangs past stopTimeoutMs', async () => {
    sink.gate = new Promise(() => undefined);
    const r = recorder({ batchSize: 3, stopTimeoutMs: 50 });
    for (let i = 0; i < 5; i++) r.record(usageEvent());
    await waitFor(() => sink.active === 1, 'a write in flight');
    await r.stop();
    expect(await spooledLines()).toHaveLength(5);
    expect(r.stats().pending).toBe(0);
  });

  it('spools an event recorded after stop() instead of losing it', async () => {
    const r = recorder();
    await r.stop();
    const late = usageEvent();
    r.record(late);
    expect((await spooledLines()).map((l) => JSON.parse(l).requestId)).toEqual([late.requestId]);
    const next = recorder();
    expect(await next.flush()).toBe(true);
    expect(sink.rows.has(late.requestId)).toBe(true);
  });
});
