import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { freePort } from '../support/free-port';
import { TIER_UPSTREAM, tierYaml } from '../support/tiers-stack';

const MAIN = resolve(__dirname, '../../dist/apps/gateway/src/main.js');

/** Two built gateway processes, one sleeping tier: one wake between them. */
describe('two gateway processes share one wake', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const children: ChildProcess[] = [];
  let sim: SimServer;

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await sim?.close();
    await prisma.$disconnect();
  });

  it('requests through both wake the tier once and all succeed', async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    sim = await startSim({ models: [TIER_UPSTREAM], wakeUpMs: 600, outputTokens: 3 });
    await fetch(`${sim.url}/sleep?level=1`, { method: 'POST' });
    const dir = mkdtempSync(join(tmpdir(), 'tiers-proc-'));
    writeFileSync(join(dir, 'tiers.yaml'), `tiers:\n${tierYaml('shared', 'spot', sim.url, 'shared-model', '    wake: { driver: vllm-sleep, deadline_s: 15 }\n    fallback_while_waking: false\n')}`);
    const org = await new OrgsRepository(prisma).create(`tp-${randomUUID().slice(0, 12)}`, 'Processes');
    const minted = mintApiKey();
    await new ApiKeysRepository(prisma).create({ orgId: org!.id, name: 'p', prefix: minted.prefix, secretHash: minted.secretHash, allowedModels: [], expiresAt: null, createdById: null });
    const prefix = `test:${randomUUID()}:`;
    const urls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      children.push(
        spawn(process.execPath, [MAIN], {
          env: { ...process.env, TIERS_FILE: join(dir, 'tiers.yaml'), GATEWAY_PORT: String(port), GATEWAY_HOST: '127.0.0.1', REDIS_PREFIX: prefix, USAGE_SPOOL_DIR: join(dir, `spool-${i}`), LOG_LEVEL: 'warn' },
          stdio: ['ignore', 'ignore', 'inherit'],
        }),
      );
      urls.push(`http://127.0.0.1:${port}`);
    }
    for (const url of urls) {
      const deadline = Date.now() + 20_000;
      while (!(await fetch(`${url}/readyz`).then((r) => r.ok, () => false))) {
        if (Date.now() > deadline) throw new Error('gateway did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const clients = urls.map((u) => new OpenAI({ baseURL: `${u}/v1`, apiKey: minted.key, maxRetries: 0, timeout: 20_000 }));
    const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => clients[i % 2].chat.completions.create({ model: 'shared-model', messages: [{ role: 'user', content: 'hi' }] })));
    expect(answers.every((a) => typeof a.choices[0].message.content === 'string')).toBe(true);
    expect(sim.received.filter((r) => r.path === '/wake_up')).toHaveLength(1);
    expect(sim.sleeping).toBe(false);
  }, 60_000);
});
