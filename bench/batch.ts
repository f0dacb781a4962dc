/**
 * Batch: lines per second of a Batch API batch (default 10,000 chat lines) run by the worker on vllm-sim spot
 * replicas (1, then 2), and what it does to interactive traffic: the P50/P95/P99 time to first token of chat streams
 * sent open loop (--rate req/s) to the same spot tier (or, with --interactive on-demand, to an on-demand tier of its
 * own) without the batch, then while the batch runs. The gateway, the worker and the sims are spawned from dist/
 * over the real Postgres and Redis; the sims run at most --max-num-seqs requests at once (the others wait, as on
 * vLLM), so the worker's capacity gate (BATCH_MAX_WAITING on vllm:num_requests_waiting) meets a real queue. The sims'
 * waiting queues are sampled every 200 ms. Each batch is checked afterwards: every line once in the output file,
 * one usage event per line. Prints a table; writes bench/results/batch-<date>.json.
 *
 *   npm run bench:batch -- [--lines 10000] [--replicas 1,2] [--rate 20] [--baseline-s 15] [--interactive spot|on-demand]
 *                          [--ttft-ms 20] [--itl-ms 5] [--tokens 16] [--max-num-seqs 16] [--concurrency 16]
 *                          [--max-waiting 2] [--keep]
 *
 * Uses DATABASE_URL (default: the dev database) and REDIS_URL. The bench's batches, files and usage events are
 * deleted at the end (--keep keeps them).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { benchGatewayEnv, createBenchKey, migrate } from './support/bench-org';
import { freePort, percentile, startNode, stopProcess, waitForUrl } from './support/child-processes';

const root = path.resolve(__dirname, '../..');
const dist = path.join(root, 'dist');
const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '10000' },
    replicas: { type: 'string', default: '1,2' },
    rate: { type: 'string', default: '20' },
    'baseline-s': { type: 'string', default: '15' },
    interactive: { type: 'string', default: 'spot' },
    'ttft-ms': { type: 'string', default: '20' },
    'itl-ms': { type: 'string', default: '5' },
    tokens: { type: 'string', default: '16' },
    'max-num-seqs': { type: 'string', default: '16' },
    concurrency: { type: 'string', default: '16' },
    'max-waiting': { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
  },
});
const LINES = Number(values.lines);
const REPLICAS = (values.replicas ?? '').split(',').map(Number);
const RATE = Number(values.rate);
const BASELINE_S = Number(values['baseline-s']);
const INTERACTIVE = values.interactive;
const TTFT_MS = Number(values['ttft-ms']);
const ITL_MS = Number(values['itl-ms']);
const TOKENS = Number(values.tokens);
const MAX_NUM_SEQS = Number(values['max-num-seqs']);
const CONCURRENCY = Number(values.concurrency);
const MAX_WAITING = Number(values['max-waiting']);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference';
for (const [name, v] of Object.entries({ LINES, RATE, BASELINE_S, TOKENS, MAX_NUM_SEQS, CONCURRENCY, MAX_WAITING, ...Object.fromEntries(REPLICAS.map((r, i) => [`REPLICAS[${i}]`, r])) })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name.toLowerCase().replace(/_/g, '-')} must be a positive integer`);
}
if (INTERACTIVE !== 'spot' && INTERACTIVE !== 'on-demand') throw new Error('--interactive is spot or on-demand');
const MODEL = 'bench-batch-model';
const OD_MODEL = 'bench-od-model';
const ADMIN_TOKEN = randomBytes(24).toString('hex');

interface Latency {
  requests: number;
  errors: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

interface BatchRun {
  lines: number;
  /** From the first line recorded to the last, as the polling saw them. */
  runS: number;
  linesPerS: number;
  /** From create to `in_progress` (upload excluded): reading and storing the input. */
  validateS: number;
  /** From the last line to `completed`: the output file written. */
  finalizeS: number;
  failed: number;
  usageEvents: number;
  outputLines: number;
  distinctCustomIds: number;
}

interface Waiting {
  mean: number;
  max: number;
}

interface Row {
  replicas: number;
  alone: BatchRun;
  loaded: BatchRun;
  interactiveAlone: Latency;
  interactiveWithBatch: Latency;
  waitingAlone: Waiting;
  waitingWithBatch: Waiting;
}

function latency(samples: Array<number | null>): Latency {
  const ok = samples.filter((s): s is number => s !== null).sort((a, b) => a - b);
  return { requests: samples.length, errors: samples.length - ok.length, p50: percentile(ok, 50), p95: percentile(ok, 95), p99: percentile(ok, 99), max: ok[ok.length - 1] ?? NaN };
}

