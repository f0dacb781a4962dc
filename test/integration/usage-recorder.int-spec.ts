import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService, UsageEventsRepository } from '@spot/db';
import { RepositoryUsageSink, UsageRecorder, type UsageEvent, type UsageRecorderOptions } from '@spot/usage';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PgProxy } from '../support/pg-proxy';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference_test';

function prismaAt(url: string): PrismaService {
  return new PrismaService(loadConfig({ DATABASE_URL: url }));
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('UsageRecorder on Postgres', () => {
  let proxy: PgProxy;
  /** Direct connection, for assertions: never cut. */
  let db: PrismaService;
  /** The recorder's connection, through the proxy. */
  let viaProxy: PrismaService;
  let dir: string;
  let orgId: string;
  const recorders: UsageRecorder[] = [];

  function recorder(options: Partial<UsageRecorderOptions> = {}): UsageRecorder {
    const sink = new RepositoryUsageSink(new UsageEventsRepository(viaProxy), new ApiKeysRepository(viaProxy));
    const r = new UsageRecorder(sink, {
      spoolDir: dir,
      flushMs: 20,
      batchSize: 100,
      memoryMax: 10_000,
      retryMinMs: 20,
      retryMaxMs: 200,
      stopTimeoutMs: 1_000,
      touchIntervalMs: 0,
      logger: { warn: () => undefined, error: () => undefined },
      ...options,
    });
    recorders.push(r);
    return r;
  }

  function usageEvents(n: number, keyId: string = randomUUID()): UsageEvent[] {
    const run = randomBytes(4).toString('hex');
    return Array.from({ length: n }, (_, i) => ({
      requestId: `int-${run}-${i}`,
      createdAt: new Date(Date.UTC(2030, 0, 1) + i),
      orgId,
      keyId,
      model: 'llama-3.1-8b',
      tier: i % 2 ? 'spot' : 'on-demand',
      promptTokens: 100 + i,
      completionTokens: 7,
      cachedTokens: 0,
      ttftMs: 15,
      durationMs: 300,
      status: 200,
      estimated: false,
      costNanos: 5_000 + 50 * i,
    }));
  }

  /** Rows of this test's org, and their billed prompt tokens: no loss shows in the count, no double in the sum. */
  async function stored(): Promise<{ count: number; promptTokens: number; costNanos: number }> {
    const agg = await db.usageEvent.aggregate({ where: { orgId }, _count: true, _sum: { promptTokens: true, costNanos: true } });
    return { count: agg._count, promptTokens: agg._sum.promptTokens ?? 0, costNanos: Number(agg._sum.costNanos ?? 0) };
  }

  const expected = (events: UsageEvent[]) => ({
    count: events.length,
    promptTokens: events.reduce((s, e) => s + e.promptTokens, 0),
    costNanos: events.reduce((s, e) => s + e.costNanos, 0),
  });

  const segments = async () => (await readdir(dir)).filter((f) => /usage-.*\.ndjson/.test(f));

  beforeAll(async () => {
    proxy = await PgProxy.start();
    db = prismaAt(DATABASE_URL);
  });

  beforeEach(async () => {
    proxy.restore();
    viaProxy = prismaAt(proxy.url(DATABASE_URL));
    dir = await mkdtemp(path.join(os.tmpdir(), 'usage-int-'));
    orgId = randomUUID();
  });

  afterEach(async () => {
    proxy.restore();
    await Promise.all(recorders.splice(0).map((r) => r.stop()));
    await viaProxy.$disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    await db.$disconnect();
    await proxy.close();
  });

  it('writes 5,000 events recorded in a burst exactly once, and bumps the key last_used_at', async () => {
    const org = await new OrgsRepository(db).create(`usage-int-${randomBytes(4).toString('hex')}`, 'Usage int');
    orgId = org!.id;
    const key = await new ApiKeysRepository(db).create({
      orgId,
      name: 'k',
      prefix: `sk-int-${randomBytes(6).toString('hex')}`,
      secretHash: randomBytes(32).toString('hex'),
      allowedModels: [],
      expiresAt: null,
      createdById: null,
    });
    const r = recorder({ batchSize: 500, flushMs: 50 });
    await r.start();
    const events = usageEvents(5_000, key.id);
    for (const e of events) r.record(e);

    await waitFor(async () => (await stored()).count === 5_000, '5,000 rows');
    // the last batch's key touch may still be running after its rows committed
    await waitFor(async () => r.stats().pending === 0, 'nothing pending');
    expect(await stored()).toEqual(expected(events));
    expect(r.stats()).toMatchObject({ pending: 0, written: 5_000, duplicates: 0, failures: 0, spooledEvents: 0 });
    const touched = await db.apiKey.findUnique({ where: { id: key.id } });
    expect(touched?.lastUsedAt).toEqual(events[4_999].createdAt);
  });

  it('survives a Postgres outage longer than memory: spills, then writes everything once and empties the spool', async () => {
    proxy.cut();
    const r = recorder({ memoryMax: 300 });
    await r.start();
    const events = usageEvents(1_000);
    for (const e of events) r.record(e);

    await waitFor(() => r.stats().failures >= 2 && r.stats().spooledEvents > 0, 'failures and a spill');
    expect((await segments()).length).toBeGreaterThan(0);
    expect(r.stats().pending).toBeLessThanOrEqual(300);
    expect(r.stats().pending + r.stats().spooledEvents).toBe(1_000);
    expect((await stored()).count).toBe(0);

    proxy.restore();
    await waitFor(async () => (await stored()).count === 1_000, 'all rows after the outage');
    await waitFor(async () => (await segments()).length === 0, 'an empty spool');
    expect(await stored()).toEqual(expected(events));
    expect(r.stats()).toMatchObject({ pending: 0, spooledEvents: 0, written: 1_000 });
  });

  it('spills at stop() when Postgres is down, and the next process writes it at start', async () => {
    proxy.cut();
    const first = recorder();
    await first.start();
    const events = usageEvents(250);
    for (const e of events) first.record(e);
    await first.stop();
    const lines = (await Promise.all((await segments()).map((f) => readFile(path.join(dir, f), 'utf8'))))
      .join('')
      .split('\n')
      .filter(Boolean);
    expect(lines).toHaveLength(250);
    expect((await stored()).count).toBe(0);

    proxy.restore();
    const second = recorder();
    await second.start();
    await waitFor(async () => (await stored()).count === 250, 'the replayed rows');
    await waitFor(async () => (await segments()).length === 0, 'an empty spool');
    expect(await stored()).toEqual(expected(events));
  });

  it('never double-counts a segment replayed twice (crash after commit, before the file was deleted)', async () => {
    proxy.cut();
    const first = recorder();
    const events = usageEvents(120);
    for (const e of events) first.record(e);
    await first.stop();
    const [segment] = await segments();
    const copy = path.join(dir, 'copy.bak');
    await copyFile(path.join(dir, segment), copy);

    proxy.restore();
    const second = recorder();
    await second.start();
    await waitFor(async () => (await segments()).length === 0, 'the first replay');
    expect(await stored()).toEqual(expected(events));
    await second.stop();

    await copyFile(copy, path.join(dir, segment));
    const third = recorder();
    expect(await third.flush()).toBe(true);
    expect(await segments()).toEqual([]);
    expect(await stored()).toEqual(expected(events));
    expect(third.stats()).toMatchObject({ written: 0, duplicates: 120 });
  });
});
