/**
 * Spot: a scaled-down preemption trace under open-loop load. A spot tier of two vllm-sim processes and an on-demand
 * tier of one serve the same model (on-demand at a higher price) behind a spawned gateway (auth, limits and usage
 * recording on, over the real Postgres and Redis). Each spot replica is up `--uptime` of the run: a seeded trace
 * SIGKILLs it a few times, half of the preemptions after a notice (POST /admin/tiers/spot/preempt with the replica and
 * deadline_s, the SIGKILL at the deadline), half without one; the replacement starts on the same port after the
 * downtime, and the gateway's own rules put it back in rotation (the bench DELETEs a notice they leave, and counts it).
 * Poisson arrivals (`--rate`, `--stream` of them streamed chat with usage asked, the rest unary chat) through the
 * official `openai` SDK, no SDK retries.
 *
 * Prints: the share of completion tokens served on spot (usage_events, every segment, of the bench's key), the
 * failures a client saw (an error, a stream without one finish_reason and one usage chunk, a text other than one
 * uninterrupted engine's: vllm-sim is deterministic), TTFT P50/P95 of requests that arrived during a preemption
 * window (from the notice, or the kill, until the replacement is back in rotation) against the others (and of those
 * that arrived within 2 s of a kill without notice), the longest wait between deltas of continued streams, and the cost of
 * the run (usage cost_nanos) against the same tokens at on-demand prices. Writes bench/results/spot-<date>.json, and
 * keeps the gateway's log (warn level) in its temp folder for a look at any failure.
 *
 *   npm run bench:spot -- [--duration 150] [--rate 20] [--stream 0.7] [--uptime 0.8] [--downtime 10] [--notice 4]
 *                         [--quiet 10] [--warmup 5] [--tokens 16-48] [--ttft-ms 30] [--itl-ms 10] [--health-ms 1000]
 *                         [--spot-price-ratio 0.33] [--seed 12] [--keep-usage]
 *
 * Durations in seconds. No preemption in the first and last `--quiet` s; requests that arrive in the first `--warmup`
 * s (at most --quiet) count for failures and usage, not for latencies. Uses DATABASE_URL (default: the dev database) and REDIS_URL.
 */
import { type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { costNanos, type ModelPrice } from '@spot/tiers';
import OpenAI from 'openai';
import pg from 'pg';
import { startSim } from '../apps/vllm-sim/src/sim-server';
import { benchGatewayEnv, createBenchKey, deleteUsageEvents, migrate } from './support/bench-org';
import { freePort, percentile, startNode, stopProcess, waitForUrl } from './support/child-processes';
import { exponential, type Preemption, preemptionTrace, seededRandom } from './support/spot-trace';

const root = path.resolve(__dirname, '../..');
const dist = path.join(root, 'dist');
const SIM_MAIN = path.join(dist, 'apps/vllm-sim/src/main.js');
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '150' },
    rate: { type: 'string', default: '20' },
    stream: { type: 'string', default: '0.7' },
    uptime: { type: 'string', default: '0.8' },
    downtime: { type: 'string', default: '10' },
    notice: { type: 'string', default: '4' },
    quiet: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '5' },
    tokens: { type: 'string', default: '16-48' },
    'ttft-ms': { type: 'string', default: '30' },
    'itl-ms': { type: 'string', default: '10' },
    'health-ms': { type: 'string', default: '1000' },
    'spot-price-ratio': { type: 'string', default: '0.33' },
    seed: { type: 'string', default: '12' },
    'keep-usage': { type: 'boolean', default: false },
  },
});
const num = (name: string, v: string | undefined, ok: (n: number) => boolean): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || !ok(n)) throw new Error(`--${name}: unexpected value ${v}`);
  return n;
};
const DURATION_MS = num('duration', values.duration, (n) => n > 0) * 1000;
const RATE = num('rate', values.rate, (n) => n > 0);
const STREAM_SHARE = num('stream', values.stream, (n) => n >= 0 && n <= 1);
const UPTIME = num('uptime', values.uptime, (n) => n > 0 && n < 1);
const DOWNTIME_MS = num('downtime', values.downtime, (n) => n > 0) * 1000;
const NOTICE_MS = num('notice', values.notice, (n) => n > 0) * 1000;
const QUIET_MS = num('quiet', values.quiet, (n) => n >= 0) * 1000;
const WARMUP_MS = num('warmup', values.warmup, (n) => n >= 0 && n * 1000 <= QUIET_MS) * 1000;
const TTFT_MS = num('ttft-ms', values['ttft-ms'], Number.isInteger);
const ITL_MS = num('itl-ms', values['itl-ms'], Number.isInteger);
const HEALTH_MS = num('health-ms', values['health-ms'], (n) => Number.isInteger(n) && n > 0);
const RATIO = num('spot-price-ratio', values['spot-price-ratio'], (n) => n > 0 && n <= 1);
const SEED = num('seed', values.seed, Number.isInteger);
const tokenRange = /^(\d+)-(\d+)$/.exec(values.tokens ?? '');
if (tokenRange === null || Number(tokenRange[1]) < 1 || Number(tokenRange[1]) > Number(tokenRange[2])) throw new Error('--tokens: expected MIN-MAX, e.g. 16-48');
const [MIN_TOKENS, MAX_TOKENS] = [Number(tokenRange[1]), Number(tokenRange[2])];
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference';

