/**
 * Usage to money, measured: how many usage events/s the recorder sustains into Postgres, how long the rollup
 * of 1M events takes, and how many meter events/s billing sync pushes (against a local stand-in for Stripe's
 * meter_events endpoint that answers like Stripe, so the figure is ours, not the network's). Prints a table
 * and writes bench/results/usage-<date>.json.
 *
 *   npm run bench:usage -- [--recorder 200000] [--rollup 1000000] [--orgs 20] [--keys 10] [--hours 24]
 *
 * At scale (`--scale 10000000 [--days 40]`): usage_events is first filled with that many events spread over the
 * last `--days` days (INSERT ... SELECT generate_series, oldest first, as time fills it), then the recorder's
 * insert rate into that table, the rollup of every event, and retention (USAGE_RETENTION_DAYS, 35) are measured;
 * billing sync is left out (it reads rollups, whose size does not depend on the events'). Writes
 * bench/results/usage-scale-<date>.json. Give it a database of its own: it needs several GB and a while.
 *
 * Uses DATABASE_URL (default: the dev database) and REDIS_URL; removes every row it wrote when done.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type DynamicModule, type INestApplicationContext, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BillingModule, BillingSyncService, PriceBook, StripeClient, UsagePartitionService, UsageRollupService, monthStart, utcDay } from '@spot/billing';
import { type AppConfig, ConfigModule, loadConfig } from '@spot/config';
import { ApiKeysRepository, DbModule, PrismaService, UsageEventsRepository } from '@spot/db';
import { RedisModule } from '@spot/redis';
import { RepositoryUsageSink, type UsageEvent, UsageRecorder } from '@spot/usage';

const root = path.resolve(__dirname, '../..');
const { values } = parseArgs({
  options: {
    recorder: { type: 'string', default: '200000' },
    rollup: { type: 'string', default: '1000000' },
    orgs: { type: 'string', default: '20' },
    keys: { type: 'string', default: '10' },
    hours: { type: 'string', default: '24' },
    scale: { type: 'string', default: '0' },
    days: { type: 'string', default: '40' },
    tag: { type: 'string', default: '' },
  },
});
const RECORDER_EVENTS = Number(values.recorder);
const ROLLUP_EVENTS = Math.max(Number(values.rollup), RECORDER_EVENTS);
const ORGS = Number(values.orgs);
const KEYS = Number(values.keys);
const HOURS = Number(values.hours);
const MODELS = ['bench-a', 'bench-b'];
const SCALE = Number(values.scale);
const DAYS = Number(values.days);
const DAY_MS = 86_400_000;

const TIERS = `tiers:
  - name: bench
    kind: spot
    endpoints: [http://127.0.0.1:9]
    models:
      - id: bench-a
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
      - id: bench-b
        price: { input_per_mtok: 0.3, output_per_mtok: 1.2 }
`;

@Module({})
class BenchModule {
  static forRoot(config: AppConfig): DynamicModule {
    return { module: BenchModule, imports: [ConfigModule.forRoot(config), DbModule, RedisModule, BillingModule] };
  }
}

/** The i-th event the recorder runs record: spread over the orgs, keys, models and hours the rollup groups by. */
function benchEvent(requestId: string, i: number, at: number, orgIds: readonly string[], keyIds: readonly string[]): UsageEvent {
  return {
    requestId,
    createdAt: new Date(at - (Math.floor(i / (ORGS * KEYS * 2)) % HOURS) * 3_600_000),
    orgId: orgIds[i % ORGS],
    keyId: keyIds[Math.floor(i / ORGS) % KEYS],
    model: MODELS[Math.floor(i / (ORGS * KEYS)) % 2],
    tier: 'bench',
    promptTokens: 100 + (i % 900),
    completionTokens: 20 + (i % 300),
    cachedTokens: 0,
    ttftMs: 50,
    durationMs: 400,
    status: 200,
    estimated: false,
    costNanos: 1_000,
  };
}

