import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { UsageEvent } from './usage-event';
import { UsageSpool } from './usage-spool';

function usageEvent(): UsageEvent {
  return {
    requestId: randomUUID(),
    segment: 0,
    createdAt: new Date('2030-01-01T00:00:00.123Z'),
    orgId: randomUUID(),
    keyId: randomUUID(),
    model: 'm',
    tier: 'spot',
    promptTokens: 1,
    completionTokens: 2,
    cachedTokens: 0,
    audioSeconds: 0,
    ttftMs: null,
    durationMs: 3,
    status: 200,
    estimated: true,
    costNanos: 42,
  };
}

/** A pid that existed and has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  return child.pid;
}

describe('UsageSpool', () => {
  let dir: string;
  let now: number;
  const spool = () => new UsageSpool(dir, { staleClaimMs: 60_000, now: () => now });
  const segment = (ms: number) => `usage-${String(ms).padStart(13, '0')}-7-abc-000000000.ndjson`;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'usage-spool-spec-'));
    now = Date.now();
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes whole segments under their final name only, and reads back equal rows', async () => {
    const s = spool();
    const rows = [usageEvent(), usageEvent()];
    const name = await s.write(rows);
    expect(await readdir(dir)).toEqual([name]);
    const claim = await s.claimNext();
    expect(claim?.segment).toBe(name);
    expect(await s.read(claim!)).toEqual({ rows, rejected: [], torn: false });
    await s.remove(claim!);
    expect(await readdir(dir)).toEqual([]);
  });

  it('names segments so that sorting them is oldest first, unique per process', async () => {
    const a = spool();
    const b = spool();
    const names = [await a.write([usageEvent()]), await b.write([usageEvent()])];
    now += 1;
    names.push(await a.write([usageEvent()]));
    expect(new Set(names).size).toBe(3);
    expect(names[0].includes(`-${process.pid}-`)).toBe(true);
    expect([...names].sort()[2]).toBe(names[2]);
  });

  it('gives a segment to exactly one of two claimants', async () => {
    await spool().write([usageEvent()]);
    const claims = await Promise.all([spool().claimNext(), spool().claimNext()]);
    expect(claims.filter((c) => c !== null)).toHaveLength(1);
  });

  it('skips a fresh claim of a live process, takes over a dead one, a stale one and an abandoned temp file', async () => {
    const live = `${segment(1)}.claimed-${process.ppid}-other`;
    const dead = `${segment(2)}.claimed-${deadPid()}-other`;
    const tmp = `.${segment(3)}.tmp`;
    for (const f of [live, dead, tmp]) await writeFile(path.join(dir, f), JSON.stringify(usageEvent()) + '\n');
    const old = new Date(now - 120_000);
    await utimes(path.join(dir, tmp), old, old);

    const s = spool();
    const claimed: string[] = [];
    for (let claim = await s.claimNext(); claim; claim = await s.claimNext()) {
      claimed.push(claim.segment);
      await s.remove(claim);
    }
    expect(claimed).toEqual([segment(2), segment(3)]);

    now += 120_000;
    expect((await s.claimNext())?.segment).toBe(segment(1));
  });

  it('takes over a claim of an earlier process that had the same pid', async () => {
    await writeFile(path.join(dir, `${segment(1)}.claimed-${process.pid}-earlier`), JSON.stringify(usageEvent()) + '\n');
    expect((await spool().claimNext())?.segment).toBe(segment(1));
  });

  it('releases a claim so that another process can replay the segment', async () => {
    const s = spool();
    await s.write([usageEvent()]);
    const claim = await s.claimNext();
    await s.release(claim!);
    expect((await spool().claimNext())?.segment).toBe(claim!.segment);
  });

  it('reports a torn last line and bad lines without throwing', async () => {
    const good = usageEvent();
    const body = [JSON.stringify(good), 'garbage', JSON.stringify({ ...good, orgId: 'x' }), '{"requestId":'].join('\n');
    await writeFile(path.join(dir, segment(1)), body);
    const s = spool();
    const contents = await s.read((await s.claimNext())!);
    expect(contents.rows).toEqual([good]);
    expect(contents.torn).toBe(true);
    expect(contents.rejected.map((r) => r.reason)).toEqual([
      expect.stringContaining('unparseable line'),
      'orgId: expected a UUID',
      'torn last line',
    ]);
  });

  it('ignores files that are not segments', async () => {
    await writeFile(path.join(dir, 'rejected-1-abc.ndjson'), 'x\n');
    await writeFile(path.join(dir, 'notes.txt'), 'x\n');
    expect(await spool().claimNext()).toBeNull();
  });
});
