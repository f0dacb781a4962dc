import { randomUUID } from 'node:crypto';
import { UsagePartitionService, UsageRollupService } from '@spot/billing';
import { loadConfig } from '@spot/config';
import { PrismaService, UsagePartitionsRepository, UsageRollupsRepository } from '@spot/db';
import { PgProxy } from '../support/pg-proxy';

const config = loadConfig(process.env);

function service(prisma: PrismaService): UsageRollupService {
  return new UsageRollupService(new UsageRollupsRepository(prisma));
}

interface Totals {
  requests: number;
  prompt: number;
  completion: number;
  cost: number;
}

/** Event sums of an org, per hour, straight from usage_events. */
async function eventTotals(prisma: PrismaService, orgId: string): Promise<Record<string, Totals>> {
  const rows = await prisma.$queryRaw<Array<{ hour: Date; requests: bigint; prompt: bigint; completion: bigint; cost: bigint }>>`
    SELECT date_trunc('hour', created_at, 'UTC') AS hour, count(*) AS requests, sum(prompt_tokens) AS prompt,
      sum(completion_tokens) AS completion, sum(cost_nanos) AS cost
    FROM usage_events WHERE org_id = ${orgId}::uuid GROUP BY 1`;
  return Object.fromEntries(rows.map((r) => [r.hour.toISOString(), { requests: Number(r.requests), prompt: Number(r.prompt), completion: Number(r.completion), cost: Number(r.cost) }]));
}

/** The same sums from usage_rollups. */
async function rollupTotals(prisma: PrismaService, orgId: string): Promise<Record<string, Totals>> {
  const rows = await prisma.$queryRaw<Array<{ hour: Date; requests: bigint; prompt: bigint; completion: bigint; cost: bigint }>>`
    SELECT hour, sum(requests) AS requests, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion, sum(cost_nanos) AS cost
    FROM usage_rollups WHERE org_id = ${orgId}::uuid GROUP BY 1`;
  return Object.fromEntries(rows.map((r) => [r.hour.toISOString(), { requests: Number(r.requests), prompt: Number(r.prompt), completion: Number(r.completion), cost: Number(r.cost) }]));
}

/** Inserts one event in its own transaction, held open for `holdMs` so that commits come out of order. */
async function insertEvent(prisma: PrismaService, orgId: string, keyId: string, createdAt: Date, n: number, holdMs: number): Promise<void> {
  await prisma.$transaction(
    async (tx) => {
      await tx.$executeRaw`
        INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens,
          cached_tokens, duration_ms, status, estimated, cost_nanos)
        VALUES (${`roll-${randomUUID()}`}, ${createdAt}, ${orgId}::uuid, ${keyId}::uuid, ${n % 3 === 0 ? 'm-a' : 'm-b'},
          ${n % 2 === 0 ? 'spot' : 'on-demand'}, ${10 + (n % 17)}, ${5 + (n % 11)}, 0, 10, 200, false, ${BigInt(100 + n)})`;
      if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
    },
    { timeout: 10_000 },
  );
}