const MODEL = 'spot-model';
const UPSTREAM = 'bench-upstream';
const SPOT_REPLICAS = 2;
const OD_PRICE: ModelPrice = { input_per_mtok: 0.3, output_per_mtok: 0.6 };
const SPOT_PRICE: ModelPrice = { input_per_mtok: +(0.3 * RATIO).toFixed(6), output_per_mtok: +(0.6 * RATIO).toFixed(6) };
const ADMIN_TOKEN = `bench-admin-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
/** Requests that arrive this soon after a kill without notice may be sent to the dead replica first. */
const SILENT_KILL_MS = 2_000;
/** SkyServe (SpotHedge, EuroSys '25): its reported average cost against serving on on-demand replicas. */
const SKYSERVE_SPOTHEDGE = -0.43;

interface Outcome {
  i: number;
  arrivalMs: number;
  stream: boolean;
  maxTokens: number;
  prompt: string;
  requestId: string | null;
  /** Stream: to the first content delta; unary: to the whole answer. */
  ttftMs: number | null;
  totalMs: number;
  /** Stream: the longest wait between two content deltas (a continuation's seam shows here). */
  maxGapMs: number;
  text: string;
  finishes: string[];
  usage: OpenAI.CompletionUsage[];
  error: string | null;
}

/** One preemption as it was carried out, in ms from the start of the run. */
interface Done extends Preemption {
  deadlineAtMs: number | null;
  killedAtMs: number;
  healthyAtMs: number;
  /** The gateway holds no notice on it and its circuit is closed again. */
  backAtMs: number;
  clearedByBench: boolean;
}

const sleepUntil = (t0: number, atMs: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, t0 + atMs - performance.now())));
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '–');

/** What /metrics says, summed over the series of `name` whose labels match `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function main(): Promise<void> {
  const ports = { spot: [await freePort(), await freePort()], od: await freePort(), gw: await freePort() };
  const urls = { spot: ports.spot.map((p) => `http://127.0.0.1:${p}`), od: `http://127.0.0.1:${ports.od}` };
  const modelLine = (p: ModelPrice) => `      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: ${p.input_per_mtok}, output_per_mtok: ${p.output_per_mtok} } }\n`;
  const tiersYaml = `tiers:\n  - name: spot\n    kind: spot\n    endpoints: [${urls.spot.join(', ')}]\n    models:\n${modelLine(SPOT_PRICE)}  - name: on-demand\n    kind: on-demand\n    endpoints: [${urls.od}]\n    models:\n${modelLine(OD_PRICE)}`;
  const { tmp, env } = benchGatewayEnv('spot', urls.od, ports.gw, DATABASE_URL, tiersYaml);
  // info: the gateway's notices, ejections and continuations land in its log
  Object.assign(env, { ADMIN_TOKEN, HEALTH_CHECK_INTERVAL_MS: String(HEALTH_MS), LOG_LEVEL: 'info', NO_COLOR: '1' });
  migrate(env);
  const bench = createBenchKey(env, true);
  const logFile = path.join(tmp, 'gateway.log');
  const simLog = createWriteStream(path.join(tmp, 'sims.log'));
  const simArgs = (port: number) => ['--port', String(port), '--models', UPSTREAM, '--output-tokens', String(MAX_TOKENS), '--ttft-ms', String(TTFT_MS), '--itl-ms', String(ITL_MS)];
  const startSimProcess = (name: string, port: number) => startNode(name, SIM_MAIN, simArgs(port), env, { log: simLog });

  const spot: ChildProcess[] = urls.spot.map((_, r) => startSimProcess(`spot-${r}`, ports.spot[r]));
  const od = startSimProcess('on-demand', ports.od);
  const gateway = startNode('gateway', path.join(dist, 'apps/gateway/src/main.js'), [], env, { log: createWriteStream(logFile) });
  const gwUrl = `http://127.0.0.1:${ports.gw}`;
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  try {
    await Promise.all([...urls.spot, urls.od].map((u) => waitForUrl(`${u}/health`)));
    await waitForUrl(`${gwUrl}/readyz`, 40_000);

    const trace = preemptionTrace(seededRandom(SEED), { replicas: SPOT_REPLICAS, durationMs: DURATION_MS, uptime: UPTIME, downtimeMs: DOWNTIME_MS, noticeMs: NOTICE_MS, quietMs: QUIET_MS });
    const client = new OpenAI({ baseURL: `${gwUrl}/v1`, apiKey: bench.key, maxRetries: 0, timeout: 60_000 });
    console.log(`\nSpot: ${DURATION_MS / 1000} s, ${RATE} req/s Poisson (${(STREAM_SHARE * 100).toFixed(0)}% streamed), ${MIN_TOKENS}-${MAX_TOKENS} tokens at ${ITL_MS} ms/token after ${TTFT_MS} ms`);
    console.log(`spot tier: ${SPOT_REPLICAS} replicas up ${(UPTIME * 100).toFixed(0)}% each, ${trace.length} preemptions (${trace.filter((p) => p.noticeAtMs !== null).length} with a ${NOTICE_MS / 1000} s notice), seed ${SEED}; on-demand tier: 1 replica`);
    console.log(`${os.cpus().length} cores (${os.cpus()[0]?.model}), node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; gateway log: ${logFile}\n`);

    const t0 = performance.now();
    const epoch0 = Date.now();
    const now = () => performance.now() - t0;

    /** Polls the gateway's view of a replica until it holds no notice there and its circuit is closed. */
    const backInRotation = async (replica: number, timeoutMs: number): Promise<boolean> => {
      const deadline = performance.now() + timeoutMs;
      while (performance.now() < deadline) {
        const view = (await (await fetch(`${gwUrl}/admin/tiers`, { headers: admin })).json()) as { tiers: Array<{ name: string; endpoints: Array<{ url: string; state: string; notice: unknown }> }> };
        const e = view.tiers.find((t) => t.name === 'spot')?.endpoints.find((x) => x.url === urls.spot[replica]);
        if (e !== undefined && e.notice === null && e.state === 'closed') return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };

    const preempt = async (p: Preemption): Promise<Done> => {
      let deadlineAtMs: number | null = null;
      if (p.noticeAtMs !== null) {
        await sleepUntil(t0, p.noticeAtMs);
        const res = await fetch(`${gwUrl}/admin/tiers/spot/preempt`, { method: 'POST', headers: admin, body: JSON.stringify({ endpoint: urls.spot[p.replica], deadline_s: NOTICE_MS / 1000 }) });
        if (res.status !== 200) throw new Error(`POST /admin/tiers/spot/preempt: HTTP ${res.status} ${await res.text()}`);
        const body = (await res.json()) as { notices: Array<{ deadlineAt: string }> };
        deadlineAtMs = Date.parse(body.notices[0].deadlineAt) - epoch0;
      }
      await sleepUntil(t0, deadlineAtMs ?? p.killAtMs);
      const victim = spot[p.replica];
      const exited = new Promise((r) => victim.once('exit', r));
      victim.kill('SIGKILL');
      const killedAtMs = now();
      await exited;
      await sleepUntil(t0, killedAtMs + (p.restartAtMs - p.killAtMs));
      spot[p.replica] = startSimProcess(`spot-${p.replica}`, ports.spot[p.replica]);
      await waitForUrl(`${urls.spot[p.replica]}/health`);
      const healthyAtMs = now();
      // the gateway's rules: a failed health check past the deadline, then a good one, is the replacement
      let clearedByBench = false;
      if (!(await backInRotation(p.replica, 5 * HEALTH_MS + 5_000))) {
        clearedByBench = true;
        await fetch(`${gwUrl}/admin/tiers/spot/preempt?endpoint=${encodeURIComponent(urls.spot[p.replica])}`, { method: 'DELETE', headers: { authorization: admin.authorization } });
        await backInRotation(p.replica, 10_000);
      }
      return { ...p, deadlineAtMs, killedAtMs, healthyAtMs, backAtMs: now(), clearedByBench };
    };
    // one replica's preemptions run in order
    const byReplica = Array.from({ length: SPOT_REPLICAS }, (_, r) => trace.filter((p) => p.replica === r));
    const preemptions = Promise.all(
      byReplica.map(async (list) => {
        const done: Done[] = [];
        for (const p of list) done.push(await preempt(p));
        return done;
      }),
    ).then((d) => d.flat().sort((a, b) => a.killAtMs - b.killAtMs));

    const one = async (i: number, arrivalMs: number, stream: boolean, maxTokens: number): Promise<Outcome> => {
      const prompt = `Request ${i}: say something about spot GPUs.`;
      const o: Outcome = { i, arrivalMs, stream, maxTokens, prompt, requestId: null, ttftMs: null, totalMs: 0, maxGapMs: 0, text: '', finishes: [], usage: [], error: null };
      const start = performance.now();
      const messages = [{ role: 'user' as const, content: prompt }];
      try {
        if (stream) {
          const { data, request_id } = await client.chat.completions.create({ model: MODEL, messages, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true } }).withResponse();
          o.requestId = request_id;
          let last = 0;
          for await (const c of data) {
            const at = performance.now();
            for (const ch of c.choices) {
              if (ch.delta.content) {
                if (o.ttftMs === null) o.ttftMs = at - start;
                else o.maxGapMs = Math.max(o.maxGapMs, at - last);
                last = at;
                o.text += ch.delta.content;
              }
              if (ch.finish_reason) o.finishes.push(ch.finish_reason);
            }
            if (c.usage) o.usage.push(c.usage);
          }
        } else {
          const { data, request_id } = await client.chat.completions.create({ model: MODEL, messages, max_tokens: maxTokens }).withResponse();
          o.requestId = request_id;
          o.ttftMs = performance.now() - start;
          o.text = data.choices[0]?.message.content ?? '';
          if (data.choices[0]?.finish_reason) o.finishes.push(data.choices[0].finish_reason);
          if (data.usage) o.usage.push(data.usage);
        }
      } catch (err) {
        o.error = err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err);
      }
      o.totalMs = performance.now() - start;
      return o;
    };

    // open loop: arrivals drawn ahead of time from their own seeded stream (the trace does not move them)
    const load = seededRandom(SEED + 1);
    const pending: Array<Promise<Outcome>> = [];
    let lagMax = 0;
    for (let at = exponential(load, 1000 / RATE), i = 0; at < DURATION_MS; at += exponential(load, 1000 / RATE), i++) {
      const stream = load() < STREAM_SHARE;
      const maxTokens = MIN_TOKENS + Math.floor(load() * (MAX_TOKENS - MIN_TOKENS + 1));
      await sleepUntil(t0, at);
      lagMax = Math.max(lagMax, now() - at);
      pending.push(one(i, at, stream, maxTokens));
    }
    const outcomes = await Promise.all(pending);
    const done = await preemptions;
    const runMs = now();

    // one uninterrupted engine's answer to each request (vllm-sim is deterministic): what every client must have read
    const reference = await startSim({ models: [UPSTREAM], outputTokens: MAX_TOKENS });
    const expected = new Map<number, string>();
    try {
      const ref = new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x', maxRetries: 0 });
      for (let k = 0; k < outcomes.length; k += 32) {
        await Promise.all(
          outcomes.slice(k, k + 32).map(async (o) => {
            const c = await ref.chat.completions.create({ model: UPSTREAM, messages: [{ role: 'user', content: o.prompt }], max_tokens: o.maxTokens });
            expected.set(o.i, c.choices[0].message.content ?? '');
          }),
        );
      }
    } finally {
      await reference.close();
    }

    const metrics = await (await fetch(`${gwUrl}/metrics`)).text();
    // a graceful stop flushes the usage recorder
    await stopProcess(gateway);

    // --- the client's view ---
    type Failure = { i: number; stream: boolean; arrivalMs: number; requestId: string | null; why: string };
    const failures: Failure[] = [];
    for (const o of outcomes) {
      const why =
        o.error !== null
          ? o.error
          : o.finishes.length !== 1
            ? `${o.finishes.length} finish_reason`
            : o.usage.length !== 1
              ? `${o.usage.length} usage chunks`
              : o.text !== expected.get(o.i)
                ? `text of ${o.text.length} chars, one engine writes ${expected.get(o.i)?.length}`
                : null;
      if (why !== null) failures.push({ i: o.i, stream: o.stream, arrivalMs: o.arrivalMs, requestId: o.requestId, why });
    }
    const windows = done.map((d) => ({ fromMs: d.noticeAtMs ?? d.killedAtMs, toMs: d.backAtMs }));
    const inWindow = (o: Outcome) => windows.some((w) => o.arrivalMs >= w.fromMs && o.arrivalMs < w.toMs);
    const stats = (list: Outcome[], of: (o: Outcome) => number | null) => {
      const s = list
        .map(of)
        .filter((v): v is number => v !== null)
        .sort((a, b) => a - b);
      return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), max: s.length ? s[s.length - 1] : NaN };
    };
    const measured = outcomes.filter((o) => o.error === null && o.arrivalMs >= WARMUP_MS);
    const streams = measured.filter((o) => o.stream);
    const unary = measured.filter((o) => !o.stream);
    const ttft = {
      streamInside: stats(streams.filter(inWindow), (o) => o.ttftMs),
      streamOutside: stats(streams.filter((o) => !inWindow(o)), (o) => o.ttftMs),
      unaryInside: stats(unary.filter(inWindow), (o) => o.ttftMs),
      unaryOutside: stats(unary.filter((o) => !inWindow(o)), (o) => o.ttftMs),
      // the requests a kill without notice can reach before the gateway ejects the replica
      streamAfterSilentKill: stats(
        streams.filter((o) => done.some((d) => d.noticeAtMs === null && o.arrivalMs >= d.killedAtMs && o.arrivalMs < d.killedAtMs + SILENT_KILL_MS)),
        (o) => o.ttftMs,
      ),
    };

    // --- the bill's view: every usage row of the bench's key ---
    const { rows } = await db.query<{ request_id: string; segment: number; tier: string; status: number; prompt_tokens: number; completion_tokens: number; cached_tokens: number; cost_nanos: string }>(
      `SELECT e.request_id, e.segment, e.tier, e.status, e.prompt_tokens, e.completion_tokens, e.cached_tokens, e.cost_nanos::text
         FROM usage_events e JOIN api_keys k ON k.id = e.key_id WHERE k.prefix = $1`,
      [bench.prefix],
    );
    const byTier = new Map<string, { prompt: number; completion: number; costNanos: number; segments: number }>();
    let cost = 0;
    let atOnDemand = 0;
    for (const r of rows) {
      const t = byTier.get(r.tier) ?? { prompt: 0, completion: 0, costNanos: 0, segments: 0 };
      t.prompt += r.prompt_tokens;
      t.completion += r.completion_tokens;
      t.costNanos += Number(r.cost_nanos);
      t.segments++;
      byTier.set(r.tier, t);
      cost += Number(r.cost_nanos);
      atOnDemand += costNanos(OD_PRICE, { promptTokens: r.prompt_tokens, completionTokens: r.completion_tokens, cachedTokens: r.cached_tokens });
    }
    const completionAll = [...byTier.values()].reduce((n, t) => n + t.completion, 0);
    const spotShare = (byTier.get('spot')?.completion ?? 0) / completionAll;
    const saving = cost / atOnDemand - 1;
    // each answer billed once: the segments of a request sum to what its client was told
    const rowsOf = new Map<string, typeof rows>();
    for (const r of rows) rowsOf.set(r.request_id, [...(rowsOf.get(r.request_id) ?? []), r]);
    let billMismatches = 0;
    let continued = 0;
    for (const o of outcomes) {
      if (o.requestId === null || o.usage.length !== 1) continue;
      const mine = (rowsOf.get(o.requestId) ?? []).sort((a, b) => a.segment - b.segment);
      if (mine.length > 1) continued++;
      const completion = mine.reduce((n, r) => n + r.completion_tokens, 0);
      const prompt = mine.reduce((n, r) => n + r.prompt_tokens, 0);
      if (completion !== o.usage[0].completion_tokens || prompt !== o.usage[0].prompt_tokens || mine.some((r, k) => r.segment !== k)) billMismatches++;
    }
    // the seam a continued stream shows its client: the longest wait between two deltas
    const wasContinued = (o: Outcome) => o.requestId !== null && (rowsOf.get(o.requestId)?.length ?? 0) > 1;
    const seams = { continued: stats(streams.filter(wasContinued), (o) => o.maxGapMs), others: stats(streams.filter((o) => !wasContinued(o)), (o) => o.maxGapMs) };
    const continuations = {
      continued: metricSum(metrics, 'gateway_stream_continuations_total', { outcome: 'continued' }),
      closed: metricSum(metrics, 'gateway_stream_continuations_total', { outcome: 'closed' }),
      notContinued: metricSum(metrics, 'gateway_stream_continuations_total') - metricSum(metrics, 'gateway_stream_continuations_total', { outcome: 'continued' }) - metricSum(metrics, 'gateway_stream_continuations_total', { outcome: 'closed' }),
      deadlines: metricSum(metrics, 'gateway_preemption_deadlines_total'),
      retries: metricSum(metrics, 'gateway_upstream_retries_total'),
    };
    const downMs = Array.from({ length: SPOT_REPLICAS }, (_, r) => done.filter((d) => d.replica === r).reduce((n, d) => n + (d.healthyAtMs - d.killedAtMs), 0));
    const uptimeSeen = downMs.map((d) => 1 - d / runMs);

    const row = (label: string, value: string, note = '') => console.log(`${label.padEnd(56)} ${value.padStart(16)}  ${note}`);
    row('requests (streamed / unary)', `${outcomes.filter((o) => o.stream).length} / ${outcomes.filter((o) => !o.stream).length}`, `open loop, generator lag max ${fmt(lagMax)} ms`);
    row('preemptions (with notice / without)', `${done.filter((d) => d.noticeAtMs !== null).length} / ${done.filter((d) => d.noticeAtMs === null).length}`, `spot uptime seen ${uptimeSeen.map((u) => `${(u * 100).toFixed(1)}%`).join(', ')}`);
    row('notices the bench had to clear', String(done.filter((d) => d.clearedByBench).length), 'the rest: cleared by the gateway when the replacement answered');
    row('client-visible failures', String(failures.length), 'goal 0: errors, streams without one finish + one usage, wrong text');
    row('share of completion tokens served on spot', `${(spotShare * 100).toFixed(1)}%`, `${byTier.get('spot')?.completion ?? 0} of ${completionAll}`);
    row('streams continued on another engine', String(continued), `gateway: ${continuations.continued} continued, ${continuations.closed} closed, ${continuations.notContinued} not; ${continuations.deadlines} deadlines; ${continuations.retries} retries`);
    row('usage: requests billed other than their client was told', String(billMismatches), `${rows.length} rows`);
    row('stream TTFT P50 / P95, arrived in a preemption window', `${fmt(ttft.streamInside.p50)} / ${fmt(ttft.streamInside.p95)} ms`, `n=${ttft.streamInside.n}`);
    row('stream TTFT P50 / P95, arrived outside', `${fmt(ttft.streamOutside.p50)} / ${fmt(ttft.streamOutside.p95)} ms`, `n=${ttft.streamOutside.n}`);
    row('added stream TTFT P95 in a preemption window', `${fmt(ttft.streamInside.p95 - ttft.streamOutside.p95)} ms`);
    row(`stream TTFT P50 / P95, <= ${SILENT_KILL_MS / 1000} s after an unnoticed kill`, `${fmt(ttft.streamAfterSilentKill.p50)} / ${fmt(ttft.streamAfterSilentKill.p95)} ms`, `n=${ttft.streamAfterSilentKill.n}`);
    row('unary latency P95 in a window / outside', `${fmt(ttft.unaryInside.p95)} / ${fmt(ttft.unaryOutside.p95)} ms`, `n=${ttft.unaryInside.n} / ${ttft.unaryOutside.n}`);
    row('longest gap between deltas, continued streams P95', `${fmt(seams.continued.p95)} ms`, `n=${seams.continued.n}, max ${fmt(seams.continued.max)} ms; other streams P95 ${fmt(seams.others.p95)} ms`);
    row('cost of the run (usage cost_nanos)', `$${(cost / 1e9).toFixed(6)}`, `spot priced at ${RATIO} x on-demand`);
    row('same tokens at on-demand prices', `$${(atOnDemand / 1e9).toFixed(6)}`);
    row('cost against all on-demand', `${(saving * 100).toFixed(1)}%`, `SkyServe SpotHedge reports ${(SKYSERVE_SPOTHEDGE * 100).toFixed(0)}% (cloud cost of replicas, not a token bill)`);
    console.log(
      `\nNotes: a preemption window runs from the notice (or the kill) until the replacement is back in rotation. The cost is the customer's bill (price book per tier), so its best case is the spot price ratio (${((RATIO - 1) * 100).toFixed(0)}% here at 100% on spot); SkyServe's -43% is what SpotHedge saves on cloud instances over on-demand replicas at its availability target, a different quantity. Shared, noisy machine: latencies include waits for a core.`,
    );
    if (failures.length > 0) {
      console.log(`\nfailures (first 20 of ${failures.length}):`);
      for (const f of failures.slice(0, 20)) console.log(`  #${f.i} ${f.stream ? 'stream' : 'unary '} at ${(f.arrivalMs / 1000).toFixed(2)} s ${f.requestId ?? '(no request id)'}: ${f.why}`);
      const log = readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
      console.log(`\ngateway log (${log.length} lines, last 20): ${logFile}`);
      for (const l of log.slice(-20)) console.log(`  ${l.slice(0, 300)}`);
    }

    const result = {
      bench: 'spot',
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: os.loadavg() },
      params: { durationS: DURATION_MS / 1000, rate: RATE, streamShare: STREAM_SHARE, uptime: UPTIME, downtimeS: DOWNTIME_MS / 1000, noticeS: NOTICE_MS / 1000, quietS: QUIET_MS / 1000, warmupS: WARMUP_MS / 1000, tokens: [MIN_TOKENS, MAX_TOKENS], ttftMs: TTFT_MS, itlMs: ITL_MS, healthCheckMs: HEALTH_MS, seed: SEED, spotReplicas: SPOT_REPLICAS, onDemandReplicas: 1, prices: { spot: SPOT_PRICE, onDemand: OD_PRICE } },
      preemptions: done,
      uptimeSeen,
      requests: { total: outcomes.length, streamed: outcomes.filter((o) => o.stream).length, generatorLagMaxMs: lagMax },
      failures,
      tokens: { byTier: Object.fromEntries(byTier), spotShare },
      ttftMs: ttft,
      maxGapMs: seams,
      continuations: { ...continuations, requestsWithSegments: continued },
      usage: { rows: rows.length, billMismatches },
      cost: { nanos: cost, atOnDemandNanos: atOnDemand, againstOnDemand: saving, skyServeSpotHedge: SKYSERVE_SPOTHEDGE },
      gatewayLog: logFile,
    };
    const outDir = path.join(root, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `spot-${result.date.slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nwrote ${path.relative(root, file)}`);
    if (!values['keep-usage']) console.log(`removed the bench key's ${await deleteUsageEvents(db, bench.prefix)} usage events (--keep-usage keeps them)`);
  } finally {
    await db.end();
    await Promise.all([stopProcess(gateway), ...spot.map((c) => stopProcess(c)), stopProcess(od)]);
    simLog.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
