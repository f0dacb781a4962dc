/**
 * Gateway overhead: open-loop streaming load at a fixed rate, alternating requests sent straight to
 * vllm-sim and through the gateway (auth, rate limits and usage recording on), each in its own process.
 * Prints P50/P95/P99 of time to first byte and of total time for both paths and their difference, the event-loop
 * delay of the gateway process after warm-up (P50/P99/max, sampled inside that process by a preloaded probe:
 * bench/support/loop-delay-probe.ts), and writes bench/results/overhead-<date>.json.
 *
 *   npm run bench:overhead -- [--rate 200] [--duration 20] [--warmup 3] [--tokens 16] [--limits on|off] [--via gateway|naive]
 *                            [--api chat|messages|responses]
 *                            [--gateway-main other-build/dist/apps/gateway/src/main.js] [--out file.json] [--otel on|URL]
 *
 * `--api responses` streams POST /v1/responses instead of chat (stored, as OpenAI's default `store: true`: the
 * gateway writes each Response to Postgres after its last byte).
 *
 * `--otel on` turns the gateway's tracing on, exporting to an OTLP sink in this process (bench/support/otlp-sink.ts:
 * counts, decodes nothing); `--otel URL` exports to that collector instead. Off (the default) is the gateway as
 * deployed without OTEL_EXPORTER_OTLP_ENDPOINT.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Pool } from 'undici';
import { benchGatewayEnv, cli, migrate } from './support/bench-org';
import { freePort, percentile as pct, startNode, waitForPort, waitForUrl } from './support/child-processes';
import { type LoopDelay, LOOP_DELAY_RESOLUTION_MS, loopDelay } from './support/loop-delay';
import { type OtlpSink, startOtlpSink } from './support/otlp-sink';

const root = path.resolve(__dirname, '../..');
const dist = path.join(root, 'dist');
const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '200' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '16' },
    /** Writes a V8 CPU profile of the gateway process into this folder. */
    'profile-gateway': { type: 'string' },
    /** on (default): the key has RPM/TPM limits, so the Redis check runs on every request. */
    limits: { type: 'string', default: 'on' },
    /** gateway (default), or naive: a bare undici pass-through (bench/naive-proxy.ts), to calibrate the machine. */
    via: { type: 'string', default: 'gateway' },
    /** Another build's gateway (e.g. a checkout of the previous commit's dist/apps/gateway/src/main.js), for before/after. */
    'gateway-main': { type: 'string' },
    /** chat (default): /v1/chat/completions; messages: Anthropic's /v1/messages (x-api-key), the same load. */
    /** Where to write the JSON results (default bench/results/overhead[-naive]-<date>.json). */
    out: { type: 'string' },
    /** chat (default) or responses: the API streamed. */
    api: { type: 'string', default: 'chat' },
    /** on: tracing on, exported to an OTLP sink in this process; a URL: to that collector; off (default). */
    otel: { type: 'string', default: 'off' },
  },
});
const RATE = Number(values.rate);
const DURATION_S = Number(values.duration);
const WARMUP_S = Number(values.warmup);
const TOKENS = Number(values.tokens);
if (values.api !== 'chat' && values.api !== 'messages' && values.api !== 'responses') throw new Error(`--api: expected chat, messages or responses, got ${values.api}`);
const MESSAGES = values.api === 'messages';
const RESPONSES = values.api === 'responses';
const API_PATH = MESSAGES ? '/v1/messages' : RESPONSES ? '/v1/responses' : '/v1/chat/completions';
/** How each API ends a stream cleanly. */
const STREAM_END = MESSAGES ? 'event: message_stop\ndata: {"type":"message_stop"}\n\n' : 'data: [DONE]\n\n';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference';

/**
 * CPU time (user + system) a process has used so far, in ms, from /proc (Linux): what the gateway's work costs,
 * whatever else the machine runs meanwhile (latencies on a loaded machine mostly measure the wait for a core).
 */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime: fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux)
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

interface Sample {
  target: 'direct' | 'gateway';
  at: number;
  ttfb: number;
  total: number;
  ok: boolean;
}