/** Answers POST /v1/billing/meter_events like Stripe (200 + the event; "already exists" for a repeat). */
async function startMeterEndpoint(): Promise<{ url: string; server: Server; received: () => number }> {
  const seen = new Set<string>();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      const identifier = form.get('identifier') ?? randomUUID();
      res.setHeader('content-type', 'application/json');
      if (req.url !== '/v1/billing/meter_events') {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: { type: 'invalid_request_error', message: `Unrecognized request URL (${req.method}: ${req.url}).` } }));
      } else if (seen.has(identifier)) {
        res.statusCode = 400;
        res.setHeader('stripe-should-retry', 'false');
        res.end(JSON.stringify({ error: { type: 'invalid_request_error', message: `An event already exists with identifier ${identifier}.` } }));
      } else {
        seen.add(identifier);
        res.end(JSON.stringify({ object: 'billing.meter_event', identifier, event_name: form.get('event_name'), timestamp: Number(form.get('timestamp')) }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, received: () => seen.size };
}

/** The same recorder the gateway runs (journal on, batches of 500), `count` events created at `at`. */
async function recordEvents(prisma: PrismaService, dir: string, count: number, at: number, orgIds: string[], keyIds: string[], prefix: string): Promise<number> {
  const recorder = new UsageRecorder(new RepositoryUsageSink(new UsageEventsRepository(prisma), new ApiKeysRepository(prisma)), {
    spoolDir: path.join(dir, 'spool'),
    batchSize: 500,
  });
  await recorder.start();
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    recorder.record(benchEvent(`${prefix}-${i}`, i, at, orgIds, keyIds));
    // let flushes run, as they would between requests
    if (i % 2_000 === 1_999) await new Promise((r) => setImmediate(r));
  }
  while (recorder.stats().pending > 0) await new Promise((r) => setTimeout(r, 20));
  const ms = performance.now() - started;
  await recorder.stop();
  return ms;
}

async function countEvents(prisma: PrismaService, orgIds: string[]): Promise<number> {
  const [row] = await prisma.$queryRaw<Array<{ n: bigint }>>`SELECT count(*) AS n FROM usage_events WHERE org_id = ANY(${orgIds}::uuid[])`;
  return Number(row.n);
}

