import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '@spot/config';
import { PrismaService } from '@spot/db';
import OpenAI from 'openai';
import { seedOrgKey } from '../support/gateway-process';
import { freePort } from '../support/free-port';

/* eslint-disable @typescript-eslint/no-explicit-any */
jest.setTimeout(90_000);

const ROOT = resolve(__dirname, '../..');
const ADMIN = 'admin-token-for-start-tiers-0000';

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const srv = createServer();
    srv.once('error', () => done(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => done(true)));
  });
}

/** A port p with p..p+3 free (the demo's four simulators). */
async function fourFreePorts(): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (p + 3 < 65536 && (await Promise.all([1, 2, 3].map((i) => portFree(p + i)))).every(Boolean)) return p;
  }
}

/** `npm start` over the default tiers.yaml (its ports moved to free ones): the three demo tiers, preempted and woken. */
describe('npm start: the demo tiers', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let child: ChildProcess;
  let output = '';
  let simPort = 0;
  let gatewayPort = 0;
  let env: NodeJS.ProcessEnv;
  const sim = (i: number) => `http://127.0.0.1:${simPort + i}`;
  const chats = async (i: number) =>
    ((await (await fetch(`${sim(i)}/sim/received`)).json()) as Array<{ method: string; path: string }>).filter((r) => r.path === '/v1/chat/completions').length;

  beforeAll(async () => {
    simPort = await fourFreePorts();
    gatewayPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'start-tiers-'));
    const tiers = readFileSync(join(ROOT, 'tiers.yaml'), 'utf8').replace(/127\.0\.0\.1:809([0-3])/g, (_m, i: string) => `127.0.0.1:${simPort + Number(i)}`);
    writeFileSync(join(dir, 'tiers.yaml'), tiers);
    env = {
      ...process.env,
      NO_COLOR: '1',
      GATEWAY_PORT: String(gatewayPort),
      CONSOLE_PORT: String(await freePort()),
      DEMO_IDP_PORT: String(await freePort()),
      SIM_PORT: String(simPort),
      SIM_ARGS: '--output-tokens 8 --wake-up-ms 300',
      ADMIN_TOKEN: ADMIN,
      TIERS_FILE: join(dir, 'tiers.yaml'),
      REDIS_PREFIX: `test:${randomUUID()}:`,
      USAGE_SPOOL_DIR: join(dir, 'spool'),
      GITHUB_CLIENT_ID: '',
      GITHUB_CLIENT_SECRET: '',
    };
    child = spawn(process.execPath, [join(ROOT, 'scripts/start.mjs')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (output += d));
    child.stderr!.on('data', (d: Buffer) => (output += d));
    const deadline = Date.now() + 60_000;
    while (!output.includes('spotinference is up.')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`npm start did not come up:\n${output.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 90_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
    }
    await prisma.$disconnect();
  });

  it('runs a spot tier, an on-demand tier serving the same models and a sleeping tier; preempting spot moves requests to on-demand; a request wakes the sleeper', async () => {
    expect(output).toContain(`demo-spot (spot) on vllm-sim :${simPort}, :${simPort + 1}: llama-3.1-8b, qwen2.5-7b, bge-m3`);
    expect(output).toContain(`demo-on-demand (on-demand) on vllm-sim :${simPort + 2}: llama-3.1-8b, qwen2.5-7b, bge-m3`);
    expect(output).toContain(`demo-sleepy (on-demand, asleep until its first request) on vllm-sim :${simPort + 3}: llama-3.1-70b`);
    expect(output).toContain('npm run cli -- tier preempt demo-spot --in 1s');
    expect(((await (await fetch(`${sim(3)}/is_sleeping`)).json()) as any).is_sleeping).toBe(true);

    const { key } = await seedOrgKey(prisma, { slugPrefix: 'start-tiers' });
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${gatewayPort}/v1`, apiKey: key, maxRetries: 0 });
    const ask = (model = 'llama-3.1-8b') => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello' }] });
    await ask();
    expect((await chats(0)) + (await chats(1))).toBe(1);
    expect(await chats(2)).toBe(0);

    // the quick start's command, as a newcomer types it (npm run cli builds first: run the built CLI directly)
    const cli = spawn(process.execPath, [join(ROOT, 'dist/apps/cli/src/main.js'), 'tier', 'preempt', 'demo-spot', '--in', '30s'], { cwd: ROOT, env, stdio: 'ignore' });
    expect(await new Promise((r) => cli.once('exit', r))).toBe(0);
    for (const deadline = Date.now() + 10_000; ; ) {
      const view: any = await (await fetch(`http://127.0.0.1:${gatewayPort}/admin/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
      const spot = view.tiers.find((t: any) => t.name === 'demo-spot');
      if (spot.endpoints.every((e: any) => e.notice?.source === 'cli')) break;
      if (Date.now() > deadline) throw new Error(`the gateway did not take the notice: ${JSON.stringify(spot)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await Promise.all([ask(), ask(), ask()]);
    expect((await chats(0)) + (await chats(1))).toBe(1);
    expect(await chats(2)).toBe(3);

    const big = await ask('llama-3.1-70b');
    expect(big.choices[0].message.content).toEqual(expect.any(String));
    expect(((await (await fetch(`${sim(3)}/is_sleeping`)).json()) as any).is_sleeping).toBe(false);
  });
});
