/**
 * Hostile clients at the gateway's front door: N unauthenticated connections (no key, a malformed key, an
 * unknown key) each announcing an 8 MB body and trickling it over the run (reconnecting when the gateway
 * closes them), alongside a steady rate of authenticated chat requests. Samples the gateway's resident memory (VmRSS) and
 * /healthz latency, counts what each hostile connection was answered, prints a table and writes
 * bench/results/hostile-<date>.json.
 *
 *   npm run bench:hostile -- [--connections 1000] [--duration 60] [--body-mb 8] [--keyed-rate 20]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Pool } from 'undici';
import { benchGatewayEnv } from './support/bench-org';

const root = path.resolve(__dirname, '../..');
const dist = path.join(root, 'dist');
const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '60' },
    'body-mb': { type: 'string', default: '8' },
    /** Authenticated chat requests per second through the run (open loop). */
    'keyed-rate': { type: 'string', default: '20' },
  },
});
const CONNECTIONS = Number(values.connections);
const DURATION_S = Number(values.duration);
const BODY_BYTES = Number(values['body-mb']) * 1024 * 1024;
const KEYED_RATE = Number(values['keyed-rate']);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference';
const TICK_MS = 200;
/** Bytes a hostile connection writes per tick: its body would take the whole run to arrive. */
const PIECE = Math.max(1, Math.ceil(BODY_BYTES / ((DURATION_S * 1000) / TICK_MS)));

/** The soft and hard open-files limits of this process. */
function openFilesLimit(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').split(/\s+/).slice(3, 5).map((v) => (v === 'unlimited' ? Infinity : Number(v)));
  return { soft: soft || 1024, hard: hard || 1024 };
}

/**
 * Each hostile connection costs a descriptor here and one in the gateway (a child: the same limit), plus
 * headroom. Node raises its own soft limit to the hard one at startup, so the hard limit is what there is.
 */