async function main(): Promise<void> {
  const simPort = await freePort();
  const gwPort = await freePort();
  const { env } = benchGatewayEnv('overhead', `http://127.0.0.1:${simPort}`, gwPort, DATABASE_URL);
  const otelSink: OtlpSink | null = values.otel === 'on' ? await startOtlpSink() : null;
  delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (values.otel !== 'off') env.OTEL_EXPORTER_OTLP_ENDPOINT = otelSink?.url ?? values.otel;
  migrate(env);
  const slug = `bench-${randomUUID().slice(0, 8)}`;
  cli(['org', 'create', slug], env);
  // limits on (default): high enough never to refuse, so the limiter runs on every request without refusing
  const limits = values.limits === 'off' ? [] : ['--rpm', '100000000', '--tpm', '2000000000'];
  const key = cli(['key', 'create', '--org', slug, '--name', 'bench', ...limits], env);
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();

  const sim = startNode('sim', path.join(dist, 'apps/vllm-sim/src/main.js'), ['--port', String(simPort), '--models', 'bench-upstream', '--output-tokens', String(TOKENS)], env);
  const profileDir = values['profile-gateway'];
  const naive = values.via === 'naive';
  // the probe samples the proxy's own event loop, inside its process
  const startOptions = { nodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [], probeLoop: true };
  const gateway = naive
    ? startNode('naive', path.join(dist, 'bench/naive-proxy.js'), [String(gwPort), `http://127.0.0.1:${simPort}`, 'bench-upstream'], env, startOptions)
    : startNode('gateway', values['gateway-main'] ?? path.join(dist, 'apps/gateway/src/main.js'), [], env, startOptions);
  try {
    await waitForUrl(`http://127.0.0.1:${simPort}/health`);
    if (naive) await waitForPort(gwPort);
    else await waitForUrl(`http://127.0.0.1:${gwPort}/readyz`);

    const direct = new Pool(`http://127.0.0.1:${simPort}`, { connections: 128 });
    const viaGateway = new Pool(`http://127.0.0.1:${gwPort}`, { connections: 128 });
    const bodyFor = (model: string) =>
      RESPONSES
        ? JSON.stringify({ model, input: 'Say something about GPUs.', stream: true, max_output_tokens: TOKENS })
        : JSON.stringify({ model, messages: [{ role: 'user', content: 'Say something about GPUs.' }], stream: true, max_tokens: TOKENS });
    const ended = (text: string) => (RESPONSES ? text.includes('event: response.completed\n') : text.endsWith(STREAM_END));
    const directBody = bodyFor('bench-upstream');
    const gatewayBody = bodyFor('bench-model');
    const headers: Record<string, string> = MESSAGES
      ? { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' }
      : { 'content-type': 'application/json', authorization: `Bearer ${key}` };

    const one = async (target: Sample['target'], due: number): Promise<Sample> => {
      const pool = target === 'direct' ? direct : viaGateway;
      // from the scheduled time when late (open loop: no coordinated omission), from the send when a timer fired early
      const scheduled = Math.max(due, performance.now());
      let ttfb = 0;
      try {
        const res = await pool.request({ method: 'POST', path: API_PATH, headers, body: target === 'direct' ? directBody : gatewayBody });
        let text = '';
        for await (const chunk of res.body) {
          if (ttfb === 0) ttfb = performance.now() - scheduled;
          text += chunk;
        }
        return { target, at: due, ttfb, total: performance.now() - scheduled, ok: res.statusCode === 200 && ended(text) };
      } catch {
        return { target, at: due, ttfb, total: performance.now() - scheduled, ok: false };
      }
    };

    const total = Math.round(RATE * (DURATION_S + WARMUP_S));
    const interval = 1000 / RATE;
    const t0 = performance.now() + 50;
    // the event-loop window starts when the warm-up ends, as the measured samples do
    let loopReset: Promise<LoopDelay> | null = null;
    let cpuAtWarmup = Number.NaN;
    const warmupTimer = setTimeout(() => {
      cpuAtWarmup = cpuMs(gateway.pid);
      loopReset = loopDelay(gateway, true);
    }, t0 + WARMUP_S * 1000 - performance.now());
    const pending: Promise<Sample>[] = [];
    let maxLag = 0;
    for (let i = 0; i < total; i++) {
      const scheduled = t0 + i * interval;
      const wait = scheduled - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      maxLag = Math.max(maxLag, performance.now() - scheduled);
      // latency counts from the scheduled time (open loop: no coordinated omission)
      pending.push(one(i % 2 === 0 ? 'direct' : 'gateway', scheduled));
    }
    const all = await Promise.all(pending);
    const cpuAtEnd = cpuMs(gateway.pid);
    clearTimeout(warmupTimer);
    if (loopReset === null) await loopDelay(gateway, true);
    else await loopReset;
    const gatewayLoop = await loopDelay(gateway);
    const samples = all.filter((s) => s.at >= t0 + WARMUP_S * 1000);
    if (process.env.BENCH_DUMP) writeFileSync(process.env.BENCH_DUMP, JSON.stringify(samples.map((x) => ({ ...x, at: x.at - t0 }))));
    await direct.close();
    await viaGateway.close();

    const stats = (target: Sample['target']) => {
      const mine = samples.filter((s) => s.target === target);
      const ok = mine.filter((s) => s.ok);
      const ttfb = ok.map((s) => s.ttfb).sort((a, b) => a - b);
      const tot = ok.map((s) => s.total).sort((a, b) => a - b);
      return {
        requests: mine.length,
        errors: mine.length - ok.length,
        ttfb: { p50: pct(ttfb, 50), p95: pct(ttfb, 95), p99: pct(ttfb, 99) },
        total: { p50: pct(tot, 50), p95: pct(tot, 95), p99: pct(tot, 99) },
      };
    };
    const d = stats('direct');
    const g = stats('gateway');
    const gatewayCpuUsPerRequest = ((cpuAtEnd - cpuAtWarmup) * 1000) / g.requests;
    const diff = {
      ttfb: { p50: g.ttfb.p50 - d.ttfb.p50, p95: g.ttfb.p95 - d.ttfb.p95, p99: g.ttfb.p99 - d.ttfb.p99 },
      total: { p50: g.total.p50 - d.total.p50, p95: g.total.p95 - d.total.p95, p99: g.total.p99 - d.total.p99 },
    };

    const f = (n: number) => n.toFixed(2).padStart(8);
    const rows = [
      ['direct', d],
      ['gateway', g],
    ] as const;
    console.log(`\n${naive ? 'Naive pass-through (calibration)' : 'Gateway'} overhead: ${RATE} req/s open loop, ${DURATION_S} s measured after ${WARMUP_S} s warm-up, streaming ${TOKENS} tokens on ${API_PATH}; ms`);
    console.log(`generator lag max ${maxLag.toFixed(1)} ms; ${os.cpus().length} cores, node ${process.version}; tracing ${values.otel === 'off' ? 'off' : `on (${env.OTEL_EXPORTER_OTLP_ENDPOINT})`}\n`);
    console.log('path        reqs  errs  ttfb p50  ttfb p95  ttfb p99  total p50 total p95 total p99');
    for (const [name, s] of rows) {
      console.log(
        `${name.padEnd(9)} ${String(s.requests).padStart(6)} ${String(s.errors).padStart(5)} ${f(s.ttfb.p50)}  ${f(s.ttfb.p95)}  ${f(s.ttfb.p99)}  ${f(s.total.p50)}  ${f(s.total.p95)}  ${f(s.total.p99)}`,
      );
    }
    console.log(
      `added     ${''.padStart(6)} ${''.padStart(5)} ${f(diff.ttfb.p50)}  ${f(diff.ttfb.p95)}  ${f(diff.ttfb.p99)}  ${f(diff.total.p50)}  ${f(diff.total.p95)}  ${f(diff.total.p99)}`,
    );
    console.log(
      `\nevent-loop delay of the ${naive ? 'naive proxy' : 'gateway'} process after warm-up: p50 ${gatewayLoop.p50.toFixed(2)} ms, p99 ${gatewayLoop.p99.toFixed(2)} ms, max ${gatewayLoop.max.toFixed(2)} ms (${gatewayLoop.samples} samples, one per ${LOOP_DELAY_RESOLUTION_MS} ms)`,
    );

    console.log(`CPU of the ${naive ? 'naive proxy' : 'gateway'} process after warm-up: ${gatewayCpuUsPerRequest.toFixed(0)} µs per request it proxied (user + system, /proc)`);

    // graceful stop flushes usage: every gateway request must be in usage_events
    gateway.kill('SIGTERM');
    await new Promise((r) => gateway.once('exit', r));
    const { rows: counted } = await db.query<{ n: string }>(
      'SELECT count(*)::text AS n FROM usage_events e JOIN api_keys k ON k.id = e.key_id WHERE k.prefix = $1',
      [key.split('-').slice(0, 3).join('-')],
    );
    const gatewaySent = Math.floor(total / 2);
    if (!naive) console.log(`\nusage events recorded: ${counted[0].n} of ${gatewaySent} gateway requests (warm-up included)`);
    if (otelSink !== null) console.log(`spans exported to the OTLP sink: ${otelSink.counts.requests} requests, ${(otelSink.counts.bytes / 1024).toFixed(0)} KiB`);

    const result = {
      bench: 'overhead',
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      params: { api: values.api, via: values.via, otel: values.otel, gatewayMain: values['gateway-main'] ?? null, rate: RATE, durationS: DURATION_S, warmupS: WARMUP_S, tokens: TOKENS, stream: true, limits: !naive && values.limits !== 'off', usageRecording: !naive },
      generatorMaxLagMs: maxLag,
      direct: d,
      gateway: g,
      addedMs: diff,
      gatewayLoopDelayMs: gatewayLoop,
      gatewayCpuUsPerRequest,
      usageEvents: naive ? null : { recorded: Number(counted[0].n), expected: gatewaySent },
      otlpSink: otelSink === null ? null : otelSink.counts,
    };
    const outDir = path.join(root, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = values.out ? path.resolve(values.out) : path.join(outDir, `overhead${naive ? '-naive' : ''}${values.otel !== 'off' ? '-otel' : ''}${MESSAGES ? '-messages' : ''}${RESPONSES ? '-responses' : ''}-${result.date.slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${path.relative(root, file)}`);
  } finally {
    await db.end();
    await otelSink?.close();
    sim.kill('SIGTERM');
    if (gateway.exitCode === null) gateway.kill('SIGTERM');
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
