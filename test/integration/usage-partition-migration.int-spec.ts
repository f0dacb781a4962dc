import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { UsagePartitionService, UsageRollupService, partitionName, utcDay } from '@spot/billing';
import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository, UsagePartitionsRepository, UsageRollupsRepository } from '@spot/db';
import { dropDatabase, freshDatabase, migrateDatabase } from '../support/fresh-database';

/** The migration before usage_events was partitioned: the database is seeded at this point, then migrated on. */
const BEFORE = '20261201233758_usage_event_segments';
const DAY = 86_400_000;

describe('migration usage_events_partitioned_by_day on a table that holds events', () => {
  let url: string;
  let client: pg.Client;
  const now = Date.now();
  const orgId = randomUUID();
  const keyId = randomUUID();
  // 60 days old and rolled up; two days old (a continued stream: two segments); today; 30 days ahead (a skewed clock)
  const seeded = [
    { id: 'mig-old', segment: 0, at: new Date(now - 60 * DAY), rolled: true },
    { id: 'mig-cont', segment: 0, at: new Date(now - 2 * DAY), rolled: true },
    { id: 'mig-cont', segment: 1, at: new Date(now - 2 * DAY), rolled: false },
    { id: 'mig-today', segment: 0, at: new Date(now), rolled: false },
    { id: 'mig-future', segment: 0, at: new Date(now + 30 * DAY), rolled: false },
  ];
  let before: unknown[];

  const select = 'SELECT * FROM usage_events ORDER BY request_id, segment';

  beforeAll(async () => {
    url = await freshDatabase('partition_migration', BEFORE);
    client = new pg.Client({ connectionString: url });
    await client.connect();
    expect((await client.query(`SELECT relkind FROM pg_class WHERE relname = 'usage_events'`)).rows).toEqual([{ relkind: 'r' }]);
    // a database whose migrations ran in another order holds the same columns in another order: audio_seconds last
    // here (a copy by position would swap it with segment)
    await client.query('ALTER TABLE usage_events DROP COLUMN audio_seconds');
    await client.query('ALTER TABLE usage_events ADD COLUMN audio_seconds INTEGER NOT NULL DEFAULT 0');
    for (const [i, s] of seeded.entries()) {
      await client.query(
        `INSERT INTO usage_events (request_id, segment, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens,
           cached_tokens, audio_seconds, ttft_ms, duration_ms, status, estimated, cost_nanos, rolled_up_at, batch_id)
         VALUES ($1, $2, $3, $4, $5, 'm', $6, $7, $8, $9, $10, $11, 40, 200, $12, $13, $14, $15)`,
        [s.id, s.segment, s.at, orgId, keyId, s.segment === 0 ? 'spot' : 'on-demand', s.segment === 0 ? 100 + i : 0, 10 + i, i, i === 3 ? 7 : 0,
          i === 2 ? null : 5, i === 4, String(9_007_199_254_740_993n + BigInt(i)), s.rolled ? new Date(now - DAY) : null, i === 0 ? 'batch_x' : null],
      );
    }
    before = (await client.query(select)).rows;
    migrateDatabase(url);
  }, 120_000);

  afterAll(async () => {
    await client.end();
    await dropDatabase(url);
  });

  it('leaves a table partitioned by day holding every row as it was, each in its day partition', async () => {
    const [kind] = (await client.query(`SELECT c.relkind, pg_get_partkeydef(c.oid) AS key FROM pg_class c WHERE relname = 'usage_events'`)).rows;
    expect(kind).toEqual({ relkind: 'p', key: 'RANGE (created_at)' });
    expect((await client.query(select)).rows).toEqual(before);
    const where = (await client.query(`SELECT request_id, segment, tableoid::regclass::text AS part FROM usage_events ORDER BY 1, 2`)).rows;
    expect(where).toEqual(
      [...seeded].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.segment - b.segment)).map((s) => ({ request_id: s.id, segment: s.segment, part: partitionName(utcDay(s.at)) })),
    );
    // the days of the rows, today and the next 7 days, and the default partition (empty)
    const prisma = new PrismaService(loadConfig({ ...process.env, DATABASE_URL: url }));
    const parts = (await new UsagePartitionsRepository(prisma).list()).map((p) => p.name);
    await prisma.$disconnect();
    for (let d = 0; d <= 7; d++) expect(parts).toContain(partitionName(utcDay(now + d * DAY)));
    for (const s of seeded) expect(parts).toContain(partitionName(utcDay(s.at)));
    expect(parts).toContain('usage_events_default');
    expect((await client.query('SELECT count(*)::int AS n FROM usage_events_default')).rows).toEqual([{ n: 0 }]);
    expect((await client.query(`SELECT to_regclass('usage_events_unpartitioned') AS old`)).rows).toEqual([{ old: null }]);
  });

  it('has the primary key (request_id, segment, created_at) and the indexes, on every partition', async () => {
    const parent = (await client.query(`SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_events' ORDER BY 1`)).rows;
    // (the two partial indexes of the console's stream counts come from the migration after this one)
    expect(parent.map((r: { indexname: string; indexdef: string }) => [r.indexname, r.indexdef.replace(/^.* USING /, '')])).toEqual([
      ['usage_events_continuations_idx', 'btree (created_at) WHERE (segment > 0)'],
      ['usage_events_failed_idx', 'btree (created_at) WHERE (status >= 500)'],
      ['usage_events_org_id_created_at_idx', 'btree (org_id, created_at)'],
      ['usage_events_pkey', 'btree (request_id, segment, created_at)'],
      ['usage_events_unrolled_idx', 'btree (created_at) WHERE (rolled_up_at IS NULL)'],
    ]);
    const [counts] = (
      await client.query(`
        SELECT count(DISTINCT i.inhrelid)::int AS partitions, count(x.indexrelid)::int AS indexes
        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent AND p.relname = 'usage_events' LEFT JOIN pg_index x ON x.indrelid = i.inhrelid`)
    ).rows;
    expect(counts.indexes).toBe(counts.partitions * 5);
    const [migration] = (await client.query(`SELECT finished_at IS NOT NULL AS done FROM _prisma_migrations WHERE migration_name LIKE '%_usage_events_partitioned_by_day'`)).rows;
    expect(migration).toEqual({ done: true });
  });

  it('works as before: replays are no-ops, the rollup folds each unrolled event once, retention drops the old day', async () => {
    const config = loadConfig({ ...process.env, DATABASE_URL: url, USAGE_RETENTION_DAYS: '35' });
    const prisma = new PrismaService(config);
    try {
      const events = new UsageEventsRepository(prisma);
      const rows = await prisma.usageEvent.findMany({ where: { orgId } });
      expect(await events.insertMany(rows.map(({ rolledUpAt: _r, batchId: _b, ...r }) => r))).toBe(0);
      const fresh = { ...rows.find((r) => r.requestId === 'mig-today')!, requestId: 'mig-new', rolledUpAt: null, batchId: null };
      expect(await events.insertMany([fresh])).toBe(1);
      expect((await events.findByRequestId('mig-cont'))?.segment).toBe(0);

      const pass = await new UsageRollupService(new UsageRollupsRepository(prisma)).runPass();
      // mig-cont segment 1, mig-today, mig-future and mig-new: the rolled-up ones are not counted again
      expect(pass.events).toBe(4);
      const [r] = await prisma.$queryRaw<Array<{ requests: bigint; completion: bigint }>>`
        SELECT sum(requests) AS requests, sum(completion_tokens) AS completion FROM usage_rollups WHERE org_id = ${orgId}::uuid`;
      // segment 1 is no request of its own
      expect(Number(r.requests)).toBe(3);
      expect(Number(r.completion)).toBe(12 + 13 + 14 + 13);

      const retention = await new UsagePartitionService(new UsagePartitionsRepository(prisma), config).dropExpired(new Date(now));
      expect(retention.dropped).toEqual([partitionName(utcDay(now - 60 * DAY))]);
      expect(await prisma.usageEvent.count({ where: { orgId } })).toBe(5);
    } finally {
      await prisma.$disconnect();
    }
  });
});
