/**
 * Capacity: closed-loop throughput of vllm-sim straight (direct), behind a bare undici proxy (bare:
 * bench/naive-proxy.ts) and behind the gateway (auth, rate limits and usage recording on; a spawned built process
 * over the real Postgres and Redis), measured with wrk in one run, rounds interleaved. Prints req/s, errors and
 * the ratios gateway/bare and bare/direct, then counts the gateway's usage events in Postgres against the answers
 * wrk completed. `--soak N` then runs the gateway at `--rate` (a fraction) of the capacity just measured for N s,
 * sampling its RSS every 5 s. Writes bench/results/capacity[-soak]-<date>.json.
 *
 *   npm run bench:capacity -- [--duration 10] [--repeat 2] [--connections 32] [--warmup 2] [--tokens 16]
 *                             [--threads 1] [--soak 300 --rate 0.8] [--procs N] [--keep-usage] [--profile DIR]
 *                             [--gateway-node-args=--max-semi-space-size=64]
 *
 * Uses DATABASE_URL (default: the dev database) and REDIS_URL. wrk comes from Debian (installed with apt-get
 * when missing and root). `--procs N` sets GATEWAY_PROCESSES=N for the gateway; any GATEWAY_* variable in the
 * environment reaches it as is. `--profile DIR` runs the gateway and the bare proxy under `node --cpu-prof` (profiles in
 * DIR/gateway and DIR/bare, one per process) and prints where their CPU went during the measured rounds, by
 * component and by function (bench/support/cpu-profile.ts). Each proxy's event-loop delay and garbage collections
 * are sampled inside it by a preloaded probe (for a multi-process gateway: its primary only).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { benchGatewayEnv, countUsageEvents, createBenchKey, deleteUsageEvents, migrate } from './support/bench-org';
import { freePort, startNode, stopProcess, treeCpuSeconds, treeRss, waitForPort, waitForUrl } from './support/child-processes';
import { formatProfileSummary, type ProfileSummary, type ProfileWindow, summarizeProfiles } from './support/cpu-profile';
import { type LoopDelay, loopDelay } from './support/loop-delay';
import { type WrkResult, ensureWrk, runWrk, writeWrkScript } from './support/wrk';

const root = path.resolve(__dirname, '../..');
const dist = path.join(root, 'dist');
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    repeat: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    warmup: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '16' },
    threads: { type: 'string', default: '1' },
    soak: { type: 'string', default: '0' },
    rate: { type: 'string', default: '0.8' },
    procs: { type: 'string' },
    'keep-usage': { type: 'boolean', default: false },
    profile: { type: 'string' },
    'gateway-node-args': { type: 'string', default: '' },
  },
});
const DURATION_S = Number(values.duration);
const REPEAT = Number(values.repeat);
const CONNECTIONS = Number(values.connections);
const WARMUP_S = Number(values.warmup);
const TOKENS = Number(values.tokens);
const THREADS = Number(values.threads);
const SOAK_S = Number(values.soak);
const SOAK_RATE = Number(values.rate);
const RSS_EVERY_MS = 5_000;
const PROFILE_DIR = values.profile === undefined ? null : path.resolve(values.profile);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference';
for (const [name, v] of Object.entries({ DURATION_S, REPEAT, CONNECTIONS, THREADS, TOKENS })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name.toLowerCase().replace('_s', '')} must be a positive integer`);
}
if (!(SOAK_RATE > 0 && SOAK_RATE <= 1)) throw new Error('--rate is a fraction of the measured capacity, in (0, 1]');

type Target = 'direct' | 'bare' | 'gateway';
const TARGETS: Target[] = ['direct', 'bare', 'gateway'];

interface Run {
  target: Target;
  round: number;
  wrk: WrkResult;
  reqPerS: number;
  /** CPU the serving process used per second of the run (1 = one core): the sim for direct, the proxy otherwise. */
  cpuCores: number;
  rssBytes: number;
  loopDelayMs: LoopDelay | null;
}

const mib = (b: number) => b / 1024 / 1024;
const errorsOf = (w: WrkResult) => w.status + w.connect + w.read + w.write + w.timeout;

