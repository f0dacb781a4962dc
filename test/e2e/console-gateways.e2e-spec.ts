import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { type Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';
import { freePort } from '../support/free-port';
import { CHAT_MODEL, CHAT_UPSTREAM, OTHER_MODEL, EMBED_MODEL, tiersYaml } from '../support/gateway-stack';

const MAIN = resolve(__dirname, '../../dist/apps/gateway/src/main.js');
const messages = [{ role: 'user' as const, content: 'hi' }];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

/** Keys made in the console, used through two real gateway processes sharing Redis with it. */
describe('console → two gateway processes', () => {
  let s: ConsoleStack;
  let sim: SimServer;
  let owner: Browser;
  let slug: string;
  const children: ChildProcess[] = [];
  const gateways: string[] = [];

  async function spawnGateway(tiersFile: string): Promise<string> {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        TIERS_FILE: tiersFile,
        GATEWAY_PORT: String(port),
        GATEWAY_HOST: '127.0.0.1',
        REDIS_PREFIX: s.config.REDIS_PREFIX,
        USAGE_SPOOL_DIR: mkdtempSync(join(tmpdir(), 'gw-console-spool-')),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('gateway did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    return `http://127.0.0.1:${port}/v1`;
  }

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    s = await startConsoleStack();
    sim = await startSim({ models: [CHAT_UPSTREAM, OTHER_MODEL, EMBED_MODEL], outputTokens: 2 });
    const dir = mkdtempSync(join(tmpdir(), 'gw-console-'));
    writeFileSync(join(dir, 'tiers.yaml'), tiersYaml(sim.url));
    gateways.push(...(await Promise.all([spawnGateway(join(dir, 'tiers.yaml')), spawnGateway(join(dir, 'tiers.yaml'))])));
    owner = await s.signIn(newGitHubUser('gw'));
    slug = `gw-${Math.random().toString(36).slice(2, 10)}`;
    expect((await owner.api('POST', '/api/orgs', { slug, name: 'Gateways' })).status).toBe(201);
  }, 60_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))));
    await sim?.close();
    await s?.close();
  });

  it('a key revoked in the console is refused by both gateways within a second', async () => {
    const created = await j(owner.api('POST', `/api/orgs/${slug}/keys`, { name: 'revoke-me' }));
    const clients = gateways.map((baseURL) => new OpenAI({ baseURL, apiKey: created.key, maxRetries: 0 }));
    // warm: both gateways hold the key in memory
    for (const c of clients) await expect(c.chat.completions.create({ model: CHAT_MODEL, messages })).resolves.toMatchObject({ object: 'chat.completion' });

    expect((await owner.api('DELETE', `/api/orgs/${slug}/keys/${created.id}`)).status).toBe(200);
    const revokedAt = Date.now();
    const refusedAfter = await Promise.all(
      clients.map(async (c) => {
        for (;;) {
          const status = await c.models.list().then(
            () => 200,
            (e: { status?: number }) => e.status ?? 0,
          );
          if (status === 401) return Date.now() - revokedAt;
          if (Date.now() - revokedAt > 5_000) return Infinity;
        }
      }),
    );
    for (const ms of refusedAfter) expect(ms).toBeLessThan(1_000);
    for (const c of clients) {
      await expect(c.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
    }
  });

  it('a monthly budget set in the console is enforced by both gateways, and raising it lets requests through again', async () => {
    const orgSlug = `budget-${Math.random().toString(36).slice(2, 10)}`;
    expect((await owner.api('POST', '/api/orgs', { slug: orgSlug, name: 'Budget' })).status).toBe(201);
    const created = await j(owner.api('POST', `/api/orgs/${orgSlug}/keys`, { name: 'budgeted' }));
    const clients = gateways.map((baseURL) => new OpenAI({ baseURL, apiKey: created.key, maxRetries: 0 }));
    const outcome = (c: OpenAI) =>
      c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 8 }).then(
        () => ({ status: 200, code: null as string | null, retry: null as string | null }),
        (e: { status?: number; code?: string; headers?: Headers }) => ({ status: e.status ?? 0, code: e.code ?? null, retry: e.headers?.get('x-should-retry') ?? null }),
      );
    /** Polls a gateway until `done` holds (a change is pushed, not waited out: this takes well under a second). */
    const until = async (c: OpenAI, done: (o: Awaited<ReturnType<typeof outcome>>) => boolean) => {
      const deadline = Date.now() + 5_000;
      for (;;) {
        const o = await outcome(c);
        if (done(o) || Date.now() > deadline) return o;
      }
    };
    for (const c of clients) expect((await outcome(c)).status).toBe(200);

    expect(await j(owner.api('PATCH', `/api/orgs/${orgSlug}`, { monthlyBudgetUsd: 0 }))).toMatchObject({ monthlyBudgetUsd: 0 });
    for (const c of clients) {
      expect(await until(c, (o) => o.status === 429)).toEqual({ status: 429, code: 'insufficient_quota', retry: 'false' });
    }
    expect((await owner.api('PATCH', `/api/orgs/${orgSlug}`, { monthlyBudgetUsd: 100 })).status).toBe(200);
    for (const c of clients) expect(await until(c, (o) => o.status === 200)).toMatchObject({ status: 200 });
  });

  it('an RPM limit set in the console holds across both gateways, exactly', async () => {
    const created = await j(owner.api('POST', `/api/orgs/${slug}/keys`, { name: 'limited' }));
    const clients = gateways.map((baseURL) => new OpenAI({ baseURL, apiKey: created.key, maxRetries: 0 }));
    // warm without a limit, then set it: the change is pushed to the gateways
    for (const c of clients) await c.chat.completions.create({ model: CHAT_MODEL, messages });
    expect((await owner.api('PATCH', `/api/orgs/${slug}/keys/${created.id}`, { rpmLimit: 12 })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    // limits count per clock minute: start with time left in this one
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 8_000) await new Promise((r) => setTimeout(r, left + 50));
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        clients[i % 2].chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 1 }).then(
          () => 'ok',
          (e: { status?: number; code?: string }) => `${e.status}:${e.code}`,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(12);
    expect(outcomes.filter((o) => o === '429:rate_limit_exceeded')).toHaveLength(28);
  });
});
