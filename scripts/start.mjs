// `npm start` after the build: checks Postgres and Redis, migrates, then runs the embedded demo tiers (one vllm-sim
// per replica: the default tiers.yaml has a spot tier, an on-demand tier serving the same models, and a tier that
// sleeps), the gateway, the console and the worker as child processes, waits until they answer, and prints how to
// use them.
// Ctrl-C (SIGINT) or SIGTERM stops everything gracefully; if any child dies, the others are stopped too.
//
// Environment (besides what the apps read themselves, see README): DATABASE_URL, REDIS_URL, GATEWAY_PORT,
// CONSOLE_PORT, SIM_PORT, TIERS_FILE as for the apps; DEMO_TIER=0 to not run the embedded demo tiers (a simulator
// runs for every loopback port SIM_PORT..SIM_PORT+9 a tier points at; one whose tier sleeps with vllm-sleep starts
// asleep, and takes 2 s to wake); SIM_ARGS, more vllm-sim options for them (default "--ttft-ms 40 --itl-ms 40
// --output-tokens 150");
// START_READY_TIMEOUT_MS (default 30000); START_STOP_TIMEOUT_MS (default 30000); NO_COLOR / FORCE_COLOR.
// Without GITHUB_CLIENT_ID it also runs the labelled local demo identity provider (apps/demo-idp) on DEMO_IDP_PORT
// (8082) and points the console's sign-in at it. CONSOLE_PUBLIC_URL / GATEWAY_PUBLIC_URL default to
// http://localhost:<port>.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import {
  DEFAULT_DATABASE_URL,
  DEFAULT_REDIS_URL,
  checkServices,
  demoSims,
  DEMO_SIM_PORTS,
  formatServiceFailures,
  isPortInUse,
  probeHost,
  waitForHttp,
} from './check-services.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Like the apps' config: an empty variable counts as unset. */
const env = (name, fallback) => (process.env[name] === undefined || process.env[name] === '' ? fallback : process.env[name]);
const intEnv = (name, fallback) => {
  const v = Number(env(name, fallback));
  if (!Number.isInteger(v) || v < 0) fail(`${name}=${JSON.stringify(process.env[name])} is not a whole number`);
  return v;
};