function ensureOpenFiles(): void {
  const need = CONNECTIONS + 512;
  const { soft, hard } = openFilesLimit();
  if (soft >= need) return;
  throw new Error(`open files limit ${soft} (hard ${hard}) is below the ${need} this run needs: lower --connections or raise ulimit -Hn`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function start(name: string, file: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, [file, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d}`));
  return child;
}

async function waitFor(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function cli(args: string[], env: NodeJS.ProcessEnv): string {
  const out = execFileSync(process.execPath, [path.join(dist, 'apps/cli/src/main.js'), ...args], { env, encoding: 'utf8' });
  return out.trim().split('\n').pop() ?? '';
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

/** One /healthz over a fresh connection (what a load balancer's probe does): ms, or NaN on failure. */
function probe(port: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - t0 : NaN));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(NaN));
    req.end();
  });
}

interface HostileStats {
  attempts: number;
  /** First status line each connection got back, by status. */
  answered: Record<string, number>;
  /** Connections closed or failed during the run without any answer. */
  unanswered: number;
  bytesSent: number;
}

const KEYS = [null, 'sk-proj-123', `sk-spot-AAAAAAAAAAAA-${'B'.repeat(40)}`];

/** What the flood thread is told. */
interface FloodPlan {
  port: number;
  stopAt: number;
  connections: number;
  bodyBytes: number;
  /** Bytes per write, one write every {@link TICK_MS}. */
  piece: number;
}

type FloodResult = HostileStats & { openAtEnd: number; unansweredAtEnd: number };

/** A hostile client: announce the body, trickle it, reconnect when cut, until the plan's end. */
function hostile(i: number, plan: FloodPlan, stats: HostileStats, live: Map<Socket, { answered: boolean }>): void {
  if (Date.now() >= plan.stopAt) return;
  const key = KEYS[i % KEYS.length];
  const head =
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: ${plan.bodyBytes}\r\n` +
    `${key === null ? '' : `authorization: Bearer ${key}\r\n`}\r\n`;
  const piece = Buffer.alloc(plan.piece, 'a');
  stats.attempts++;
  const socket = connect(plan.port, '127.0.0.1');
  const state = { answered: false };
  live.set(socket, state);
  let sent = 0;
  let statusLine = '';
  let ticker: NodeJS.Timeout | null = null;
  socket.on('connect', () => {
    socket.write(head);
    ticker = setInterval(() => {
      if (sent >= plan.bodyBytes || socket.destroyed) return;
      const n = Math.min(plan.piece, plan.bodyBytes - sent);
      sent += n;
      stats.bytesSent += n;
      socket.write(n === plan.piece ? piece : piece.subarray(0, n));
    }, TICK_MS);
  });
  socket.on('data', (d: Buffer) => {
    if (state.answered) return;
    statusLine += d.toString('latin1');
    const eol = statusLine.indexOf('\r\n');
    if (eol < 0) return;
    state.answered = true;
    const status = statusLine.slice(0, eol).split(' ')[1] ?? '?';
    stats.answered[status] = (stats.answered[status] ?? 0) + 1;
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    if (ticker !== null) clearInterval(ticker);
    live.delete(socket);
    if (!state.answered && Date.now() < plan.stopAt) stats.unanswered++;
    setImmediate(() => hostile(i, plan, stats, live));
  });
}

/** The hostile connections, in a thread of their own so that their load does not delay the probes' timing. */
async function flood(plan: FloodPlan): Promise<FloodResult> {
  const stats: HostileStats = { attempts: 0, answered: {}, unanswered: 0, bytesSent: 0 };
  const live = new Map<Socket, { answered: boolean }>();
  // opened over the first second, not in one burst of SYNs
  for (let i = 0; i < plan.connections; i++) setTimeout(() => hostile(i, plan, stats, live), (i * 1000) / plan.connections);
  await new Promise((r) => setTimeout(r, plan.stopAt - Date.now()));
  const openAtEnd = live.size;
  const unansweredAtEnd = [...live.values()].filter((x) => !x.answered).length;
  for (const socket of live.keys()) socket.destroy();
  return { ...stats, openAtEnd, unansweredAtEnd };
}

async function main(): Promise<void> {
  ensureOpenFiles();
  const simPort = await freePort();
  const gwPort = await freePort();
  const { env } = benchGatewayEnv('hostile', `http://127.0.0.1:${simPort}`, gwPort, DATABASE_URL);
  execFileSync(process.execPath, [path.join(root, 'scripts/prisma-wasm-migrate.mjs'), 'deploy'], { env, stdio: 'ignore' });
  const slug = `bench-${randomUUID().slice(0, 8)}`;
  cli(['org', 'create', slug], env);
  const key = cli(['key', 'create', '--org', slug, '--name', 'bench'], env);

  const sim = start('sim', path.join(dist, 'apps/vllm-sim/src/main.js'), ['--port', String(simPort), '--models', 'bench-upstream', '--output-tokens', '16'], env);
  const gateway = start('gateway', path.join(dist, 'apps/gateway/src/main.js'), [], env);
  try {
    await waitFor(`http://127.0.0.1:${simPort}/health`);
    await waitFor(`http://127.0.0.1:${gwPort}/readyz`);
    const pid = gateway.pid!;
    const pool = new Pool(`http://127.0.0.1:${gwPort}`, { connections: 16 });
    const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say something about GPUs.' }], max_tokens: 16 });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
    const keyedOne = async (): Promise<{ status: number; ms: number }> => {
      const t0 = performance.now();
      try {
        const res = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body });
        await res.body.text();
        return { status: res.statusCode, ms: performance.now() - t0 };
      } catch {
        return { status: 0, ms: performance.now() - t0 };
      }
    };
    // warm: the key cached, the pools open, the heap at its working size
    for (let i = 0; i < 50; i++) await keyedOne();
    await new Promise((r) => setTimeout(r, 1000));
    const rssBefore = rssMiB(pid);

    const t0 = Date.now();
    const stopAt = t0 + DURATION_S * 1000;
    const plan: FloodPlan = { port: gwPort, stopAt, connections: CONNECTIONS, bodyBytes: BODY_BYTES, piece: PIECE };
    const floodThread = new Worker(__filename, { workerData: plan });
    const flooded = new Promise<FloodResult>((resolve, reject) => {
      floodThread.once('message', resolve);
      floodThread.once('error', reject);
    });

    const rss: Array<{ s: number; mib: number }> = [];
    const sampler = setInterval(() => rss.push({ s: (Date.now() - t0) / 1000, mib: rssMiB(pid) }), 250);
    const healthMs: number[] = [];
    const slowProbes: Array<{ s: number; ms: number }> = [];
    let healthFailures = 0;
    const prober = (async () => {
      while (Date.now() < stopAt) {
        const at = (Date.now() - t0) / 1000;
        const ms = await probe(gwPort);
        if (Number.isNaN(ms)) healthFailures++;
        else healthMs.push(ms);
        if (ms > 50) slowProbes.push({ s: at, ms });
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const keyed: Array<Promise<{ status: number; ms: number }>> = [];
    const keyedTicker = setInterval(() => {
      if (Date.now() < stopAt) keyed.push(keyedOne());
    }, 1000 / KEYED_RATE);
    await prober;
    clearInterval(keyedTicker);
    const keyedResults = await Promise.all(keyed);
    clearInterval(sampler);
    const stats = await flooded;
    await floodThread.terminate();
    await new Promise((r) => setTimeout(r, 3000));
    const rssAfter = rssMiB(pid);
    await pool.close();

    const rssMax = Math.max(...rss.map((r) => r.mib));
    const health = [...healthMs].sort((a, b) => a - b);
    const keyedOk = keyedResults.filter((r) => r.status === 200);
    const keyedMs = keyedOk.map((r) => r.ms).sort((a, b) => a - b);
    const answeredTotal = Object.values(stats.answered).reduce((a, b) => a + b, 0);
    const f = (n: number) => n.toFixed(1).padStart(9);

    console.log(`\nHostile front door: ${CONNECTIONS} unauthenticated connections trickling ${values['body-mb']} MB bodies for ${DURATION_S} s, ${KEYED_RATE} keyed requests/s alongside`);
    console.log(`${os.cpus().length} cores, node ${process.version}, open files limit ${openFilesLimit().soft}\n`);
    console.log('gateway RSS (MiB)       before      max    after   growth(max)');
    console.log(`                      ${f(rssBefore)}${f(rssMax)}${f(rssAfter)}${f(rssMax - rssBefore)}`);
    console.log('\n/healthz (ms, fresh connection)   probes  failed      p50      p95      p99      max  over 50 ms (at s)');
    console.log(
      `                                 ${String(health.length).padStart(7)} ${String(healthFailures).padStart(7)}` +
        `${f(pct(health, 50))}${f(pct(health, 95))}${f(pct(health, 99))}${f(health[health.length - 1] ?? NaN)}  ` +
        `${slowProbes.length} ${slowProbes.map((p) => `${p.ms.toFixed(0)}ms@${p.s.toFixed(1)}`).join(' ')}`,
    );
    console.log('\nkeyed chat requests                 sent      ok     p50 ms   p99 ms');
    console.log(`                                 ${String(keyedResults.length).padStart(7)} ${String(keyedOk.length).padStart(7)}${f(pct(keyedMs, 50))}${f(pct(keyedMs, 99))}`);
    console.log('\nhostile connections              opened  answered  unanswered  by status');
    console.log(
      `                                 ${String(stats.attempts).padStart(7)} ${String(answeredTotal).padStart(9)} ${String(stats.unanswered).padStart(11)}  ${JSON.stringify(stats.answered)}  (${(stats.bytesSent / 1024 / 1024).toFixed(0)} MiB sent; at the end ${stats.openAtEnd} open, ${stats.unansweredAtEnd} of them unanswered)`,
    );

    const result = {
      bench: 'hostile',
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      params: { connections: CONNECTIONS, durationS: DURATION_S, bodyBytes: BODY_BYTES, trickleBytesPerSecond: (PIECE * 1000) / TICK_MS, keyedRequestsPerSecond: KEYED_RATE },
      rssMiB: { before: rssBefore, max: rssMax, after: rssAfter, growthMax: rssMax - rssBefore, samples: rss },
      healthz: {
        probes: health.length,
        failed: healthFailures,
        p50: pct(health, 50),
        p95: pct(health, 95),
        p99: pct(health, 99),
        max: health[health.length - 1] ?? null,
        over50ms: slowProbes,
      },
      keyed: { sent: keyedResults.length, ok: keyedOk.length, p50: pct(keyedMs, 50), p99: pct(keyedMs, 99), statuses: countBy(keyedResults.map((r) => String(r.status))) },
      hostile: stats,
    };
    const outDir = path.join(root, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `hostile-${result.date.slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${path.relative(root, file)}`);
  } finally {
    sim.kill('SIGTERM');
    if (gateway.exitCode === null) gateway.kill('SIGTERM');
  }
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  void flood(workerData as FloodPlan).then((result) => parentPort!.postMessage(result));
}