/** usage_events at scale: bulk load, then the recorder's insert rate, the rollup, and retention (see the header). */
async function scale(): Promise<void> {
  Logger.overrideLogger(['error']);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-usage-'));
  writeFileSync(path.join(dir, 'tiers.yaml'), TIERS);
  const config = loadConfig({ ...process.env, TIERS_FILE: path.join(dir, 'tiers.yaml'), USAGE_RETENTION_DAYS: '35', LOG_LEVEL: 'error' });
  const app = await NestFactory.createApplicationContext(BenchModule.forRoot(config), { logger: ['error'] });
  const prisma = app.get(PrismaService);
  const orgIds = Array.from({ length: ORGS }, () => randomUUID());
  const keyIds = Array.from({ length: KEYS }, () => randomUUID());
  const run = randomBytes(4).toString('hex');
  const now = Date.now();
  const from = now - DAYS * DAY_MS;
  const results: Record<string, number | string> = {};
  const log = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  try {
    const [kind] = await prisma.$queryRaw<Array<{ partitioned: boolean }>>`SELECT relkind = 'p' AS partitioned FROM pg_class WHERE relname = 'usage_events' AND relnamespace = 'public'::regnamespace`;
    results.table = kind.partitioned ? 'partitioned by day' : 'one table';
    await prepareTable(app, new Date(from), new Date(now));

    // 1. the table at scale: SCALE events over DAYS days, oldest first, in statements of a million rows
    const CHUNK = 1_000_000;
    let started = performance.now();
    for (let done = 0; done < SCALE; done += CHUNK) {
      const n = Math.min(CHUNK, SCALE - done);
      await prisma.$executeRaw`
        INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, cached_tokens,
          duration_ms, status, estimated, cost_nanos)
        SELECT 'bench-scale-' || ${run} || '-' || i, to_timestamp((${from}::bigint + (i * ${DAYS * DAY_MS}::bigint) / ${SCALE}::bigint) / 1000.0),
          (${orgIds}::uuid[])[1 + i % ${ORGS}], (${keyIds}::uuid[])[1 + (i / ${ORGS}) % ${KEYS}],
          (ARRAY['bench-a', 'bench-b'])[1 + (i / ${ORGS * KEYS}) % 2], 'bench', 100 + i % 900, 20 + i % 300, 0, 400, 200, false, 1000
        FROM generate_series(${done}::bigint, ${done + n - 1}::bigint) AS i`;
      log(`loaded ${(done + n).toLocaleString('en-US')} events`);
    }
    const loadMs = performance.now() - started;
    results.loadEvents = SCALE;
    results.loadMs = Math.round(loadMs);
    results.loadEventsPerSec = Math.round(SCALE / (loadMs / 1000));
    await prisma.$executeRawUnsafe('ANALYZE usage_events');

    // 2. the recorder into that table
    const recorderMs = await recordEvents(prisma, dir, RECORDER_EVENTS, now, orgIds, keyIds, `bench-rec-${run}`);
    results.recorderEvents = RECORDER_EVENTS;
    results.recorderEventsPerSec = Math.round(RECORDER_EVENTS / (recorderMs / 1000));
    log(`recorder: ${results.recorderEventsPerSec} events/s`);

    // 3. the rollup of every event
    const rollup = await app.get(UsageRollupService).runPass();
    results.rollupEvents = rollup.events;
    results.rollupMs = rollup.ms;
    results.rollupEventsPerSec = Math.round(rollup.events / (rollup.ms / 1000));
    results.rollupRows = rollup.rollups;
    log(`rollup: ${rollup.events} events in ${rollup.ms} ms`);

    // 4. retention: everything past 35 days goes
    const before = await countEvents(prisma, orgIds);
    started = performance.now();
    await app.get(UsagePartitionService).dropExpired(new Date(now));
    results.retentionMs = Math.round(performance.now() - started);
    results.retentionEvents = before - (await countEvents(prisma, orgIds));
    log(`retention: ${results.retentionEvents} events in ${results.retentionMs} ms`);
  } finally {
    const t = performance.now();
    await prisma.$executeRaw`DELETE FROM usage_events WHERE org_id = ANY(${orgIds}::uuid[])`;
    await prisma.$executeRaw`DELETE FROM usage_rollups WHERE org_id = ANY(${orgIds}::uuid[])`;
    log(`cleaned up in ${Math.round(performance.now() - t)} ms`);
    await app.close();
  }

  const rows: Array<[string, string]> = [
    ['usage_events', String(results.table)],
    ['bulk load (INSERT ... SELECT)', `${SCALE.toLocaleString('en-US')} events over ${DAYS} days in ${(Number(results.loadMs) / 1000).toFixed(1)} s (${Number(results.loadEventsPerSec).toLocaleString('en-US')} events/s)`],
    ['recorder: events into Postgres', `${Number(results.recorderEventsPerSec).toLocaleString('en-US')} events/s (${RECORDER_EVENTS.toLocaleString('en-US')} events)`],
    ['rollup: events folded', `${Number(results.rollupEvents).toLocaleString('en-US')} events in ${(Number(results.rollupMs) / 1000).toFixed(1)} s (${Number(results.rollupEventsPerSec).toLocaleString('en-US')} events/s)`],
    ['retention: events past 35 days', `${Number(results.retentionEvents).toLocaleString('en-US')} events in ${(Number(results.retentionMs) / 1000).toFixed(1)} s`],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\nusage bench at scale (${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'})\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
  const tag = values.tag ? `-${values.tag}` : '';
  const out = path.join(root, 'bench/results', `usage-scale-${new Date().toISOString().slice(0, 10)}${tag}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, options: values, results }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${path.relative(root, out)}\n`);
}

/** The day partitions of [from, to] and the week after, as the worker would have made them day by day. */
async function prepareTable(app: INestApplicationContext, from: Date, to: Date): Promise<void> {
  const days: Date[] = [];
  for (let d = utcDay(from).getTime(); d <= to.getTime() + 7 * DAY_MS; d += DAY_MS) days.push(new Date(d));
  await app.get(UsagePartitionService).ensureDays(days);
}

async function main(): Promise<void> {
  Logger.overrideLogger(['error']);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-usage-'));
  writeFileSync(path.join(dir, 'tiers.yaml'), TIERS);
  const stripe = await startMeterEndpoint();
  const config = loadConfig({
    ...process.env,
    TIERS_FILE: path.join(dir, 'tiers.yaml'),
    STRIPE_SECRET_KEY: `sk_bench_${randomBytes(8).toString('hex')}`,
    STRIPE_API_BASE: stripe.url,
    REDIS_PREFIX: `bench:${randomBytes(4).toString('hex')}:`,
    LOG_LEVEL: 'error',
  });
  const app = await NestFactory.createApplicationContext(BenchModule.forRoot(config), { logger: ['error'] });
  const prisma = app.get(PrismaService);
  const account = app.get(StripeClient).account as string;
  const orgIds = Array.from({ length: ORGS }, () => randomUUID());
  const keyIds = Array.from({ length: KEYS }, () => randomUUID());
  const now = Date.now();
  const results: Record<string, number> = {};
  try {
    // 1. the recorder, as the gateway runs it (journal on, batches of 500)
    const recorder = new UsageRecorder(new RepositoryUsageSink(new UsageEventsRepository(prisma), new ApiKeysRepository(prisma)), {
      spoolDir: path.join(dir, 'spool'),
      batchSize: 500,
    });
    await recorder.start();
    const started = performance.now();
    for (let i = 0; i < RECORDER_EVENTS; i++) {
      recorder.record(benchEvent(`bench-${orgIds[0]}-${i}`, i, now, orgIds, keyIds));
      // let flushes run, as they would between requests
      if (i % 2_000 === 1_999) await new Promise((r) => setImmediate(r));
    }
    while (recorder.stats().pending > 0) await new Promise((r) => setTimeout(r, 20));
    const recorderMs = performance.now() - started;
    await recorder.stop();
    results.recorderEvents = RECORDER_EVENTS;
    results.recorderEventsPerSec = Math.round(RECORDER_EVENTS / (recorderMs / 1000));

    // 2. rollup of ROLLUP_EVENTS events (the recorder's plus bulk-inserted ones)
    const extra = ROLLUP_EVENTS - RECORDER_EVENTS;
    if (extra > 0) {
      await prisma.$executeRaw`
        INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, cached_tokens,
          duration_ms, status, estimated, cost_nanos)
        SELECT 'bench-bulk-' || ${orgIds[0]} || '-' || i, ${new Date(now)}::timestamptz - (((i / ${ORGS * KEYS * 2}) % ${HOURS}) * interval '1 hour'),
          (${orgIds}::uuid[])[1 + i % ${ORGS}], (${keyIds}::uuid[])[1 + (i / ${ORGS}) % ${KEYS}],
          (ARRAY['bench-a', 'bench-b'])[1 + (i / ${ORGS * KEYS}) % 2], 'bench', 100 + i % 900, 20 + i % 300, 0, 400, 200, false, 1000
        FROM generate_series(0, ${extra - 1}) AS i`;
    }
    const rollup = await app.get(UsageRollupService).runPass();
    results.rollupEvents = rollup.events;
    results.rollupMs = rollup.ms;
    results.rollupEventsPerSec = Math.round(rollup.events / (rollup.ms / 1000));
    results.rollupRows = rollup.rollups;

    // 3. billing sync of the resulting rollups: every org billed through "Stripe", catalog and items in place
    const since = monthStart(new Date(now - HOURS * 3_600_000));
    for (const [i, id] of orgIds.entries()) {
      await prisma.$executeRaw`
        INSERT INTO orgs (id, slug, name, stripe_account, stripe_customer_id, stripe_subscription_id, billing_status, billing_since)
        VALUES (${id}::uuid, ${`bench-${id.slice(0, 8)}-${i}`}, 'bench', ${account}, ${`cus_bench_${id}`}, ${`sub_bench_${id}`}, 'active', ${since})`;
    }
    const lines = app.get(PriceBook).lines();
    for (const l of lines) {
      await prisma.billingLine.create({
        data: { account, lineKey: l.lineKey, model: l.model, tier: l.tier, direction: l.direction, unitAmountDecimal: l.unitAmountDecimal, eventName: l.eventName, meterId: `mtr_${l.lineKey}`, productId: `prod_${l.lineKey}`, priceId: `price_${l.lineKey}` },
      });
      await prisma.billingSubscriptionItem.createMany({ data: orgIds.map((orgId) => ({ orgId, account, lineKey: l.lineKey, itemId: `si_${orgId}_${l.lineKey}` })) });
    }
    const sync = await app.get(BillingSyncService).runPass();
    results.syncRollups = sync.rollups;
    results.syncMeterEvents = sync.accepted;
    results.syncMs = sync.ms;
    results.syncEventsPerSec = Math.round(sync.accepted / (sync.ms / 1000));
    results.stripeReceived = stripe.received();
  } finally {
    await prisma.$executeRaw`DELETE FROM meter_event_outbox WHERE account = ${account}`;
    await prisma.$executeRaw`DELETE FROM billing_subscription_items WHERE account = ${account}`;
    await prisma.$executeRaw`DELETE FROM billing_lines WHERE account = ${account}`;
    await prisma.$executeRaw`DELETE FROM usage_events WHERE org_id = ANY(${orgIds}::uuid[])`;
    await prisma.$executeRaw`DELETE FROM usage_rollups WHERE org_id = ANY(${orgIds}::uuid[])`;
    await prisma.$executeRaw`DELETE FROM orgs WHERE id = ANY(${orgIds}::uuid[])`;
    await app.close();
    stripe.server.close();
  }

  const rows: Array<[string, string]> = [
    ['recorder: events into Postgres', `${results.recorderEventsPerSec.toLocaleString('en-US')} events/s (${results.recorderEvents.toLocaleString('en-US')} events)`],
    ['rollup: events folded', `${results.rollupEvents.toLocaleString('en-US')} events in ${(results.rollupMs / 1000).toFixed(1)} s (${results.rollupEventsPerSec.toLocaleString('en-US')} events/s, ${results.rollupRows.toLocaleString('en-US')} rollup row writes)`],
    ['billing sync: meter events', `${results.syncMeterEvents.toLocaleString('en-US')} events from ${results.syncRollups.toLocaleString('en-US')} rollups in ${(results.syncMs / 1000).toFixed(1)} s (${results.syncEventsPerSec.toLocaleString('en-US')} events/s)`],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\nusage bench (${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'})\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
  const out = path.join(root, 'bench/results', `usage-${new Date().toISOString().slice(0, 10)}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, options: values, results }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${path.relative(root, out)}\n`);
}

(SCALE > 0 ? scale() : main()).catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