const useColor = process.env.NO_COLOR ? false : Boolean(process.env.FORCE_COLOR) || Boolean(process.stdout.isTTY);
const paint = (code) => (s) => (useColor ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint('1');
const dim = paint('2');
const red = paint('31');
const colors = { start: paint('1'), migrate: paint('90'), 'demo-idp': paint('34'), gateway: paint('36'), console: paint('32'), worker: paint('33') };
const labelWidth = Math.max(...Object.keys(colors).map((n) => n.length)) + 2;
// the demo tiers' simulators are `sim:<port>`
const label = (name) => (colors[name] ?? (name.startsWith('sim:') ? paint('35') : paint('34')))(`[${name}]`.padEnd(labelWidth));

function say(message) {
  for (const line of String(message).split('\n')) process.stdout.write(`${label('start')} ${line}\n`);
}
function warn(message) {
  for (const line of String(message).split('\n')) process.stderr.write(`${label('start')} ${red(line)}\n`);
}
function fail(message, code = 1) {
  warn(message);
  process.exit(code);
}

const config = {
  databaseUrl: env('DATABASE_URL', DEFAULT_DATABASE_URL),
  redisUrl: env('REDIS_URL', DEFAULT_REDIS_URL),
  gatewayHost: probeHost(env('GATEWAY_HOST', '0.0.0.0')),
  gatewayPort: intEnv('GATEWAY_PORT', 8080),
  consoleHost: probeHost(env('CONSOLE_HOST', '0.0.0.0')),
  consolePort: intEnv('CONSOLE_PORT', 8081),
  simPort: intEnv('SIM_PORT', 8090),
  tiersFile: path.resolve(env('TIERS_FILE', 'tiers.yaml')),
  demoTier: !['0', 'false', 'no', 'off'].includes(String(env('DEMO_TIER', '1')).toLowerCase()),
  // tokens at a visible pace, so that a stream can be watched (and preempted) in a terminal
  simArgs: String(env('SIM_ARGS', '--ttft-ms 40 --itl-ms 40 --output-tokens 150')).split(/\s+/).filter(Boolean),
  demoIdpPort: intEnv('DEMO_IDP_PORT', 8082),
  // no GitHub OAuth app configured: sign in through the local demo identity provider instead
  demoIdp: !env('GITHUB_CLIENT_ID', ''),
  readyTimeoutMs: intEnv('START_READY_TIMEOUT_MS', 30_000),
  stopTimeoutMs: intEnv('START_STOP_TIMEOUT_MS', 30_000),
};
const childEnv = {
  ...process.env,
  DATABASE_URL: config.databaseUrl,
  REDIS_URL: config.redisUrl,
  TIERS_FILE: config.tiersFile,
  SIM_PORT: String(config.simPort),
};
// Where browsers and SDKs reach the apps (the OAuth callback must come back to the host the browser used).
childEnv.CONSOLE_PUBLIC_URL = env('CONSOLE_PUBLIC_URL', `http://localhost:${config.consolePort}`);
childEnv.GATEWAY_PUBLIC_URL = env('GATEWAY_PUBLIC_URL', `http://localhost:${config.gatewayPort}`);
if (config.demoIdp) {
  // the demo identity provider's fixed client (apps/demo-idp), at the GitHub URLs it serves
  const idp = `http://127.0.0.1:${config.demoIdpPort}`;
  Object.assign(childEnv, {
    DEMO_IDP_PORT: String(config.demoIdpPort),
    GITHUB_CLIENT_ID: 'demo-client-id',
    GITHUB_CLIENT_SECRET: 'demo-client-secret',
    GITHUB_AUTHORIZE_URL: `${idp}/login/oauth/authorize`,
    GITHUB_TOKEN_URL: `${idp}/login/oauth/access_token`,
    GITHUB_API_URL: `${idp}/api/v3`,
  });
}

// ---------------------------------------------------------------------------------------------- children

/** @type {Map<string, import('node:child_process').ChildProcess>} running children by name */
const children = new Map();
let stopping = false;

function pipeLines(stream, name, out) {
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  rl.on('line', (line) => out.write(`${label(name)} ${line}\n`));
}

/** Spawns `node <args>` in the repo root with prefixed output; `onExit` runs when it ends. */
function run(name, args, onExit) {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group: a Ctrl-C in the terminal reaches only us, and we send each child one SIGTERM.
    detached: true,
  });
  children.set(name, child);
  pipeLines(child.stdout, name, process.stdout);
  pipeLines(child.stderr, name, process.stderr);
  child.once('error', (err) => {
    warn(`${name}: cannot start: ${err.message}`);
  });
  child.once('exit', (code, signal) => {
    children.delete(name);
    onExit?.(code, signal);
  });
  return child;
}

