import { request } from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { GATEWAY_MAIN, type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { CHAT_MODEL, CHAT_UPSTREAM, tiersYaml } from '../support/gateway-stack';

// GATEWAY_PROCESSES=2: the built gateway as a node:cluster primary with two workers on one port. Booting a worker
// takes seconds on a loaded machine (each loads the whole app): generous deadlines, no timing asserted.
jest.setTimeout(90_000);

/** The pids whose parent is `pid` (a cluster primary's workers), from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // ended meanwhile
    }
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
  }
  return out;
}

/** `gateway_requests_total` for one route and status, by worker label. */
function requestsByWorker(metrics: string, route: string, status: number): Map<string, number> {
  const byWorker = new Map<string, number>();
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('gateway_requests_total{')) continue;
    const labels = line.slice(line.indexOf('{') + 1, line.indexOf('}'));
    if (!labels.includes(`route="${route}"`) || !labels.includes(`status="${status}"`)) continue;
    const worker = /worker="([^"]+)"/.exec(labels)?.[1] ?? '';
    byWorker.set(worker, (byWorker.get(worker) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return byWorker;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null> | T | null, timeoutMs = 40_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('gateway with GATEWAY_PROCESSES=2', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const usage = new UsageEventsRepository(prisma);
  let sim: SimServer;
  let key: string;
  let gw: GatewayProcess | null = null;

  beforeAll(async () => {
    sim = await startSim({ models: [CHAT_UPSTREAM], itlMs: 20, outputTokens: 40 });
    ({ key } = await seedOrgKey(prisma, { slugPrefix: 'cluster' }));
  });
  afterEach(async () => {
    if (gw && gw.child.exitCode === null) {
      gw.child.kill('SIGKILL');
      await gw.exited;
    }
    gw = null;
  });
  afterAll(async () => {
    await sim?.close();
    await prisma.$disconnect();
  });

  async function start(env: Record<string, string> = {}): Promise<GatewayProcess> {
    gw = await spawnGateway({ tiersYaml: tiersYaml(sim.url), readyTimeoutMs: 40_000, env: { GATEWAY_PROCESSES: '2', SHUTDOWN_GRACE_MS: '10000', ...env } });
    // ready = one worker listens; the test needs both serving (a forked worker may still be loading the app)
    await waitFor('two workers', () => (childrenOf(gw!.child.pid!).length === 2 ? true : null));
    const url = gw.url;
    await waitFor('both workers serving', async () => {
      // a new connection each (the primary hands out connections, not requests)
      await Promise.all(Array.from({ length: 4 }, () => chatOnNewConnection(gw!.port)));
      const byWorker = requestsByWorker(await (await fetch(`${url}/metrics`)).text(), 'chat', 200);
      return byWorker.size === 2 ? true : null;
    });
    return gw;
  }

  function chatOnNewConnection(port: number): Promise<number> {
    const body = JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async function chat(url: string, stream = false): Promise<{ id: string; text: string }> {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream }),
    });
    const text = await res.text();
    expect(res.status).toBe(200);
    return { id: res.headers.get('x-request-id')!, text };
  }

  it('serves requests from both workers, shows both in one /metrics scrape, and stores every usage event once', async () => {
    const { url } = await start();
    const before = requestsByWorker(await (await fetch(`${url}/metrics`)).text(), 'chat', 200);
    // concurrent requests open several connections; the primary hands connections to the workers in turn
    const answers = await Promise.all(Array.from({ length: 40 }, () => chat(url)));
    // a scrape that lands on either worker is the merge of both: each worker's series carries its id
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const byWorker = requestsByWorker(metrics, 'chat', 200);
    expect([...byWorker.keys()].sort()).toEqual(['1', '2']);
    const served = [...byWorker].map(([w, n]) => n - (before.get(w) ?? 0));
    for (const n of served) expect(n).toBeGreaterThan(0);
    expect(served.reduce((a, b) => a + b, 0)).toBe(40);
    expect(metrics).toMatch(/gateway_usage_events_written\{worker="1"\}/);

    const ids = answers.map((a) => a.id);
    const rows = await waitFor('40 usage events', async () => {
      const found = await usage.findByRequestIds(ids);
      return found.length === ids.length ? found : null;
    });
    expect(new Set(rows.map((r) => r.requestId)).size).toBe(40);
  });

  it('SIGTERM: both workers drain their streams, record their usage, and the primary exits 0', async () => {
    const { url, baseURL, child, exited, stop } = await start();
    const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });
    const started = await Promise.all(
      Array.from({ length: 6 }, () => client.chat.completions.create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'a long answer' }], stream: true }).withResponse()),
    );
    const reads = started.map(async ({ data }) => {
      let deltas = 0;
      for await (const c of data) if (c.choices[0]?.delta.content) deltas++;
      return deltas;
    });
    const workers = childrenOf(child.pid!);
    expect(workers).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 100));
    const code = stop('SIGTERM');
    expect(await Promise.all(reads)).toEqual([40, 40, 40, 40, 40, 40]);
    expect(await code).toBe(0);
    expect(await exited).toBe(0);
    // the workers are gone too, and nothing listens any more
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    const rows = await usage.findByRequestIds(started.map((s) => s.request_id!));
    expect(rows).toHaveLength(6);
    for (const row of rows) expect(row).toMatchObject({ completionTokens: 40, estimated: false, status: 200 });
  });

  it('a worker that dies is replaced; the gateway keeps serving', async () => {
    const { url, child } = await start();
    const [victim, survivor] = childrenOf(child.pid!);
    process.kill(victim, 'SIGKILL');
    await waitFor('a replacement worker', () => {
      const now = childrenOf(child.pid!);
      return now.length === 2 && !now.includes(victim) && now.includes(survivor) ? true : null;
    });
    const answers = await Promise.all(Array.from({ length: 10 }, () => chat(url)));
    expect(answers.every((a) => a.text.includes('"choices"'))).toBe(true);
    expect(child.exitCode).toBeNull();
  });
});

describe('gateway with GATEWAY_PROCESSES=2 and a bad tiers file', () => {
  it('the workers fail at boot, naming the problem, and the primary exits 1 instead of restarting them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-cluster-bad-'));
    const file = join(dir, 'tiers.yaml');
    writeFileSync(file, 'tiers:\n  - name: a\n    kind: cheap\n    endpoints: [http://127.0.0.1:1]\n    models: [{ id: m, price: { input_per_mtok: 1, output_per_mtok: 1 } }]\n');
    const run = spawnSync(process.execPath, [GATEWAY_MAIN], {
      env: { ...process.env, GATEWAY_PROCESSES: '2', GATEWAY_PORT: '0', TIERS_FILE: file, USAGE_SPOOL_DIR: join(dir, 'spool') },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${file}: invalid tiers file`);
    expect(run.stderr).toMatch(/exited with code 1 before it was serving: stopping the gateway/);
  });
});
