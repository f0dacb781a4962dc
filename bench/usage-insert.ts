/**
 * The gateway-side cost of the usage recorder's batch insert (UsageEventsRepository.insertMany): CPU time of this
 * process per event (serialising the batch, the client's work, parsing the answer) and the longest event-loop
 * block while batches are written one after another, as the recorder does. Postgres's own time is not in the
 * CPU figure (it runs in its own processes). Prints a table and writes bench/results/usage-insert-<date>.json.
 *
 *   npm run -s build && node dist/bench/usage-insert.js [--batches 200] [--batch 500]
 *
 * Uses DATABASE_URL (default: the dev database); removes every row it wrote when done.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService, UsageEventsRepository } from '@spot/db';
import type { UsageEvent } from '@spot/usage';

const root = path.resolve(__dirname, '../..');
const { values } = parseArgs({ options: { batches: { type: 'string', default: '200' }, batch: { type: 'string', default: '500' } } });
const BATCHES = Number(values.batches);
const BATCH = Number(values.batch);

async function main(): Promise<void> {
  const config = loadConfig();
  const prisma = new PrismaService(config);
  const org = await new OrgsRepository(prisma).create(`bench-ins-${randomUUID().slice(0, 8)}`, 'usage insert bench');
  const key = await new ApiKeysRepository(prisma).create({
    orgId: org!.id,
    name: 'bench',
    prefix: `sk-spot-${randomUUID().slice(0, 8)}`,
    secretHash: randomUUID(),
    allowedModels: [],
    expiresAt: null,
    createdById: null,
  });
  const repo = new UsageEventsRepository(prisma);
  const event = (): UsageEvent => ({
    requestId: `chatcmpl-${randomUUID()}`,
    createdAt: new Date(),
    orgId: org!.id,
    keyId: key.id,
    model: 'bench-model',
    tier: 'bench',
    promptTokens: 12,
    completionTokens: 16,
    cachedTokens: 0,
    ttftMs: 1,
    durationMs: 3,
    status: 200,
    estimated: false,
    costNanos: 2200,
  });
  try {
    // warm-up: connections, the client's caches, JIT
    for (let i = 0; i < 10; i++) await repo.insertMany(Array.from({ length: BATCH }, event));
    const batches = Array.from({ length: BATCHES }, () => Array.from({ length: BATCH }, event));
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let inserted = 0;
    for (const rows of batches) inserted += await repo.insertMany(rows);
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    loop.disable();
    const events = BATCHES * BATCH;
    const cpuUsPerEvent = (cpu.user + cpu.system) / events;
    const result = {
      bench: 'usage-insert',
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, node: process.version, loadAverage: os.loadavg() },
      params: { batches: BATCHES, batch: BATCH },
      inserted,
      wallMsPerBatch: wallMs / BATCHES,
      cpuMsPerBatch: (cpu.user + cpu.system) / 1000 / BATCHES,
      cpuUsPerEvent,
      loopDelayMaxMs: loop.max / 1e6,
      loopDelayP99Ms: loop.percentile(99) / 1e6,
    };
    console.log(`\nUsage insert: ${BATCHES} batches of ${BATCH} rows, one after another (load average ${os.loadavg()[0].toFixed(2)})`);
    console.log('rows inserted  wall ms/batch  cpu ms/batch  cpu us/event  loop delay p99 ms  max ms');
    console.log(
      `${String(inserted).padStart(13)} ${result.wallMsPerBatch.toFixed(2).padStart(14)} ${result.cpuMsPerBatch.toFixed(2).padStart(13)} ${cpuUsPerEvent.toFixed(2).padStart(13)} ${result.loopDelayP99Ms.toFixed(2).padStart(18)} ${result.loopDelayMaxMs.toFixed(2).padStart(7)}`,
    );
    if (inserted !== events) throw new Error(`inserted ${inserted} rows of ${events}`);
    const outDir = path.join(root, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `usage-insert-${result.date.slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${path.relative(root, file)}`);
  } finally {
    await prisma.$executeRaw`DELETE FROM usage_events WHERE key_id = ${key.id}::uuid`;
    await prisma.$executeRaw`DELETE FROM api_keys WHERE id = ${key.id}::uuid`;
    await prisma.$executeRaw`DELETE FROM orgs WHERE id = ${org!.id}::uuid`;
    await prisma.$disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