async function main(): Promise<void> {
  const wrk = ensureWrk();
  const [simPort, barePort, gwPort] = [await freePort(), await freePort(), await freePort()];
  const simUrl = `http://127.0.0.1:${simPort}`;
  const { tmp, env } = benchGatewayEnv('capacity', simUrl, gwPort, DATABASE_URL);
  if (values.procs !== undefined) env.GATEWAY_PROCESSES = values.procs;
  migrate(env);
  const bench = createBenchKey(env, true);
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();

  // the sim's defaults: no time to first token, no time between tokens: the whole stream is written at once
  const sim = startNode('sim', path.join(dist, 'apps/vllm-sim/src/main.js'), ['--port', String(simPort), '--models', 'bench-upstream', '--output-tokens', String(TOKENS)], env);
  const profileArgs = (name: string) => (PROFILE_DIR === null ? [] : ['--cpu-prof', '--cpu-prof-dir', path.join(PROFILE_DIR, name)]);
  if (PROFILE_DIR !== null) for (const name of ['gateway', 'bare']) rmSync(path.join(PROFILE_DIR, name), { recursive: true, force: true });
  const bare = startNode('bare', path.join(dist, 'bench/naive-proxy.js'), [String(barePort), simUrl, 'bench-upstream'], env, { probeLoop: true, nodeArgs: profileArgs('bare') });
  const gatewayNodeArgs = (values['gateway-node-args'] ?? '').split(/\s+/).filter(Boolean);
  const gateway = startNode('gateway', path.join(dist, 'apps/gateway/src/main.js'), [], env, { probeLoop: true, nodeArgs: [...gatewayNodeArgs, ...profileArgs('gateway')] });
  /** The measured rounds of each proxy, on the clock V8 stamps profile samples with. */
  const windows: Record<Target, ProfileWindow[]> = { direct: [], bare: [], gateway: [] };
  const nowUs = () => Number(process.hrtime.bigint() / 1000n);
  try {
    await Promise.all([waitForUrl(`${simUrl}/health`), waitForPort(barePort), waitForUrl(`http://127.0.0.1:${gwPort}/readyz`)]);
    const servers: Record<Target, { port: number; pid: number; model: string }> = {
      direct: { port: simPort, pid: sim.pid!, model: 'bench-upstream' },
      bare: { port: barePort, pid: bare.pid!, model: 'bench-model' },
      gateway: { port: gwPort, pid: gateway.pid!, model: 'bench-model' },
    };
    // the same request everywhere (the bare proxy renames the model, as the gateway does); only the gateway reads the key
    const script = (target: Target, rate: number) => {
      const file = path.join(tmp, `${target}-${rate}.lua`);
      const body = JSON.stringify({ model: servers[target].model, messages: [{ role: 'user', content: 'Say something about GPUs.' }], stream: true, max_tokens: TOKENS });
      writeWrkScript(file, { body, headers: { 'content-type': 'application/json', authorization: `Bearer ${bench.key}` }, rate, threads: THREADS });
      return file;
    };
    const url = (target: Target) => `http://127.0.0.1:${servers[target].port}/v1/chat/completions`;
    let gatewayAnswers = 0;
    let gatewayCut = 0;
    const wrkRun = async (target: Target, durationS: number, rate = 0) => {
      const w = await runWrk(wrk, { url: url(target), script: script(target, rate), connections: CONNECTIONS, threads: THREADS, durationS });
      if (target === 'gateway') {
        gatewayAnswers += w.good;
        // requests in flight when wrk stops are cut by the client; the gateway may record them too
        gatewayCut += CONNECTIONS;
      }
      return w;
    };

    console.log(`\nCapacity: closed loop, ${CONNECTIONS} connections, wrk -t${THREADS}, ${REPEAT} x ${DURATION_S} s per path (interleaved) after ${WARMUP_S} s warm-up each; streaming ${TOKENS} tokens`);
    console.log(`${os.cpus().length} cores (${os.cpus()[0]?.model}), node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
    for (const t of TARGETS) await wrkRun(t, WARMUP_S);

    const runs: Run[] = [];
    console.log('round path       req/s   non-2xx socket-err bad-stream  p50 ms  p99 ms  cpu cores  rss MiB  loop p99 ms  loop max ms  gc minor/major  gc pause %');
    for (let round = 1; round <= REPEAT; round++) {
      // rotate the order each round so no path always runs first (or right after the gateway's flushes)
      const order = TARGETS.map((_, i) => TARGETS[(i + round - 1) % TARGETS.length]);
      for (const target of order) {
        const pid = servers[target].pid;
        const probed = target === 'gateway' ? gateway : target === 'bare' ? bare : null;
        if (probed !== null) await loopDelay(probed, true);
        const cpu0 = treeCpuSeconds(pid);
        const from = nowUs();
        const w = await wrkRun(target, DURATION_S);
        windows[target].push({ fromUs: from, toUs: nowUs() });
        const seconds = w.durationUs / 1e6;
        const run: Run = {
          target,
          round,
          wrk: w,
          reqPerS: w.requests / seconds,
          cpuCores: (treeCpuSeconds(pid) - cpu0) / seconds,
          rssBytes: treeRss(pid),
          loopDelayMs: probed !== null ? await loopDelay(probed, true) : null,
        };
        runs.push(run);
        console.log(
          `${String(round).padStart(5)} ${target.padEnd(8)} ${run.reqPerS.toFixed(0).padStart(7)} ${String(w.status).padStart(9)} ${String(w.connect + w.read + w.write + w.timeout).padStart(10)} ${String(w.bad - w.status).padStart(10)} ${(w.latencyP50Us / 1000).toFixed(2).padStart(7)} ${(w.latencyP99Us / 1000).toFixed(2).padStart(7)} ${run.cpuCores.toFixed(2).padStart(10)} ${mib(run.rssBytes).toFixed(0).padStart(8)} ${run.loopDelayMs ? run.loopDelayMs.p99.toFixed(2).padStart(12) : ''.padStart(12)} ${run.loopDelayMs ? run.loopDelayMs.max.toFixed(2).padStart(12) : ''.padStart(12)} ${run.loopDelayMs?.gc ? `${run.loopDelayMs.gc.minor}/${run.loopDelayMs.gc.major}`.padStart(15) : ''.padStart(15)} ${run.loopDelayMs?.gc ? ((run.loopDelayMs.gc.pauseMs / (seconds * 1000)) * 100).toFixed(1).padStart(11) : ''}`,
        );
      }
    }

    const summary = Object.fromEntries(
      TARGETS.map((t) => {
        const mine = runs.filter((r) => r.target === t);
        const requests = mine.reduce((n, r) => n + r.wrk.requests, 0);
        const seconds = mine.reduce((n, r) => n + r.wrk.durationUs / 1e6, 0);
        return [t, { reqPerS: requests / seconds, requests, errors: mine.reduce((n, r) => n + errorsOf(r.wrk), 0), badStreams: mine.reduce((n, r) => n + r.wrk.bad, 0), runsReqPerS: mine.map((r) => r.reqPerS) }];
      }),
    ) as Record<Target, { reqPerS: number; requests: number; errors: number; badStreams: number; runsReqPerS: number[] }>;
    const ratios = { gatewayToBare: summary.gateway.reqPerS / summary.bare.reqPerS, bareToDirect: summary.bare.reqPerS / summary.direct.reqPerS };
    console.log('\npath       req/s (all rounds)  errors  bad streams');
    for (const t of TARGETS) console.log(`${t.padEnd(8)} ${summary[t].reqPerS.toFixed(0).padStart(19)} ${String(summary[t].errors).padStart(7)} ${String(summary[t].badStreams).padStart(12)}`);
    console.log(`\ngateway / bare  ${ratios.gatewayToBare.toFixed(3)}   (target >= 0.9 at ${CONNECTIONS} connections: ${ratios.gatewayToBare >= 0.9 ? 'met' : 'MISSED'})`);
    console.log(`bare / direct   ${ratios.bareToDirect.toFixed(3)}`);

    let soak: Record<string, unknown> | null = null;
    if (SOAK_S > 0) {
      const rate = SOAK_RATE * summary.gateway.reqPerS;
      console.log(`\nSoak: gateway at ${(SOAK_RATE * 100).toFixed(0)}% of ${summary.gateway.reqPerS.toFixed(0)} req/s = ${rate.toFixed(0)} req/s for ${SOAK_S} s; RSS every ${RSS_EVERY_MS / 1000} s`);
      const rss: Array<{ atS: number; bytes: number }> = [];
      const t0 = Date.now();
      const sample = () => rss.push({ atS: (Date.now() - t0) / 1000, bytes: treeRss(gateway.pid!) });
      await loopDelay(gateway, true);
      sample();
      const timer = setInterval(sample, RSS_EVERY_MS);
      const cpu0 = treeCpuSeconds(gateway.pid!);
      let w: WrkResult;
      try {
        w = await wrkRun('gateway', SOAK_S, rate);
      } finally {
        clearInterval(timer);
      }
      sample();
      const seconds = w.durationUs / 1e6;
      const first = rss[0].bytes;
      const last = rss[rss.length - 1].bytes;
      const max = Math.max(...rss.map((s) => s.bytes));
      const drift = (last - first) / first;
      const delay = await loopDelay(gateway, true);
      soak = {
        durationS: SOAK_S,
        targetReqPerS: rate,
        reqPerS: w.requests / seconds,
        errors: errorsOf(w),
        badStreams: w.bad,
        latencyP50Ms: w.latencyP50Us / 1000,
        latencyP99Ms: w.latencyP99Us / 1000,
        cpuCores: (treeCpuSeconds(gateway.pid!) - cpu0) / seconds,
        loopDelayMs: delay,
        rss: { firstBytes: first, lastBytes: last, maxBytes: max, drift, samples: rss },
      };
      console.log(`achieved ${(w.requests / seconds).toFixed(0)} req/s, errors ${errorsOf(w)}, bad streams ${w.bad}, p99 ${(w.latencyP99Us / 1000).toFixed(2)} ms, loop delay p99 ${delay.p99.toFixed(2)} ms`);
      console.log(`RSS first ${mib(first).toFixed(1)} MiB, last ${mib(last).toFixed(1)} MiB, max ${mib(max).toFixed(1)} MiB: drift ${(drift * 100).toFixed(1)}% (target within 10%: ${Math.abs(drift) <= 0.1 ? 'met' : 'MISSED'})`);
    }

    // a graceful stop flushes the recorder: every answer the gateway completed must now be a row
    await stopProcess(gateway);
    const usage = await countUsageEvents(db, bench.prefix);
    const missing = Math.max(0, gatewayAnswers - usage.ok);
    console.log(
      `\nusage events in Postgres: ${usage.ok} for status 200 (${usage.all} in all) for ${gatewayAnswers} complete answers wrk got from the gateway (warm-up${SOAK_S > 0 ? ' and soak' : ''} included; up to ${gatewayCut} more were cut in flight when wrk stopped): ${missing === 0 ? 'none missing' : `${missing} MISSING`}`,
    );

    let profiles: Record<'gateway' | 'bare', ProfileSummary> | null = null;
    if (PROFILE_DIR !== null) {
      // profiles are written when a process exits
      await stopProcess(bare);
      profiles = { gateway: summarizeProfiles(path.join(PROFILE_DIR, 'gateway'), windows.gateway), bare: summarizeProfiles(path.join(PROFILE_DIR, 'bare'), windows.bare) };
      console.log(`\nCPU profiles (${PROFILE_DIR}); shares of each proxy's own busy CPU during its measured rounds. Other work on the machine changes the absolute figures, far less the shares.\n`);
      console.log(formatProfileSummary('gateway', profiles.gateway));
      console.log('');
      console.log(formatProfileSummary('bare proxy', profiles.bare));
    }

    const result = {
      bench: 'capacity',
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: os.loadavg() },
      params: { tool: 'wrk', threads: THREADS, connections: CONNECTIONS, durationS: DURATION_S, repeat: REPEAT, warmupS: WARMUP_S, tokens: TOKENS, stream: true, auth: true, limits: true, usageRecording: true, gatewayProcesses: env.GATEWAY_PROCESSES ?? null, gatewayNodeArgs },
      runs,
      summary,
      ratios,
      usageEvents: { recordedOk: usage.ok, recordedAll: usage.all, completedAnswers: gatewayAnswers, cutInFlightAtMost: gatewayCut, missing },
      soak,
      profiles,
    };
    const outDir = path.join(root, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `capacity${SOAK_S > 0 ? '-soak' : ''}-${result.date.slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${path.relative(root, file)}`);
    if (!values['keep-usage']) console.log(`removed the bench key's ${await deleteUsageEvents(db, bench.prefix)} usage events (--keep-usage keeps them)`);
  } finally {
    await db.end();
    await Promise.all([stopProcess(gateway), stopProcess(bare), stopProcess(sim)]);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
