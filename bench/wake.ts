// Wake latency: how much a sleeping tier's first request waits beyond the engine's own wake time.
// Runs vllm-sim (sleep mode, --wake-up-ms W) and the gateway from dist/, puts the tier to sleep N times (the
// way the worker does: POST /sleep, then the announcement on Redis) and times one request each time.
//   npm run bench:wake -- [--wakes 20] [--wake-ms 500]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';

const { values } = parseArgs({ options: { wakes: { type: 'string', default: '20' }, 'wake-ms': { type: 'string', default: '500' } } });
const WAKES = Number(values.wakes);
const WAKE_MS = Number(values['wake-ms']);
const root = path.resolve(__dirname, '../..');
const dist = path.join(root, 'dist');

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

async function up(url: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await fetch(url).then((r) => r.ok, () => false))) {
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];

async function main(): Promise<void> {
  const [simPort, gwPort] = [await freePort(), await freePort()];
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-wake-'));
  const prefix = `bench:${randomUUID()}:`;
  writeFileSync(
    path.join(tmp, 'tiers.yaml'),
    `tiers:\n  - name: sleepy\n    kind: spot\n    endpoints: [http://127.0.0.1:${simPort}]\n    wake: { driver: vllm-sleep, deadline_s: 60 }\n    fallback_while_waking: false\n    models:\n      - id: bench-model\n        upstream: bench-upstream\n        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }\n`,
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TIERS_FILE: path.join(tmp, 'tiers.yaml'),
    GATEWAY_PORT: String(gwPort),
    GATEWAY_HOST: '127.0.0.1',
    REDIS_PREFIX: prefix,
    USAGE_SPOOL_DIR: path.join(tmp, 'spool'),
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
  };
  execFileSync(process.execPath, [path.join(root, 'scripts/prisma-wasm-migrate.mjs'), 'deploy'], { env, stdio: 'ignore' });
  const cli = (args: string[]) => execFileSync(process.execPath, [path.join(dist, 'apps/cli/src/main.js'), ...args], { env, encoding: 'utf8' }).trim().split('\n').pop() ?? '';
  const slug = `bench-${randomUUID().slice(0, 8)}`;
  cli(['org', 'create', slug]);
  const key = cli(['key', 'create', '--org', slug, '--name', 'bench-wake']);
  const children: ChildProcess[] = [
    spawn(process.execPath, [path.join(dist, 'apps/vllm-sim/src/main.js'), '--port', String(simPort), '--models', 'bench-upstream', '--output-tokens', '8', '--wake-up-ms', String(WAKE_MS)], { env, stdio: 'ignore' }),
  ];
  const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  try {
    await up(`http://127.0.0.1:${simPort}/health`);
    children.push(spawn(process.execPath, [path.join(dist, 'apps/gateway/src/main.js')], { env, stdio: ['ignore', 'ignore', 'inherit'] }));
    await up(`http://127.0.0.1:${gwPort}/readyz`);
    const ask = () =>
      fetch(`http://127.0.0.1:${gwPort}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] }),
      }).then(async (r) => {
        await r.arrayBuffer();
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
      });
    const awake: number[] = [];
    const woken: number[] = [];
    for (let i = 0; i < WAKES; i++) {
      let t = performance.now();
      await ask();
      awake.push(performance.now() - t);
      await fetch(`http://127.0.0.1:${simPort}/sleep?level=1`, { method: 'POST' });
      await redis.publish(`${prefix}tiers:state`, JSON.stringify({ tier: 'sleepy', state: 'asleep', gateway: 'bench' }));
      await new Promise((r) => setTimeout(r, 50));
      t = performance.now();
      await ask();
      woken.push(performance.now() - t);
    }
    const added = woken.map((w) => w - WAKE_MS).sort((a, b) => a - b);
    awake.sort((a, b) => a - b);
    const row = (name: string, s: number[]) => `${name.padEnd(34)} ${pct(s, 50).toFixed(1).padStart(8)} ${pct(s, 95).toFixed(1).padStart(8)} ${s[s.length - 1].toFixed(1).padStart(8)}`;
    process.stdout.write(`\nWake latency: ${WAKES} wakes, engine wake time ${WAKE_MS} ms (vllm-sim sleep mode), ms\n\n`);
    process.stdout.write(`${'measure'.padEnd(34)} ${'p50'.padStart(8)} ${'p95'.padStart(8)} ${'max'.padStart(8)}\n`);
    process.stdout.write(`${row('request to an awake tier', awake)}\n${row('request that wakes the tier', woken.slice().sort((a, b) => a - b))}\n${row('added beyond the engine wake time', added)}\n`);
    const out = path.join(root, 'bench/results');
    mkdirSync(out, { recursive: true });
    const file = path.join(out, `wake-${new Date().toISOString().slice(0, 10)}.json`);
    writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), wakes: WAKES, engineWakeMs: WAKE_MS, awakeMs: awake, wokenMs: woken, addedMs: { p50: pct(added, 50), p95: pct(added, 95), max: added[added.length - 1] } }, null, 2));
    process.stdout.write(`\nwrote ${path.relative(root, file)}\n`);
  } finally {
    await redis.quit();
    for (const c of children) c.kill('SIGTERM');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:wake failed: ${String(err)}\n`);
  process.exit(1);
});