/** One chat stream; resolves with the time to its first content token (ms), or null if it failed. */
async function ttft(url: string, key: string, model: string): Promise<number | null> {
  const started = performance.now();
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Say something about GPUs.' }], stream: true, max_tokens: TOKENS }),
    });
    if (!res.ok || res.body === null) {
      await res.arrayBuffer().catch(() => undefined);
      return null;
    }
    let first: number | null = null;
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      if (first === null) {
        text += decoder.decode(chunk, { stream: true });
        // the first delta with content (the role-only delta comes at once)
        if (/"content":"[^"]/.test(text)) first = performance.now() - started;
      }
    }
    return first;
  } catch {
    return null;
  }
}

/** Sends chat streams open loop at `rate` per second until `stop()` says so; resolves with every TTFT (null: failed). */
function openLoop(url: string, key: string, model: string, rate: number, stop: () => boolean): Promise<Array<number | null>> {
  return new Promise((resolve) => {
    const pending: Array<Promise<number | null>> = [];
    const t0 = performance.now();
    let sent = 0;
    const tick = () => {
      if (stop()) {
        void Promise.all(pending).then(resolve);
        return;
      }
      // catch up on the schedule, whatever the timer's drift
      const due = Math.floor(((performance.now() - t0) / 1000) * rate) + 1;
      for (; sent < due; sent++) pending.push(ttft(url, key, model));
      setTimeout(tick, Math.max(1, (sent / rate) * 1000 - (performance.now() - t0)));
    };
    tick();
  });
}

/** Samples the sims' vllm:num_requests_waiting (summed over them) every 200 ms until stopped. */
function sampleWaiting(urls: string[]): { stop: () => Waiting } {
  const samples: number[] = [];
  const timer = setInterval(() => {
    void Promise.all(
      urls.map(async (u) => {
        const text = await (await fetch(`${u}/metrics`)).text();
        let n = 0;
        for (const m of text.matchAll(/^vllm:num_requests_waiting(?:\{[^}]*\})?\s+([0-9.eE+-]+)/gm)) n += Number(m[1]);
        return n;
      }),
    ).then(
      (ns) => samples.push(ns.reduce((a, b) => a + b, 0)),
      () => undefined,
    );
  }, 200);
  return {
    stop() {
      clearInterval(timer);
      return { mean: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length), max: Math.max(0, ...samples) };
    },
  };
}

