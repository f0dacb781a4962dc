import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type LiveUsage, ProgressJournal } from './progress-journal';
import type { UsageEvent } from './usage-event';
import { UsageSpool } from './usage-spool';

function event(requestId: string, completionTokens: number, estimated = true): UsageEvent {
  return {
    requestId,
    createdAt: new Date('2030-01-01T00:00:00.000Z'),
    orgId: '00000000-0000-4000-8000-000000000001',
    keyId: '00000000-0000-4000-8000-000000000002',
    model: 'm',
    tier: 'spot',
    promptTokens: 10,
    completionTokens,
    cachedTokens: 0,
    audioSeconds: 0,
    ttftMs: 5,
    durationMs: 50,
    status: estimated ? 502 : 200,
    estimated,
    costNanos: completionTokens * 100,
  };
}

class Stream implements LiveUsage {
  progress = 0;
  readonly id = randomUUID();
  snapshot(): UsageEvent[] {
    return [event(this.id, Math.max(0, this.progress - 1))];
  }
}

/** A stream continued on another engine after `lostAt` content events: one event per segment. */
class ContinuedStream extends Stream {
  constructor(private readonly lostAt: number) {
    super();
  }
  override snapshot(): UsageEvent[] {
    const first = event(this.id, Math.min(this.progress, this.lostAt) - 1);
    if (this.progress <= this.lostAt) return [first];
    return [first, { ...event(this.id, this.progress - this.lostAt), segment: 1, tier: 'on-demand', promptTokens: 0 }];
  }
}

const logger = { error: jest.fn(), warn: jest.fn() };

describe('ProgressJournal', () => {
  let dir: string;
  const lines = async (): Promise<UsageEvent[]> => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('p.ndjson.journal'));
    expect(files).toHaveLength(1);
    const text = await readFile(path.join(dir, files[0]), 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as UsageEvent);
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'progress-spec-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('appends only the streams that moved, in one file, and nothing for streams that delivered nothing', async () => {
    const journal = new ProgressJournal(new UsageSpool(dir, { staleClaimMs: 60_000, now: Date.now }), { logger });
    const a = new Stream();
    const b = new Stream();
    journal.follow(a);
    journal.follow(b);
    journal.tick();
    expect(await readdir(dir)).toEqual([]);
    a.progress = 3;
    journal.tick();
    journal.tick();
    b.progress = 2;
    a.progress = 5;
    journal.tick();
    expect((await lines()).map((l) => [l.requestId, l.completionTokens])).toEqual([
      [a.id, 2],
      [a.id, 4],
      [b.id, 1],
    ]);
    journal.unfollow(a);
    a.progress = 9;
    journal.tick();
    expect(await lines()).toHaveLength(3);
    journal.close();
    expect(await readdir(dir)).toEqual([]);
  });

  it('rewrites a grown file as one snapshot of the live streams, then deletes the old one', async () => {
    const journal = new ProgressJournal(new UsageSpool(dir, { staleClaimMs: 60_000, now: Date.now }), { logger, maxBytes: 600 });
    const streams = [new Stream(), new Stream()];
    for (const s of streams) journal.follow(s);
    for (let i = 1; i <= 6; i++) {
      for (const s of streams) s.progress = i;
      journal.tick();
    }
    const now = await lines();
    expect(now.length).toBeLessThan(12);
    const last = new Map(now.map((l) => [l.requestId, l.completionTokens]));
    expect(last).toEqual(new Map(streams.map((s) => [s.id, 5])));
    journal.close();
  });
});

describe('UsageSpool replay of a dead writer\'s progress', () => {
  let dir: string;
  let now: number;
  const writer = '4242-dead';
  const name = (ms: number, seq: string) => `usage-${String(ms).padStart(13, '0')}-${writer}-${seq}.ndjson`;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'progress-replay-spec-'));
    now = Date.now();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function abandoned(file: string, rows: UsageEvent[]): Promise<void> {
    const p = path.join(dir, file);
    await writeFile(p, rows.map((r) => JSON.stringify(r) + '\n').join(''));
    const old = new Date(now - 120_000);
    await utimes(p, old, old);
  }

  it('replays the writer\'s event journals first, then its newest progress (last line per request), then older progress', async () => {
    const finished = randomUUID();
    const cut = randomUUID();
    // the progress journal is older (by name) than the event journal holding the finished stream's final event
    await abandoned(`.${name(1_000, '000000000p')}.journal`, [event(finished, 3), event(cut, 1)]);
    await abandoned(`.${name(2_000, '000000002p')}.journal`, [event(cut, 2), event(cut, 7)]);
    await abandoned(`.${name(3_000, '000000001')}.journal`, [event(finished, 12, false)]);
    const spool = new UsageSpool(dir, { staleClaimMs: 60_000, now: () => now });
    const order: Array<[string, Array<[string, number]>]> = [];
    for (let claim = await spool.claimNext(); claim !== null; claim = await spool.claimNext()) {
      const { rows } = await spool.read(claim);
      order.push([claim.segment.slice(-16), rows.map((r) => [r.requestId === finished ? 'finished' : 'cut', r.completionTokens])]);
      await spool.remove(claim);
    }
    expect(order).toEqual([
      ['000000001.ndjson', [['finished', 12]]],
      ['00000002p.ndjson', [['cut', 7]]],
      ['00000000p.ndjson', [['finished', 3], ['cut', 1]]],
    ]);
  });

  it('journals every segment of a continued stream, and replays the last line of each (request, segment)', async () => {
    const journal = new ProgressJournal(new UsageSpool(dir, { staleClaimMs: 60_000, now: Date.now }), { logger });
    const s = new ContinuedStream(4);
    journal.follow(s);
    for (const p of [2, 4, 6, 9]) {
      s.progress = p;
      journal.tick();
    }
    const files = (await readdir(dir)).filter((f) => f.endsWith('p.ndjson.journal'));
    const text = await readFile(path.join(dir, files[0]), 'utf8');
    const rows = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as UsageEvent);
    expect(rows.map((r) => [r.segment ?? 0, r.completionTokens])).toEqual([[0, 1], [0, 3], [0, 3], [1, 2], [0, 3], [1, 5]]);
    // the process dies: its journal is replayed as a dead writer's
    await abandoned(`.${name(1_000, '000000000p')}.journal`, rows);
    const spool = new UsageSpool(dir, { staleClaimMs: 60_000, now: () => now });
    const claim = await spool.claimNext();
    const { rows: replayed } = await spool.read(claim!);
    expect(replayed.map((r) => [r.segment ?? 0, r.tier, r.promptTokens, r.completionTokens])).toEqual([
      [0, 'spot', 10, 3],
      [1, 'on-demand', 0, 5],
    ]);
    journal.close();
  });

  it('leaves a live writer\'s progress alone', async () => {
    const p = path.join(dir, `.${name(1_000, '000000000p')}.journal`);
    await writeFile(p, JSON.stringify(event(randomUUID(), 1)) + '\n');
    expect(await new UsageSpool(dir, { staleClaimMs: 60_000, now: () => now }).claimNext()).toBeNull();
  });
});