/** Runs `node <args>` to completion; resolves with its exit code. */
function runOnce(name, args) {
  return new Promise((resolve) => {
    const child = run(name, args, (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.once('error', () => resolve(1));
  });
}

/** Starts a long-running app; its unexpected exit stops everything. */
function runService(name, args) {
  return run(name, args, (code, signal) => {
    if (stopping) return;
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    void shutdown(`${name} ${how} unexpectedly; stopping the others.`, 1);
  });
}

function waitForExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERMs every child, waits for them (bounded), SIGKILLs stragglers, and exits with `code`. */
async function shutdown(reason, code) {
  if (stopping) return;
  stopping = true;
  if (code === 0) say(reason);
  else warn(reason);
  const running = [...children.entries()];
  for (const [, child] of running) child.kill('SIGTERM');
  const results = await Promise.all(running.map(([, child]) => waitForExit(child, config.stopTimeoutMs)));
  running.forEach(([name, child], i) => {
    if (!results[i]) {
      warn(`${name} did not stop within ${config.stopTimeoutMs} ms; killing it.`);
      child.kill('SIGKILL');
    }
  });
  process.exit(code);
}

process.on('SIGINT', () => {
  if (stopping) {
    // Second Ctrl-C: do not wait any longer.
    for (const child of children.values()) child.kill('SIGKILL');
    process.exit(130);
  }
  process.stdout.write('\n');
  void shutdown('Stopping (SIGINT)…', 0);
});
process.on('SIGTERM', () => void shutdown('Stopping (SIGTERM)…', 0));
// Last resort: never leave children behind when we exit.
process.on('exit', () => {
  for (const child of children.values()) child.kill('SIGKILL');
});

// ------------------------------------------------------------------------------------------------- steps

function entry(app) {
  const file = path.join(root, 'dist/apps', app, 'src/main.js');
  if (!existsSync(file)) fail(`${path.relative(root, file)} is missing: build first (npm start does: npm run build).`);
  return path.relative(root, file);
}

function readDemoTier() {
  if (!config.demoTier) return { sims: [], tiers: [], ids: [], skipped: 'DEMO_TIER=0' };
  let doc;
  try {
    doc = parseYaml(readFileSync(config.tiersFile, 'utf8'));
  } catch (err) {
    fail(`Cannot read the tiers file ${config.tiersFile} (TIERS_FILE): ${err.message}`);
  }
  const sims = demoSims(doc, config.simPort);
  const tiers = [...new Set(sims.flatMap((s) => s.tiers))];
  const ids = [...new Set(sims.flatMap((s) => s.ids))];
  const last = config.simPort + DEMO_SIM_PORTS - 1;
  return sims.length
    ? { sims, tiers, ids, doc }
    : { sims, tiers, ids, doc, skipped: `no tier in ${path.relative(root, config.tiersFile) || config.tiersFile} points at 127.0.0.1:${config.simPort}..${last}` };
}

function firstModelId() {
  try {
    const doc = parseYaml(readFileSync(config.tiersFile, 'utf8'));
    return doc?.tiers?.[0]?.models?.[0]?.id;
  } catch {
    return undefined;
  }
}

function banner(demo) {
  const gatewayRoot = `http://${config.gatewayHost}:${config.gatewayPort}`;
  const base = `${gatewayRoot}/v1`;
  const consoleUrl = `${childEnv.CONSOLE_PUBLIC_URL.replace(/\/+$/, '')}/`;
  const model = demo.ids[0] ?? firstModelId() ?? 'MODEL';
  const lines = [
    '',
    bold('spotinference is up.'),
    `  OpenAI base URL   ${bold(base)}`,
    `  console           ${consoleUrl}`,
    `  metrics           ${gatewayRoot}/metrics   (readiness ${gatewayRoot}/readyz)`,
    ...(demo.sims.length ? demoTierLines(demo) : [`  demo tier         not started (${demo.skipped})`]),
    config.demoIdp
      ? `  sign-in           local demo identity provider on http://127.0.0.1:${config.demoIdpPort} (not GitHub; set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET for GitHub)`
      : '  sign-in           GitHub',
    '',
    `Open the console, sign in, create an org and mint a key: ${consoleUrl}`,
    'Or from a terminal:',
    '  npm run cli -- org create demo',
    '  npm run cli -- key create --org demo        # prints the key (sk-...) once, on its last line',
    '  export SPOT_API_KEY=sk-...',
    '',
    'Call it:',
    `  curl ${base}/chat/completions \\`,
    '    -H "Authorization: Bearer $SPOT_API_KEY" -H "Content-Type: application/json" \\',
    `    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello"}]}'`,
    '',
    ...quickStartLines(demo, base),
    'Or with the openai SDK (Node):',
    "  import OpenAI from 'openai';",
    `  const client = new OpenAI({ baseURL: '${base}', apiKey: process.env.SPOT_API_KEY });`,
    `  const r = await client.chat.completions.create({ model: '${model}', messages: [{ role: 'user', content: 'Hello' }] });`,
    '',
    dim('Ctrl-C stops everything.'),
    '',
  ];
  for (const line of lines) process.stdout.write(`${line}\n`);
}

/** One banner line per demo tier: its kind, replicas (ports) and models, and whether it sleeps. */
function demoTierLines(demo) {
  return demo.tiers.map((name, i) => {
    const tier = demo.doc.tiers.find((t) => t.name === name);
    const ports = demo.sims.filter((s) => s.tiers.includes(name)).map((s) => `:${s.port}`);
    const sleeps = tier?.wake ? ', asleep until its first request' : '';
    const head = i === 0 ? '  demo tiers        ' : '                    ';
    return `${head}${name} (${tier?.kind}${sleeps}) on vllm-sim ${ports.join(', ')}: ${(tier?.models ?? []).map((m) => m.id).join(', ')}`;
  });
}

/** How to watch a stream survive a preemption and wake the sleeping tier, when the demo tiers allow it. */
function quickStartLines(demo, base) {
  const tiers = demo.doc?.tiers ?? [];
  const spot = tiers.find((t) => t.kind === 'spot' && demo.tiers.includes(t.name));
  const sleepy = tiers.find((t) => t.wake && demo.tiers.includes(t.name));
  const lines = [];
  const model = spot?.models?.[0]?.id;
  if (spot && model) {
    lines.push(
      'Watch a stream while its spot replica is preempted (in a second terminal):',
      `  curl -N ${base}/chat/completions -H "Authorization: Bearer $SPOT_API_KEY" -H "Content-Type: application/json" \\`,
      `    -d '{"model":"${model}","stream":true,"messages":[{"role":"user","content":"Tell me a story"}]}'`,
      `  npm run cli -- tier preempt ${spot.name} --in 1s      # every replica of ${spot.name}; --endpoint URL for one`,
      `  npm run cli -- tier resume ${spot.name}               # back in rotation`,
      '',
    );
  }
  const sleepyModel = sleepy?.models?.[0]?.id;
  if (sleepy && sleepyModel) {
    lines.push(
      `Wake the sleeping tier ${sleepy.name}: its first request waits for the wake, then answers:`,
      `  curl ${base}/chat/completions -H "Authorization: Bearer $SPOT_API_KEY" -H "Content-Type: application/json" \\`,
      `    -d '{"model":"${sleepyModel}","messages":[{"role":"user","content":"Hello"}]}'`,
      '',
    );
  }
  return lines;
}

async function main() {
  // (a) Postgres and Redis, fast.
  say(`Checking Postgres and Redis…`);
  const results = await checkServices({ databaseUrl: config.databaseUrl, redisUrl: config.redisUrl, timeoutMs: 2000 });
  const failures = formatServiceFailures(results);
  if (failures) fail(failures);
  for (const r of results) if (r.note) say(`${r.name}: ${r.note}`);

  // Fail early and clearly on ports someone else holds (e.g. a previous `npm start` still running).
  const demo = readDemoTier();
  const ports = [
    ['gateway', config.gatewayHost, config.gatewayPort, 'GATEWAY_PORT'],
    ['console', config.consoleHost, config.consolePort, 'CONSOLE_PORT'],
    ...demo.sims.map((s) => [`sim:${s.port}`, '127.0.0.1', s.port, 'SIM_PORT (or DEMO_TIER=0 to use what runs there as the tier)']),
    ...(config.demoIdp ? [['demo-idp', '127.0.0.1', config.demoIdpPort, 'DEMO_IDP_PORT (or GITHUB_CLIENT_ID/GITHUB_CLIENT_SECRET to use GitHub)']] : []),
  ];
  const busy = [];
  for (const [name, host, port, how] of ports) {
    if (await isPortInUse(port, host)) busy.push(`port ${port} (${name}) is already in use on ${host}: stop what holds it, or set ${how}.`);
  }
  if (busy.length) fail(busy.join('\n'));

  // Every entry point, before anything starts.
  const entries = {
    sim: demo.sims.length ? entry('vllm-sim') : undefined,
    idp: config.demoIdp ? entry('demo-idp') : undefined,
    gateway: entry('gateway'),
    console: entry('console'),
    worker: entry('worker'),
  };

  // (b) Migrations (creates the database if missing; idempotent).
  say('Migrating the database…');
  const migrated = await runOnce('migrate', ['scripts/prisma-wasm-migrate.mjs', 'deploy']);
  if (migrated !== 0) fail(`Migrations failed (exit code ${migrated}); nothing was started.`);
  if (stopping) return;

  // (c) The demo tiers first, so that the gateway finds its upstreams healthy (and the sleeping one asleep).
  if (entries.sim) {
    say(`Starting the demo tiers (${demo.tiers.join(', ')}) on vllm-sim ${demo.sims.map((s) => `:${s.port}`).join(', ')}…`);
    const started = demo.sims.map((s) => ({
      sim: s,
      // a wake that takes a moment, as a real one does (SIM_ARGS can say otherwise: its options come last and win)
      child: runService(`sim:${s.port}`, [
        entries.sim,
        ...['--host', '127.0.0.1', '--port', String(s.port), '--models', s.models.join(',')],
        ...(s.asleep ? ['--wake-up-ms', '2000'] : []),
        ...config.simArgs,
      ]),
    }));
    const ups = await Promise.all(
      started.map(({ sim, child }) =>
        waitForHttp(`http://127.0.0.1:${sim.port}/health`, {
          timeoutMs: config.readyTimeoutMs,
          shouldStop: () => stopping || child.exitCode !== null || child.signalCode !== null,
        }),
      ),
    );
    if (stopping) return;
    const down = ups.find((u) => !u.ok);
    if (down) {
      return shutdown(`A demo tier did not come up: GET ${down.url} gave no 2xx within ${Math.round(config.readyTimeoutMs / 1000)} s (last: ${down.error}).`, 1);
    }
    for (const { sim } of started.filter(({ sim }) => sim.asleep)) {
      const res = await fetch(`http://127.0.0.1:${sim.port}/sleep?level=1`, { method: 'POST' }).catch((err) => ({ ok: false, status: err.message }));
      if (!res.ok) return shutdown(`Could not put the demo tier on :${sim.port} to sleep (POST /sleep: ${res.status}).`, 1);
    }
  } else {
    say(`Not starting the demo tier: ${demo.skipped}.`);
  }

  if (entries.idp) {
    say(`No GITHUB_CLIENT_ID: starting the local demo identity provider on :${config.demoIdpPort} for console sign-in…`);
    const idp = runService('demo-idp', [entries.idp]);
    const up = await waitForHttp(`http://127.0.0.1:${config.demoIdpPort}/`, {
      timeoutMs: config.readyTimeoutMs,
      shouldStop: () => stopping || idp.exitCode !== null || idp.signalCode !== null,
    });
    if (stopping) return;
    if (!up.ok) return shutdown(`The demo identity provider did not come up (GET ${up.url}: ${up.error}).`, 1);
  }

  say('Starting gateway, console and worker…');
  const gateway = runService('gateway', [entries.gateway]);
  const consoleApp = runService('console', [entries.console]);
  runService('worker', [entries.worker]);

  const exited = (c) => () => stopping || c.exitCode !== null || c.signalCode !== null;
  const [g, c] = await Promise.all([
    waitForHttp(`http://${config.gatewayHost}:${config.gatewayPort}/readyz`, { timeoutMs: config.readyTimeoutMs, shouldStop: exited(gateway) }),
    waitForHttp(`http://${config.consoleHost}:${config.consolePort}/healthz`, { timeoutMs: config.readyTimeoutMs, shouldStop: exited(consoleApp) }),
  ]);
  if (stopping) return;
  const notUp = [
    ...(g.ok ? [] : [`the gateway (GET ${g.url}: ${g.error ?? 'no answer'})`]),
    ...(c.ok ? [] : [`the console (GET ${c.url}: ${c.error ?? 'no answer'})`]),
  ];
  if (notUp.length) {
    return shutdown(`Not ready within ${Math.round(config.readyTimeoutMs / 1000)} s: ${notUp.join(' and ')}. Stopping everything.`, 1);
  }

  // (d)
  banner(demo);
}

main().catch((err) => {
  void shutdown(`start failed: ${err?.stack ?? err}`, 1);
});
