import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '@spot/config';
import { PrismaService } from '@spot/db';

const MAIN = resolve(__dirname, '../../dist/apps/worker/src/main.js');

/** The built worker process: BullMQ job schedulers run the usage rollup, once per event, across replicas. */
describe('worker process', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const prefix = `test:${randomUUID()}:`;
  const workers: ChildProcess[] = [];

  function startWorker(): ChildProcess {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, REDIS_PREFIX: prefix, USAGE_ROLLUP_EVERY_MS: '300', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    workers.push(child);
    return child;
  }

  beforeAll(() => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
  });
  afterAll(async () => {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    await prisma.$disconnect();
  });

  it('two workers roll usage up on their schedule, each event once; SIGTERM stops them with exit 0', async () => {
    const orgId = randomUUID();
    startWorker();
    startWorker();
    for (let batch = 0; batch < 5; batch++) {
      await prisma.$executeRaw`
        INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, duration_ms, status, cost_nanos)
        SELECT 'wk-' || ${orgId} || '-' || ${batch} || '-' || i, now(), ${orgId}::uuid, ${orgId}::uuid, 'm', 'spot', 2, 1, 1, 200, 7
        FROM generate_series(1, 40) i`;
      await new Promise((r) => setTimeout(r, 150));
    }
    const deadline = Date.now() + 20_000;
    let requests = 0n;
    while (Date.now() < deadline) {
      const rows = await prisma.usageRollup.findMany({ where: { orgId } });
      requests = rows.reduce((s, r) => s + r.requests, 0n);
      if (requests >= 200n && (await prisma.usageEvent.count({ where: { orgId, rolledUpAt: null } })) === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(requests).toBe(200n);
    const rollups = await prisma.usageRollup.findMany({ where: { orgId } });
    expect(rollups.reduce((s, r) => s + r.costNanos, 0n)).toBe(1_400n);

    const exits = workers.map((w) => new Promise<number | null>((r) => w.once('exit', (c) => r(c))));
    for (const w of workers) w.kill('SIGTERM');
    expect(await Promise.all(exits)).toEqual([0, 0]);
  }, 60_000);
});
