import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsagePartitionService, partitionName, utcDay } from '@spot/billing';
import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository, UsagePartitionsRepository } from '@spot/db';
import { dropDatabase, freshDatabase } from '../support/fresh-database';

const MAIN = resolve(__dirname, '../../dist/apps/worker/src/main.js');
const DAY = 86_400_000;

/**
 * The built worker keeps usage_events partitions on its own schedule: the days ahead, the day of rows waiting in
 * the default partition, and retention by DROP. Its own database: partition DDL must not reach other files.
 */
describe('worker process: usage_events partitions', () => {
  let url: string;
  let prisma: PrismaService;
  let worker: ChildProcess | null = null;

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    url = await freshDatabase('worker_partitions');
    prisma = new PrismaService(loadConfig({ ...process.env, DATABASE_URL: url }));
  }, 60_000);
  afterAll(async () => {
    if (worker !== null && worker.exitCode === null) worker.kill('SIGKILL');
    await prisma.$disconnect();
    await dropDatabase(url);
  });

  it('creates the days ahead and the day of rows left in the default partition, and drops an old rolled-up day', async () => {
    const now = Date.now();
    const orgId = randomUUID();
    const config = loadConfig({ ...process.env, DATABASE_URL: url });
    const far = utcDay(now + 20 * DAY);
    const old = utcDay(now - 50 * DAY);
    await new UsagePartitionService(new UsagePartitionsRepository(prisma), config).ensureDays([old]);
    const event = (requestId: string, createdAt: Date) => ({
      requestId,
      createdAt,
      orgId,
      keyId: orgId,
      model: 'm',
      tier: 'spot',
      promptTokens: 3,
      completionTokens: 2,
      cachedTokens: 0,
      ttftMs: 1,
      durationMs: 2,
      status: 200,
      estimated: false,
      costNanos: 5,
    });
    // 20 days ahead: beyond any partition, so in the default one; 50 days old: its own partition, rolled up
    await new UsageEventsRepository(prisma).insertMany([event('wp-far', new Date(far.getTime() + 3_600_000)), event('wp-old', new Date(old.getTime() + 60_000))]);
    await prisma.$executeRaw`UPDATE usage_events SET rolled_up_at = now() WHERE request_id = 'wp-old'`;
    const where = async () =>
      Object.fromEntries(
        (await prisma.$queryRaw<Array<{ id: string; part: string }>>`SELECT request_id AS id, tableoid::regclass::text AS part FROM usage_events WHERE org_id = ${orgId}::uuid`).map((r) => [r.id, r.part]),
      );
    expect(await where()).toEqual({ 'wp-far': 'usage_events_default', 'wp-old': partitionName(old) });

    worker = spawn(process.execPath, [MAIN], {
      env: { ...process.env, DATABASE_URL: url, REDIS_PREFIX: `test:${randomUUID()}:`, USAGE_PARTITION_DAYS_AHEAD: '10', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const expected = [...Array.from({ length: 11 }, (_, d) => partitionName(utcDay(now + d * DAY))), partitionName(far)];
    const deadline = Date.now() + 30_000;
    let names: string[] = [];
    while (Date.now() < deadline) {
      names = (await new UsagePartitionsRepository(prisma).list()).map((p) => p.name);
      if (expected.every((n) => names.includes(n)) && !names.includes(partitionName(old))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(names).toEqual(expect.arrayContaining(expected));
    expect(names).not.toContain(partitionName(old));
    // the row waited in the default partition and now sits in its day's; the old one went with its partition
    expect(await where()).toEqual({ 'wp-far': partitionName(far) });

    const exit = new Promise<number | null>((r) => worker!.once('exit', (c) => r(c)));
    worker.kill('SIGTERM');
    expect(await exit).toBe(0);
  }, 60_000);
});