function batchInput(n: number, tag: string): Buffer {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    lines.push(JSON.stringify({ custom_id: `${tag}-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: `Line ${i}: classify this ticket.` }], max_tokens: TOKENS } }));
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

/**
 * Runs one batch to `completed`, polling every 100 ms; `during` runs from the first recorded line until the last
 * (its stop function says when), so that interactive traffic meets the batch at full speed only.
 */
async function runBatch(client: OpenAI, db: pg.Client, tag: string, during?: (stop: () => boolean) => Promise<unknown>): Promise<{ run: BatchRun; batchId: string }> {
  const file = await client.files.create({ file: await toFile(batchInput(LINES, tag), `${tag}.jsonl`), purpose: 'batch' });
  const t0 = performance.now();
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { bench: tag } });
  let inProgressAt = NaN;
  let firstLineAt = NaN;
  let lastLineAt = NaN;
  let linesDone = false;
  let duringDone: Promise<unknown> = Promise.resolve();
  let b = created;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    b = await client.batches.retrieve(created.id);
    const now = performance.now();
    const done = (b.request_counts?.completed ?? 0) + (b.request_counts?.failed ?? 0);
    if (Number.isNaN(inProgressAt) && b.status !== 'validating') inProgressAt = now;
    if (Number.isNaN(firstLineAt) && done > 0) {
      firstLineAt = now;
      if (during) duringDone = during(() => linesDone);
    }
    if (Number.isNaN(lastLineAt) && done >= LINES) {
      lastLineAt = now;
      linesDone = true;
    }
    if (b.status === 'completed') break;
    if (['failed', 'expired', 'cancelled'].includes(b.status)) throw new Error(`batch ${b.id} ended ${b.status}: ${JSON.stringify(b.errors ?? null)}`);
  }
  linesDone = true;
  await duringDone;
  const completedAt = performance.now();
  const output = b.output_file_id ? await (await client.files.content(b.output_file_id)).text() : '';
  const ids = output
    .trimEnd()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE batch_id = $1', [b.id]);
  const runS = (lastLineAt - firstLineAt) / 1000;
  return {
    batchId: b.id,
    run: {
      lines: LINES,
      runS,
      linesPerS: LINES / runS,
      validateS: (inProgressAt - t0) / 1000,
      finalizeS: (completedAt - lastLineAt) / 1000,
      failed: b.request_counts?.failed ?? 0,
      usageEvents: Number(rows[0].n),
      outputLines: ids.length,
      distinctCustomIds: new Set(ids).size,
    },
  };
}

async function stackFor(replicas: number): Promise<{ stop: () => Promise<void>; client: OpenAI; chatUrl: string; key: string; spotUrls: string[]; db: pg.Client; slug: string }> {
  const spotPorts = await Promise.all(Array.from({ length: replicas }, () => freePort()));
  const odPort = await freePort();
  const gwPort = await freePort();
  const spotUrls = spotPorts.map((p) => `http://127.0.0.1:${p}`);
  const odUrl = `http://127.0.0.1:${odPort}`;
  const { tmp, env } = benchGatewayEnv('batch', spotUrls[0], gwPort, DATABASE_URL);
  const tiers = path.join(tmp, 'batch-tiers.yaml');
  writeFileSync(
    tiers,
    `tiers:
  - name: spot
    kind: spot
    endpoints: [${spotUrls.join(', ')}]
    models:
      - { id: ${MODEL}, upstream: bench-upstream, price: { input_per_mtok: 0.05, output_per_mtok: 0.10 } }
  - name: od
    kind: on-demand
    endpoints: [${odUrl}]
    models:
      - { id: ${MODEL}, upstream: bench-upstream, price: { input_per_mtok: 0.10, output_per_mtok: 0.20 } }
      - { id: ${OD_MODEL}, upstream: bench-upstream, price: { input_per_mtok: 0.10, output_per_mtok: 0.20 } }
`,
  );
  Object.assign(env, {
    TIERS_FILE: tiers,
    ADMIN_TOKEN,
    GATEWAY_INTERNAL_URL: `http://127.0.0.1:${gwPort}`,
    BATCH_CONCURRENCY: String(CONCURRENCY),
    BATCH_MAX_WAITING: String(MAX_WAITING),
    BATCH_METRICS_EVERY_MS: '200',
    BATCH_SWEEP_MS: '500',
    BATCH_MAX_REQUESTS: String(Math.max(50_000, LINES)),
  });
  const simArgs = ['--models', 'bench-upstream', '--ttft-ms', String(TTFT_MS), '--itl-ms', String(ITL_MS), '--output-tokens', String(TOKENS), '--max-num-seqs', String(MAX_NUM_SEQS)];
  const sims = [...spotPorts, odPort].map((p, i) => startNode(`sim${i}`, path.join(dist, 'apps/vllm-sim/src/main.js'), ['--port', String(p), ...simArgs], env));
  const gateway = startNode('gateway', path.join(dist, 'apps/gateway/src/main.js'), [], env);
  const worker = startNode('worker', path.join(dist, 'apps/worker/src/main.js'), [], env);
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  const stop = async () => {
    await db.end();
    await Promise.all([stopProcess(worker), stopProcess(gateway), ...sims.map((s) => stopProcess(s))]);
  };
  try {
    await Promise.all([...spotUrls, odUrl].map((u) => waitForUrl(`${u}/health`)));
    await waitForUrl(`http://127.0.0.1:${gwPort}/readyz`);
    const bench = createBenchKey(env, false);
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${gwPort}/v1`, apiKey: bench.key, maxRetries: 3, timeout: 600_000 });
    return { stop, client, chatUrl: `http://127.0.0.1:${gwPort}/v1/chat/completions`, key: bench.key, spotUrls, db, slug: bench.slug };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function cleanup(db: pg.Client, slug: string): Promise<string> {
  const org = await db.query<{ id: string }>('SELECT id FROM orgs WHERE slug = $1', [slug]);
  const id = org.rows[0]?.id;
  if (id === undefined) return 'nothing to delete';
  const events = await db.query('DELETE FROM usage_events WHERE org_id = $1', [id]);
  const batches = await db.query('DELETE FROM batches WHERE org_id = $1', [id]);
  const files = await db.query('DELETE FROM files WHERE org_id = $1', [id]);
  return `deleted ${events.rowCount ?? 0} usage events, ${batches.rowCount ?? 0} batches, ${files.rowCount ?? 0} files`;
}

const ms = (n: number) => (Number.isNaN(n) ? '-' : n.toFixed(1));

async function main(): Promise<void> {
  migrate({ ...process.env, DATABASE_URL });
  const interactiveModel = INTERACTIVE === 'spot' ? MODEL : OD_MODEL;
  console.log(`\nBatch: ${LINES} chat lines per batch on 1 worker (BATCH_CONCURRENCY ${CONCURRENCY}, BATCH_MAX_WAITING ${MAX_WAITING}); vllm-sim replicas with --max-num-seqs ${MAX_NUM_SEQS}, TTFT ${TTFT_MS} ms, ITL ${ITL_MS} ms, ${TOKENS} tokens`);
  console.log(`interactive: chat streams, open loop ${RATE} req/s to the ${INTERACTIVE === 'spot' ? 'same spot tier' : 'on-demand tier'}; alone for ${BASELINE_S} s, then for as long as a batch runs`);
  console.log(`${os.cpus().length} cores (${os.cpus()[0]?.model}), node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  const rows: Row[] = [];
  for (const replicas of REPLICAS) {
    const stack = await stackFor(replicas);
    try {
      // warm-up: two seconds of streams, so that the first measure does not pay for first connections
      await openLoop(stack.chatUrl, stack.key, interactiveModel, RATE, (() => { const end = Date.now() + 2_000; return () => Date.now() > end; })());
      process.stderr.write(`[bench] ${replicas} replica(s): interactive alone\n`);
      const sampler = sampleWaiting(stack.spotUrls);
      const end = Date.now() + BASELINE_S * 1000;
      const interactiveAlone = latency(await openLoop(stack.chatUrl, stack.key, interactiveModel, RATE, () => Date.now() > end));
      const waitingAlone = sampler.stop();
      process.stderr.write(`[bench] ${replicas} replica(s): batch alone\n`);
      const alone = (await runBatch(stack.client, stack.db, `alone-${replicas}`)).run;
      process.stderr.write(`[bench] ${replicas} replica(s): batch with interactive traffic\n`);
      let withBatch: Array<number | null> = [];
      let waitingWithBatch: Waiting = { mean: NaN, max: NaN };
      const loaded = (
        await runBatch(stack.client, stack.db, `loaded-${replicas}`, async (stop) => {
          const during = sampleWaiting(stack.spotUrls);
          withBatch = await openLoop(stack.chatUrl, stack.key, interactiveModel, RATE, stop);
          waitingWithBatch = during.stop();
        })
      ).run;
      const row: Row = { replicas, alone, loaded, interactiveAlone, interactiveWithBatch: latency(withBatch), waitingAlone, waitingWithBatch };
      rows.push(row);
      if (!values.keep) process.stderr.write(`[bench] ${await cleanup(stack.db, stack.slug)}\n`);
    } finally {
      await stack.stop();
    }
  }

  console.log('replicas  lines/s alone  lines/s w/ interactive  validate s  finalize s  exactly once   TTFT alone p50/p95/p99 ms  TTFT w/ batch p50/p95/p99 ms  streams w/ batch (err)  waiting mean/max alone  w/ batch');
  for (const r of rows) {
    const once = [r.alone, r.loaded].every((b) => b.usageEvents === b.lines - b.failed && b.outputLines === b.lines - b.failed && b.distinctCustomIds === b.outputLines) ? 'yes' : 'NO';
    const a = r.interactiveAlone;
    const w = r.interactiveWithBatch;
    console.log(
      `${String(r.replicas).padStart(8)}  ${r.alone.linesPerS.toFixed(0).padStart(13)}  ${r.loaded.linesPerS.toFixed(0).padStart(22)}  ${r.alone.validateS.toFixed(1).padStart(10)}  ${r.alone.finalizeS.toFixed(1).padStart(10)}  ${once.padStart(12)}   ${`${ms(a.p50)}/${ms(a.p95)}/${ms(a.p99)}`.padStart(25)}  ${`${ms(w.p50)}/${ms(w.p95)}/${ms(w.p99)}`.padStart(29)}  ${`${w.requests} (${w.errors})`.padStart(22)}  ${`${r.waitingAlone.mean.toFixed(2)}/${r.waitingAlone.max}`.padStart(22)}  ${`${r.waitingWithBatch.mean.toFixed(2)}/${r.waitingWithBatch.max}`.padStart(8)}`,
    );
  }
  for (const r of rows) {
    console.log(`${r.replicas} replica(s): interactive P95 TTFT ${ms(r.interactiveWithBatch.p95)} ms with the batch vs ${ms(r.interactiveAlone.p95)} ms without (${r.interactiveWithBatch.p95 >= r.interactiveAlone.p95 ? '+' : ''}${ms(r.interactiveWithBatch.p95 - r.interactiveAlone.p95)} ms; one batch line takes about ${TTFT_MS + TOKENS * ITL_MS} ms on the sim)`);
  }

  const result = {
    bench: 'batch',
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: os.loadavg() },
    params: { lines: LINES, replicas: REPLICAS, rate: RATE, baselineS: BASELINE_S, interactive: INTERACTIVE, ttftMs: TTFT_MS, itlMs: ITL_MS, tokens: TOKENS, maxNumSeqs: MAX_NUM_SEQS, batchConcurrency: CONCURRENCY, batchMaxWaiting: MAX_WAITING, workers: 1 },
    rows,
  };
  const outDir = path.join(root, 'bench/results');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `batch-${result.date.slice(0, 10)}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${path.relative(root, file)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