describe('usage rollup: exactly once', () => {
  const prismas: PrismaService[] = [];
  const prisma = () => {
    const p = new PrismaService(config);
    prismas.push(p);
    return p;
  };

  afterAll(async () => {
    await Promise.all(prismas.map((p) => p.$disconnect()));
  });

  it('counts every event once while events commit out of order and two workers roll up at the same time', async () => {
    const db = prisma();
    const orgId = randomUUID();
    const keys = [randomUUID(), randomUUID()];
    const workers = [service(prisma()), service(prisma())];
    // drain what other tests left, so that the passes below interleave with this test's inserts
    await Promise.all(workers.map((w) => w.runPass()));
    let inserting = true;
    let passes = 0;
    const rollers = workers.map(async (w) => {
      while (inserting) {
        await w.runPass(50);
        passes++;
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    const base = Date.now() - 3 * 3_600_000;
    const writers = Array.from({ length: 4 }, async (_, wi) => {
      const writer = prisma();
      for (let i = 0; i < 60; i++) {
        const n = wi * 1000 + i;
        // events of three different hours, each transaction held open a random while
        await insertEvent(writer, orgId, keys[n % 2], new Date(base + (n % 3) * 3_600_000 + i * 1000), n, Math.floor(Math.random() * 25));
      }
    });
    await Promise.all(writers);
    inserting = false;
    await Promise.all(rollers);
    await Promise.all(workers.map((w) => w.runPass()));

    expect(passes).toBeGreaterThan(4);
    const events = await eventTotals(db, orgId);
    expect(Object.keys(events)).toHaveLength(3);
    expect(await rollupTotals(db, orgId)).toEqual(events);
    expect(await db.usageEvent.count({ where: { orgId, rolledUpAt: null } })).toBe(0);
    const rollups = await new UsageRollupsRepository(db).findByOrg(orgId);
    // org x key x model x tier x hour rows, versions bumped by later batches
    expect(rollups.length).toBeGreaterThan(3);
    expect(rollups.some((r) => r.version > 1n)).toBe(true);
  });

  it('survives Postgres going away mid-pass: the interrupted batch rolls back and is counted once after', async () => {
    const db = prisma();
    const orgId = randomUUID();
    const keyId = randomUUID();
    const proxy = await PgProxy.start();
    try {
      const viaProxy = new PrismaService(loadConfig({ ...process.env, DATABASE_URL: proxy.url(config.DATABASE_URL) }));
      prismas.push(viaProxy);
      const worker = service(viaProxy);
      const now = Date.now();
      const values = Array.from({ length: 3000 }, (_, i) => i);
      // one statement for speed: 3,000 events of one hour
      await db.$executeRaw`
        INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens,
          cached_tokens, duration_ms, status, estimated, cost_nanos)
        SELECT 'cut-' || ${orgId} || '-' || i, ${new Date(now - 60_000)}::timestamptz, ${orgId}::uuid, ${keyId}::uuid, 'm', 'spot', 7, 3, 0, 1, 200, false, 500
        FROM unnest(${values}::int[]) AS i`;
      const pass = worker.runPass(100);
      setTimeout(() => proxy.cut(), 30);
      setTimeout(() => proxy.restore(), 400);
      const result = await pass;
      await worker.runPass();
      expect(result.events).toBeGreaterThan(0);
      expect(await rollupTotals(db, orgId)).toEqual(await eventTotals(db, orgId));
      const [row] = await new UsageRollupsRepository(db).findByOrg(orgId);
      expect(row).toMatchObject({ requests: 3000n, promptTokens: 21_000n, completionTokens: 9_000n, costNanos: 1_500_000n });
    } finally {
      await proxy.close();
    }
  });

  it('drops raw events past the retention period once they are rolled up, never before', async () => {
    const db = prisma();
    const orgId = randomUUID();
    const keyId = randomUUID();
    const worker = service(db);
    const retention = new UsagePartitionService(new UsagePartitionsRepository(db), loadConfig({ ...process.env, USAGE_RETENTION_DAYS: '35' }));
    const old = new Date(Date.now() - 40 * 86_400_000);
    const recent = new Date(Date.now() - 86_400_000);
    await insertEvent(db, orgId, keyId, old, 1, 0);
    await insertEvent(db, orgId, keyId, recent, 2, 0);
    // not rolled up yet: nothing may go
    await db.$executeRaw`UPDATE usage_events SET rolled_up_at = NULL WHERE org_id = ${orgId}::uuid`;
    expect((await retention.dropExpired()).deleted).toBeGreaterThanOrEqual(0);
    expect(await db.usageEvent.count({ where: { orgId } })).toBe(2);
    await worker.runPass();
    await retention.dropExpired();
    const left = await db.usageEvent.findMany({ where: { orgId } });
    expect(left.map((e) => e.createdAt.getTime())).toEqual([recent.getTime()]);
    // the rollup of the dropped event stays
    expect((await new UsageRollupsRepository(db).findByOrg(orgId)).map((r) => Number(r.requests))).toEqual([1, 1]);
  });
});
