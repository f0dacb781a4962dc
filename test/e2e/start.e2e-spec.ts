import { spawn } from 'node:child_process';
import { type Server, type Socket, createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { freePort } from '../support/free-port';

// `npm start` (scripts/start.mjs) must never hang on a service that is down: each check is bounded, and a failure
// names the service, its URL and how to start it. Against the real Postgres and Redis of the test environment.

interface CheckResult {
  name: 'postgres' | 'redis';
  url: string;
  ok: boolean;
  error?: string;
  note?: string;
  ms: number;
}
interface CheckServicesModule {
  checkPostgres(url: string, opts?: { timeoutMs?: number }): Promise<CheckResult>;
  checkRedis(url: string, opts?: { timeoutMs?: number }): Promise<CheckResult>;
  checkServices(opts: { databaseUrl: string; redisUrl: string; timeoutMs?: number }): Promise<CheckResult[]>;
  formatServiceFailures(results: CheckResult[]): string;
  waitForHttp(url: string, opts?: { timeoutMs?: number; intervalMs?: number }): Promise<{ ok: boolean; status?: number; error?: string }>;
  demoSims(doc: unknown, simPort?: number): Array<{ port: number; models: string[]; tiers: string[]; ids: string[]; asleep: boolean }>;
  redactUrl(url: string): string;
}

const ROOT = resolve(__dirname, '../..');
// A computed specifier: TypeScript types it as any (the .mjs has no declarations), swc turns it into require().
const MODULE_PATH = resolve(ROOT, 'scripts/check-services.mjs');

/** A server that accepts connections and never says a word: the "hangs" case. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const { port } = srv.address() as { port: number };
  return {
    port,
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        srv.close(() => ok());
      }),
  };
}

describe('scripts/check-services.mjs (the checks of npm start)', () => {
  let m: CheckServicesModule;
  const databaseUrl = process.env.DATABASE_URL!;
  const redisUrl = process.env.REDIS_URL!;

  beforeAll(async () => {
    m = (await import(MODULE_PATH)) as CheckServicesModule;
  });

  it('passes for the running Postgres and Redis', async () => {
    const results = await m.checkServices({ databaseUrl, redisUrl, timeoutMs: 2000 });
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      ['postgres', true],
      ['redis', true],
    ]);
    expect(m.formatServiceFailures(results)).toBe('');
  });

  it('counts a Postgres whose database does not exist yet as reachable (migrations create it)', async () => {
    const u = new URL(databaseUrl);
    u.pathname = '/spot_start_check_no_such_db';
    const r = await m.checkPostgres(u.href, { timeoutMs: 2000 });
    expect(r.ok).toBe(true);
    expect(r.note).toMatch(/does not exist/);
  });

  it('reports a Redis on a closed port by name and URL, at once', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const r = await m.checkRedis(url, { timeoutMs: 2000 });
    expect(r).toMatchObject({ name: 'redis', ok: false });
    expect(r.error).toMatch(/ECONNREFUSED/);
    expect(r.ms).toBeLessThan(2000);
    const message = m.formatServiceFailures([r]);
    expect(message).toContain(`Redis is unreachable at ${url}`);
    expect(message).toContain('REDIS_URL');
    expect(message).toContain('redis-server --daemonize yes');
    expect(message).toContain('docker compose up -d postgres redis');
  });

  it('reports a Postgres on a closed port by name and URL, at once', async () => {
    const port = await freePort();
    const url = `postgresql://postgres@127.0.0.1:${port}/spotinference`;
    const r = await m.checkPostgres(url, { timeoutMs: 2000 });
    expect(r).toMatchObject({ name: 'postgres', ok: false });
    expect(r.error).toMatch(/ECONNREFUSED/);
    expect(r.ms).toBeLessThan(2000);
    const message = m.formatServiceFailures([r]);
    expect(message).toContain(`Postgres is unreachable at ${url}`);
    expect(message).toContain('DATABASE_URL');
    expect(message).toContain('pg_ctlcluster 15 main start');
  });

  it('gives up on servers that accept but never answer, within the timeout', async () => {
    const silent = await silentServer();
    try {
      const started = Date.now();
      const [pg, redis] = await m.checkServices({
        databaseUrl: `postgresql://postgres@127.0.0.1:${silent.port}/spotinference`,
        redisUrl: `redis://127.0.0.1:${silent.port}`,
        timeoutMs: 500,
      });
      const elapsed = Date.now() - started;
      expect(pg).toMatchObject({ name: 'postgres', ok: false });
      expect(redis).toMatchObject({ name: 'redis', ok: false });
      expect(pg.error).toMatch(/no answer within 500 ms/);
      expect(redis.error).toMatch(/no answer within 500 ms/);
      expect(elapsed).toBeLessThan(1500); // in parallel, each bounded
    } finally {
      await silent.close();
    }
  });

  it('never prints a password', async () => {
    const port = await freePort();
    const r = await m.checkPostgres(`postgresql://postgres:hunter2@127.0.0.1:${port}/x`, { timeoutMs: 1000 });
    expect(r.url).toBe(`postgresql://postgres:***@127.0.0.1:${port}/x`);
    expect(m.formatServiceFailures([r])).not.toContain('hunter2');
  });

  it('rejects URLs of the wrong kind without trying to connect', async () => {
    const r = await m.checkRedis('http://127.0.0.1:6379', { timeoutMs: 1000 });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/invalid REDIS_URL/);
  });

  it('waitForHttp is bounded and names the last error', async () => {
    const port = await freePort();
    const started = Date.now();
    const r = await m.waitForHttp(`http://127.0.0.1:${port}/readyz`, { timeoutMs: 600, intervalMs: 100 });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('runs a simulator per loopback port from SIM_PORT on that a tier points at, serving its tiers\' upstream names', () => {
    const doc = {
      tiers: [
        {
          name: 'demo',
          endpoints: ['http://127.0.0.1:8090', 'http://127.0.0.1:8091'],
          models: [{ id: 'a', upstream: 'org/A' }, { id: 'b' }],
        },
        { name: 'local', endpoints: ['http://localhost:8090/'], models: [{ id: 'c', upstream: 'org/A' }] },
        { name: 'sleepy', endpoints: ['http://[::1]:8093'], wake: { driver: 'vllm-sleep' }, models: [{ id: 'e', upstream: 'org/E' }] },
        { name: 'gpu', endpoints: ['http://10.0.0.5:8090', 'http://127.0.0.1:8000', 'http://127.0.0.1:8100'], models: [{ id: 'd', upstream: 'org/D' }] },
      ],
    };
    expect(m.demoSims(doc, 8090)).toEqual([
      { port: 8090, models: ['org/A', 'b'], tiers: ['demo', 'local'], ids: ['a', 'b', 'c'], asleep: false },
      { port: 8091, models: ['org/A', 'b'], tiers: ['demo'], ids: ['a', 'b'], asleep: false },
      { port: 8093, models: ['org/E'], tiers: ['sleepy'], ids: ['e'], asleep: true },
    ]);
    expect(m.demoSims(doc, 9999)).toEqual([]);
  });

  it("the default tiers.yaml is npm start's demo: a spot tier, an on-demand tier serving the same models, and a sleeping tier", () => {
    const doc = parseYaml(readFileSync(resolve(ROOT, 'tiers.yaml'), 'utf8'));
    const tiers: Array<{ name: string; kind: string; wake?: { driver: string }; models: Array<{ id: string }> }> = doc.tiers;
    const spot = tiers.filter((t) => t.kind === 'spot');
    const onDemand = tiers.filter((t) => t.kind === 'on-demand' && t.wake === undefined);
    expect(spot).toHaveLength(1);
    expect(onDemand.map((t) => t.models.map((x) => x.id))).toEqual([spot[0].models.map((x) => x.id)]);
    expect(tiers.filter((t) => t.wake?.driver === 'vllm-sleep')).toHaveLength(1);
    const sims = m.demoSims(doc, 8090);
    expect(sims.map((s) => s.port)).toEqual([8090, 8091, 8092, 8093]);
    expect(sims.filter((s) => s.asleep).map((s) => s.port)).toEqual([8093]);
  });
});

describe('npm start with Postgres or Redis down', () => {
  it('says which one, and exits 1 quickly instead of hanging', async () => {
    const [pgPort, redisPort] = [await freePort(), await freePort()];
    const started = Date.now();
    const { code, output } = await new Promise<{ code: number | null; output: string }>((ok, fail) => {
      const child = spawn(process.execPath, [resolve(ROOT, 'scripts/start.mjs')], {
        cwd: ROOT,
        env: {
          ...process.env,
          DATABASE_URL: `postgresql://postgres@127.0.0.1:${pgPort}/spotinference`,
          REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          NO_COLOR: '1',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d));
      child.stderr.on('data', (d: Buffer) => (output += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.on('error', fail);
      child.on('exit', (c) => {
        clearTimeout(timer);
        ok({ code: c, output });
      });
    });
    expect(code).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(output).toContain(`Postgres is unreachable at postgresql://postgres@127.0.0.1:${pgPort}/spotinference`);
    expect(output).toContain(`Redis is unreachable at redis://127.0.0.1:${redisPort}`);
    expect(output).not.toMatch(/Migrating/);
  });
});
