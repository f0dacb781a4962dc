import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService, UsageEventsRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { CHAT_MODEL, CHAT_UPSTREAM, tiersYaml } from '../support/gateway-stack';
import { freePort } from '../support/free-port';

// The real process: SIGTERM must drain streams, flush usage and exit 0. Runs the build in dist/ (npm test builds first).
const MAIN = resolve(__dirname, '../../dist/apps/gateway/src/main.js');
const messages = [{ role: 'user' as const, content: 'a long answer please' }];

describe('gateway process: bad configuration stops it at boot, naming what is wrong', () => {
  function boot(env: Record<string, string>) {
    return spawnSync(process.execPath, [MAIN], { env: { ...process.env, GATEWAY_PORT: '0', ...env }, encoding: 'utf8', timeout: 15_000 });
  }

  it('an invalid tiers file: the path and the offending field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-bad-'));
    const file = join(dir, 'tiers.yaml');
    writeFileSync(file, 'tiers:\n  - name: a\n    kind: cheap\n    endpoints: [http://127.0.0.1:1]\n    models: [{ id: m, price: { input_per_mtok: 1, output_per_mtok: 1 } }]\n');
    const run = boot({ TIERS_FILE: file });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${file}: invalid tiers file`);
    expect(run.stderr).toContain('tiers[0].kind');
  });

  it('a missing tiers file and a bad variable', () => {
    const missing = boot({ TIERS_FILE: '/nonexistent/tiers.yaml' });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('/nonexistent/tiers.yaml: cannot read tiers file (ENOENT)');
    const badPort = boot({ GATEWAY_PORT: 'http' });
    expect(badPort.status).toBe(1);
    expect(badPort.stderr).toMatch(/GATEWAY_PORT="http"/);
  });
});

describe('gateway process: graceful stop on SIGTERM', () => {
  const config = loadConfig(process.env);
  const prisma = new PrismaService(config);
  let sim: SimServer;
  let key: string;
  let child: ChildProcess | null = null;

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    sim = await startSim({ models: [CHAT_UPSTREAM], itlMs: 20, outputTokens: 40 });
    const org = await new OrgsRepository(prisma).create(`sd-${randomUUID().slice(0, 12)}`, 'Shutdown');
    const minted = mintApiKey();
    await new ApiKeysRepository(prisma).create({
      orgId: org!.id,
      name: 'sd',
      prefix: minted.prefix,
      secretHash: minted.secretHash,
      allowedModels: [],
      expiresAt: null,
      createdById: null,
    });
    key = minted.key;
  });
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });
  afterAll(async () => {
    await sim?.close();
    await prisma.$disconnect();
  });

  async function startGateway(extra: Record<string, string>): Promise<{ baseURL: string; exited: Promise<number | null> }> {
    const dir = mkdtempSync(join(tmpdir(), 'gw-sd-'));
    writeFileSync(join(dir, 'tiers.yaml'), tiersYaml(sim.url));
    const port = await freePort();
    child = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        TIERS_FILE: join(dir, 'tiers.yaml'),
        GATEWAY_PORT: String(port),
        GATEWAY_HOST: '127.0.0.1',
        REDIS_PREFIX: `test:${randomUUID()}:`,
        USAGE_SPOOL_DIR: join(dir, 'spool'),
        LOG_LEVEL: 'warn',
        ...extra,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    const deadline = Date.now() + 15_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('gateway did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    return { baseURL: `http://127.0.0.1:${port}/v1`, exited };
  }

  it('a gateway killed with SIGKILL loses no usage: the next one replays its write-ahead journal', async () => {
    const spool = join(mkdtempSync(join(tmpdir(), 'gw-kill-')), 'spool');
    // nothing reaches Postgres before the kill: only the journal can save these events
    const first = await startGateway({ USAGE_SPOOL_DIR: spool, USAGE_FLUSH_MS: '600000', USAGE_BATCH_SIZE: '10000' });
    const client = new OpenAI({ baseURL: first.baseURL, apiKey: key, maxRetries: 0 });
    const told = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 3 + i }).withResponse()),
    );
    child!.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    const usage = new UsageEventsRepository(prisma);
    const ids = told.map((t) => t.request_id!);
    expect(await usage.findByRequestIds(ids)).toEqual([]);

    await startGateway({ USAGE_SPOOL_DIR: spool, USAGE_SPOOL_STALE_MS: '500' });
    const deadline = Date.now() + 20_000;
    let rows = await usage.findByRequestIds(ids);
    while (rows.length < ids.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      rows = await usage.findByRequestIds(ids);
    }
    expect(rows).toHaveLength(20);
    const byId = new Map(rows.map((r) => [r.requestId, r]));
    for (const t of told) {
      expect(byId.get(t.request_id!)).toMatchObject({ promptTokens: t.data.usage!.prompt_tokens, completionTokens: t.data.usage!.completion_tokens });
    }
  });

  it('lets in-flight streams finish, records their usage, refuses new work and exits 0', async () => {
    const { baseURL, exited } = await startGateway({ SHUTDOWN_GRACE_MS: '10000' });
    const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });
    const started = await Promise.all(
      [0, 1, 2].map(() => client.chat.completions.create({ model: CHAT_MODEL, messages, stream: true }).withResponse()),
    );
    const reads = started.map(async ({ data }) => {
      let deltas = 0;
      for await (const c of data) if (c.choices[0]?.delta.content) deltas++;
      return deltas;
    });
    await new Promise((r) => setTimeout(r, 100));
    child!.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    await expect(client.models.list()).rejects.toThrow();
    expect(await Promise.all(reads)).toEqual([40, 40, 40]);
    expect(await exited).toBe(0);
    const usage = new UsageEventsRepository(prisma);
    const rows = await usage.findByRequestIds(started.map((s) => s.request_id!));
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatchObject({ completionTokens: 40, estimated: false, status: 200 });
  });

  it('cuts streams still running after the grace period: the client sees an error, the partial usage is billed', async () => {
    const { baseURL, exited } = await startGateway({ SHUTDOWN_GRACE_MS: '300' });
    const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });
    const { data, request_id } = await client.chat.completions
      .create({ model: CHAT_MODEL, messages, stream: true, max_tokens: 1000 }, { timeout: 20_000 })
      .withResponse();
    const reading = (async () => {
      let deltas = 0;
      for await (const c of data) if (c.choices[0]?.delta.content) deltas++;
      return deltas;
    })();
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    child!.kill('SIGTERM');
    await expect(reading).rejects.toThrow();
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    const row = await new UsageEventsRepository(prisma).findByRequestId(request_id!);
    expect(row).toMatchObject({ estimated: true, status: 502 });
    expect(row!.completionTokens).toBeGreaterThan(0);
    expect(row!.completionTokens).toBeLessThan(40);
  });
});
