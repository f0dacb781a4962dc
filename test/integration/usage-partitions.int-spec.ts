import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsagePartitionService, UsageRollupService } from '@spot/billing';
import { type AppConfig, loadConfig } from '@spot/config';
import { ApiKeysRepository, PrismaService, UsageEventsRepository, UsagePartitionsRepository, UsageRollupsRepository } from '@spot/db';
import { RepositoryUsageSink, toUsageRow, type UsageEvent, UsageRecorder } from '@spot/usage';
import { dropDatabase, freshDatabase } from '../support/fresh-database';

const DAY = 86_400_000;
const at = (iso: string) => new Date(iso);

/** Partition DDL (created, attached, dropped) runs in a database of this file's own: other files keep inserting. */
describe('usage_events partitioned by day: created ahead, the default partition, retention by DROP', () => {
  let url: string;
  let config: AppConfig;
  const prismas: PrismaService[] = [];
  const db = () => {
    const p = new PrismaService(config);
    prismas.push(p);
    return p;
  };
  let prisma: PrismaService;
  let events: UsageEventsRepository;
  let partitions: UsagePartitionService;
  let rollup: UsageRollupService;

  beforeAll(async () => {
    url = await freshDatabase('partitions');
    config = loadConfig({ ...process.env, DATABASE_URL: url, USAGE_RETENTION_DAYS: '35', USAGE_PARTITION_DAYS_AHEAD: '7' });
    prisma = db();
    events = new UsageEventsRepository(prisma);
    partitions = new UsagePartitionService(new UsagePartitionsRepository(prisma), config);
    rollup = new UsageRollupService(new UsageRollupsRepository(prisma));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(prismas.map((p) => p.$disconnect()));
    await dropDatabase(url);
  });

  const event = (orgId: string, createdAt: Date, overrides: Partial<UsageEvent> = {}): UsageEvent => ({
    requestId: `part-${randomUUID()}`,
    segment: 0,
    createdAt,
    orgId,
    keyId: randomUUID(),
    model: 'm',
    tier: 'spot',
    promptTokens: 10,
    completionTokens: 5,
    cachedTokens: 0,
    ttftMs: 3,
    durationMs: 9,
    status: 200,
    estimated: false,
    costNanos: 100,
    ...overrides,
  });

  /** partition name -> rows of the org, where Postgres keeps them. */
  async function whereRows(orgId: string): Promise<Record<string, number>> {
    const rows = await prisma.$queryRaw<Array<{ part: string; n: bigint }>>`
      SELECT tableoid::regclass::text AS part, count(*) AS n FROM usage_events WHERE org_id = ${orgId}::uuid GROUP BY 1 ORDER BY 1`;
    return Object.fromEntries(rows.map((r) => [r.part, Number(r.n)]));
  }

  async function names(): Promise<string[]> {
    return (await new UsagePartitionsRepository(prisma).list()).map((p) => p.name);
  }

  it('creates the partitions of today and the next 7 days once, one per UTC day', async () => {
    const now = at('2031-05-10T13:00:00Z');
    const first = await partitions.ensureAhead(now);
    expect(first.created).toEqual(['10', '11', '12', '13', '14', '15', '16', '17'].map((d) => `usage_events_p203105${d}`));
    expect((await partitions.ensureAhead(now)).created).toEqual([]);
    // a day later only the new last day is missing
    expect((await partitions.ensureAhead(new Date(now.getTime() + DAY))).created).toEqual(['usage_events_p20310518']);
    const listed = (await new UsagePartitionsRepository(prisma).list()).find((p) => p.name === 'usage_events_p20310510');
    expect(listed).toEqual({ name: 'usage_events_p20310510', isDefault: false, from: at('2031-05-10T00:00:00Z'), to: at('2031-05-11T00:00:00Z') });
    // every index of the parent is on the new partition, the primary key (request_id, segment, created_at) included
    const idx = await prisma.$queryRaw<Array<{ def: string }>>`SELECT indexdef AS def FROM pg_indexes WHERE tablename = 'usage_events_p20310510' ORDER BY 1`;
    expect(idx.map((i) => i.def.replace(/^.* USING /, ''))).toEqual([
      'btree (created_at) WHERE (rolled_up_at IS NULL)',
      'btree (created_at) WHERE (segment > 0)',
      'btree (created_at) WHERE (status >= 500)',
      'btree (org_id, created_at)',
      'btree (request_id, segment, created_at)',
    ]);
  });

  it('takes rows no partition covers in the default partition, then moves them into their day partition once, keeping rolled_up_at', async () => {
    const orgId = randomUUID();
    const continued = event(orgId, at('2031-06-02T10:00:00.123Z'));
    const rows = [continued, { ...continued, segment: 1, tier: 'on-demand', promptTokens: 0 }, event(orgId, at('2031-06-03T23:59:59.999Z')), event(orgId, at('2031-06-20T08:00:00Z'))];
    expect(await events.insertMany(rows)).toBe(4);
    expect(await whereRows(orgId)).toEqual({ usage_events_default: 4 });
    await prisma.$executeRaw`UPDATE usage_events SET rolled_up_at = now() WHERE request_id = ${continued.requestId} AND segment = 1`;

    const pass = await partitions.ensureAhead(at('2031-06-01T00:30:00Z'));
    expect(pass.created).toHaveLength(9);
    expect(pass.moved).toBe(4);
    // the 20th is beyond the week ahead, but its rows wait in the default partition: it gets its partition too
    expect(pass.created).toContain('usage_events_p20310620');
    expect(await whereRows(orgId)).toEqual({ usage_events_p20310602: 2, usage_events_p20310603: 1, usage_events_p20310620: 1 });
    const stored = await events.findSegments(continued.requestId);
    expect(stored.map((r) => [r.segment, r.rolledUpAt !== null])).toEqual([[0, false], [1, true]]);

    // a replay (the journal or the spool: JSON and back) inserts nothing, wherever the rows went meanwhile
    const replayed = rows.map((r) => toUsageRow(JSON.parse(JSON.stringify(r))) as UsageEvent);
    expect(replayed.map((r) => r.createdAt.getTime())).toEqual(rows.map((r) => r.createdAt.getTime()));
    expect(await events.insertMany(replayed)).toBe(0);
    expect(await prisma.usageEvent.count({ where: { orgId } })).toBe(4);
  });

  it('never creates a partition over another one, and leaves the rest of the week to be created', async () => {
    await prisma.$executeRawUnsafe(`CREATE TABLE usage_events_m203109 PARTITION OF usage_events FOR VALUES FROM ('2031-09-01 00:00:00+00') TO ('2031-10-01 00:00:00+00')`);
    const pass = await partitions.ensureAhead(at('2031-09-28T12:00:00Z'));
    expect(pass.created).toEqual(['01', '02', '03', '04', '05'].map((d) => `usage_events_p203110${d}`));
    expect(await new UsagePartitionsRepository(prisma).createPartition('usage_events_p20310915', at('2031-09-15T00:00:00Z'), at('2031-09-16T00:00:00Z'))).toEqual({
      created: false,
      overlaps: ['usage_events_m203109'],
    });
    expect(await names()).not.toContain('usage_events_p20310915');
  });

  it('does not lose or double an event while its day partition is created under a stream of inserts into the default', async () => {
    const orgId = randomUUID();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'part-rec-'));
    const writer = db();
    // the gateway's own recorder: a failed insert is retried, never dropped
    const recorder = new UsageRecorder(new RepositoryUsageSink(new UsageEventsRepository(writer), new ApiKeysRepository(writer)), {
      spoolDir: dir,
      batchSize: 20,
      flushMs: 5,
      retryMinMs: 10,
      retryMaxMs: 50,
      logger: { warn: () => undefined, error: () => undefined },
    });
    await recorder.start();
    const day = at('2031-11-02T00:00:00Z');
    let recorded = 0;
    let creating: Promise<unknown> | null = null;
    for (let i = 0; i < 1500; i++) {
      recorder.record(event(orgId, new Date(day.getTime() + i * 1000)));
      recorded++;
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 2));
      if (i === 500) creating = partitions.ensureDays([day]);
    }
    const pass = (await creating) as { created: string[] };
    await recorder.flush();
    await recorder.stop();
    rmSync(dir, { recursive: true, force: true });
    expect(pass.created).toEqual(['usage_events_p20311102']);
    expect(await whereRows(orgId)).toEqual({ usage_events_p20311102: recorded });
    const [distinct] = await prisma.$queryRaw<Array<{ n: bigint }>>`SELECT count(DISTINCT request_id) AS n FROM usage_events WHERE org_id = ${orgId}::uuid`;
    expect(Number(distinct.n)).toBe(recorded);
  });

  it('rolls up events of several day partitions and the default one exactly once with two workers at once', async () => {
    const orgId = randomUUID();
    const keyId = randomUUID();
    await partitions.ensureDays([at('2031-12-01T00:00:00Z'), at('2031-12-02T00:00:00Z'), at('2031-12-03T00:00:00Z')]);
    const rows = Array.from({ length: 2400 }, (_, i) =>
      // three day partitions and a day (the 4th) only the default partition holds
      event(orgId, new Date(at('2031-12-01T00:00:00Z').getTime() + (i % 4) * DAY + (Math.floor(i / 4) % 24) * 3_600_000), { keyId, promptTokens: 1 + (i % 7), costNanos: 10 + i }),
    );
    for (let i = 0; i < rows.length; i += 500) await events.insertMany(rows.slice(i, i + 500));
    expect(Object.keys(await whereRows(orgId)).sort()).toEqual(['usage_events_default', 'usage_events_p20311201', 'usage_events_p20311202', 'usage_events_p20311203']);
    const workers = [new UsageRollupService(new UsageRollupsRepository(db())), new UsageRollupService(new UsageRollupsRepository(db()))];
    const passes = await Promise.all(workers.map((w) => w.runPass(100)));
    expect(passes.every((p) => p.events > 0)).toBe(true);
    const [sums] = await prisma.$queryRaw<Array<{ requests: bigint; prompt: bigint; cost: bigint }>>`
      SELECT sum(requests) AS requests, sum(prompt_tokens) AS prompt, sum(cost_nanos) AS cost FROM usage_rollups WHERE org_id = ${orgId}::uuid`;
    expect({ requests: Number(sums.requests), prompt: Number(sums.prompt), cost: Number(sums.cost) }).toEqual({
      requests: rows.length,
      prompt: rows.reduce((s, r) => s + r.promptTokens, 0),
      cost: rows.reduce((s, r) => s + r.costNanos, 0),
    });
    expect(await prisma.usageEvent.count({ where: { orgId, rolledUpAt: null } })).toBe(0);
    // 4 days x 24 hours
    expect(await prisma.usageRollup.count({ where: { orgId } })).toBe(96);
  });

  it('drops a day partition past retention once all its rows are rolled up, and keeps one with rows not rolled up yet', async () => {
    const orgId = randomUUID();
    // retention 35 days, now 2032-02-20 12:00: days before 2032-01-16 are past it
    const now = at('2032-02-20T12:00:00Z');
    await partitions.ensureDays([at('2032-01-14T00:00:00Z'), at('2032-01-15T00:00:00Z'), at('2032-01-16T00:00:00Z')]);
    await events.insertMany([
      event(orgId, at('2032-01-14T01:00:00Z')),
      event(orgId, at('2032-01-14T02:00:00Z')),
      event(orgId, at('2032-01-15T03:00:00Z')),
      event(orgId, at('2032-01-15T04:00:00Z')),
      // the boundary day: 35 days and 8 hours old at most, not all past retention: stays whole
      event(orgId, at('2032-01-16T00:30:00Z')),
      // older than any partition: the default partition
      event(orgId, at('2032-01-02T00:00:00Z')),
    ]);
    await rollup.runPass();
    // a late replay into the 15th, not rolled up yet
    const late = event(orgId, at('2032-01-15T05:00:00Z'));
    await events.insertMany([late]);

    const first = await partitions.dropExpired(now);
    expect(first.dropped).toContain('usage_events_p20320114');
    expect(first.kept).toEqual(['usage_events_p20320115']);
    expect(first.failed).toEqual([]);
    const left = await names();
    expect(left).not.toContain('usage_events_p20320114');
    expect(left).toEqual(expect.arrayContaining(['usage_events_p20320115', 'usage_events_p20320116', 'usage_events_default']));
    // the rolled-up rows of the kept partition and of the default partition went one by one; the late one stays
    expect(await whereRows(orgId)).toEqual({ usage_events_p20320115: 1, usage_events_p20320116: 1 });
    expect((await events.findSegments(late.requestId)).map((r) => r.rolledUpAt)).toEqual([null]);

    await rollup.runPass();
    const second = await partitions.dropExpired(now);
    expect(second.dropped).toEqual(['usage_events_p20320115']);
    expect(await whereRows(orgId)).toEqual({ usage_events_p20320116: 1 });
    // the rollups stay: every event counted once
    const [sum] = await prisma.$queryRaw<Array<{ n: bigint }>>`SELECT sum(requests) AS n FROM usage_rollups WHERE org_id = ${orgId}::uuid`;
    expect(Number(sum.n)).toBe(7);
  });
});
