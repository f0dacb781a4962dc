import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, UsageEventsRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import { RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { createGatewayApp } from '../../apps/gateway/src/gateway-app';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { TierIdleService } from '../../apps/worker/src/tiers/tier-idle.service';

/* eslint-disable @typescript-eslint/no-explicit-any */
const UPSTREAM = 'meta-llama/Llama-3.1-8B-Instruct';
const ADMIN = 'admin-token-for-wake-tests-000000';
const messages = [{ role: 'user' as const, content: 'hi' }];

const wakeCalls = (sim: SimServer) => sim.received.filter((r) => r.method === 'POST' && r.path === '/wake_up').length;

async function sleepSim(sim: SimServer): Promise<void> {
  await fetch(`${sim.url}/sleep?level=1`, { method: 'POST' });
}

interface Gateway {
  app: NestFastifyApplication;
  root: string;
  client: OpenAI;
  tiersFile: string;
}

/** Tiers that sleep (vLLM sleep mode on vllm-sim) behind in-process gateways sharing one Redis prefix. */
describe('gateway: sleeping tiers wake on demand', () => {
  const prefix = `test:${randomUUID()}:`;
  let dir: string;
  let key: string;
  let orgId: string;
  const gateways: Gateway[] = [];
  const sims: SimServer[] = [];

  async function sim(wakeUpMs: number, more: { itlMs?: number; outputTokens?: number } = {}): Promise<SimServer> {
    const s = await startSim({ models: [UPSTREAM], wakeUpMs, outputTokens: 4, ...more });
    sims.push(s);
    return s;
  }

  async function gateway(tiers: string, env: Record<string, string> = {}): Promise<Gateway> {
    const file = join(dir, `tiers-${randomUUID()}.yaml`);
    writeFileSync(file, tiers);
    const config = loadConfig({
      ...process.env,
      TIERS_FILE: file,
      REDIS_PREFIX: prefix,
      USAGE_SPOOL_DIR: join(dir, `spool-${randomUUID()}`),
      USAGE_FLUSH_MS: '20',
      LOG_LEVEL: 'silent',
      ADMIN_TOKEN: ADMIN,
      ...env,
    });
    const app = await createGatewayApp(config, { logger: false });
    await app.listen(0, '127.0.0.1');
    const root = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    if (key === undefined) {
      const org = await app.get(OrgsRepository).create(`wk-${randomUUID().slice(0, 12)}`, 'Wake');
      orgId = org!.id;
      const minted = mintApiKey();
      await app.get(ApiKeysRepository).create({ orgId, name: 'wake', prefix: minted.prefix, secretHash: minted.secretHash, allowedModels: [], expiresAt: null, createdById: null });
      key = minted.key;
    }
    const g = { app, root, client: new OpenAI({ baseURL: `${root}/v1`, apiKey: key, maxRetries: 0 }), tiersFile: file };
    gateways.push(g);
    return g;
  }

  const tier = (name: string, kind: string, url: string, model: string, extra = '') =>
    `  - name: ${name}\n    kind: ${kind}\n    endpoints: [${url}]\n${extra}    models:\n      - { id: ${model}, upstream: ${UPSTREAM}, price: { input_per_mtok: 0.05, output_per_mtok: 0.10 } }\n`;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tiers-wake-'));
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.app.close()));
    await Promise.all(sims.map((s) => s.close().catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  it('20 concurrent requests to a sleeping tier trigger exactly one wake, shared by two gateways; all succeed after it', async () => {
    const spot = await sim(400);
    await sleepSim(spot);
    const tiers = `tiers:\n${tier('sleepy', 'spot', spot.url, 'wake-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n    fallback_while_waking: false\n')}`;
    const [a, b] = [await gateway(tiers), await gateway(tiers)];
    const state: any = await (await fetch(`${a.root}/admin/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
    expect(state.tiers[0]).toMatchObject({ name: 'sleepy', state: 'asleep', wake: { driver: 'vllm-sleep' } });

    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => [a, b][i % 2].client.chat.completions.create({ model: 'wake-model', messages })),
    );
    expect(answers.every((r) => typeof r.choices[0].message.content === 'string')).toBe(true);
    expect(wakeCalls(spot)).toBe(1);
    // every request reached the engine after the wake (held, not refused and retried)
    const paths = spot.received.map((r) => r.path);
    expect(paths.filter((p) => p === '/v1/chat/completions')).toHaveLength(20);
    expect(paths.indexOf('/wake_up')).toBeLessThan(paths.indexOf('/v1/chat/completions'));
    expect(spot.stats.requests).toBe(20);
    expect(spot.sleeping).toBe(false);
    const after: any = await (await fetch(`${b.root}/admin/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
    expect(after.tiers[0].state).toBe('awake');
    expect(after.tiers[0].history.map((h: { state: string }) => h.state)).toEqual(expect.arrayContaining(['awake', 'waking', 'asleep']));
    const metrics = await (await fetch(`${a.root}/metrics`)).text();
    expect(metrics).toMatch(/gateway_tier_wakes_total\{tier="sleepy",outcome="awake"\} 1/);
  });

  it('past the wake deadline: 503 with retry-after in the OpenAI envelope, and the model is still listed', async () => {
    const spot = await sim(3_000);
    await sleepSim(spot);
    const g = await gateway(`tiers:\n${tier('slow', 'spot', spot.url, 'slow-model', '    wake: { driver: vllm-sleep, deadline_s: 0.3 }\n    fallback_while_waking: false\n')}`);
    const err = await g.client.chat.completions.create({ model: 'slow-model', messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err).toMatchObject({ status: 503, code: 'model_waking', type: 'server_error' });
    expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toMatch(/^\d+$/);
    expect((await g.client.models.list()).data.map((m) => m.id)).toContain('slow-model');
  });

  it('falls back to on-demand while spot wakes, and spot wakes meanwhile; usage is on-demand', async () => {
    const spot = await sim(500);
    const od = await sim(0);
    await sleepSim(spot);
    const g = await gateway(
      `tiers:\n${tier('od-tier', 'on-demand', od.url, 'fb-model')}${tier('spot-tier', 'spot', spot.url, 'fb-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n')}`,
    );
    const res = await g.client.chat.completions.create({ model: 'fb-model', messages }).withResponse();
    expect(od.stats.completed).toBe(1);
    expect(spot.received.filter((r) => r.path === '/v1/chat/completions')).toHaveLength(0);
    const usage = g.app.get(UsageEventsRepository);
    let row = await usage.findByRequestId(res.request_id!);
    for (let i = 0; i < 100 && row === null; i++) {
      await new Promise((r) => setTimeout(r, 20));
      row = await usage.findByRequestId(res.request_id!);
    }
    expect(row?.tier).toBe('od-tier');
    for (let i = 0; i < 100 && spot.sleeping; i++) await new Promise((r) => setTimeout(r, 20));
    expect(spot.sleeping).toBe(false);
    expect(wakeCalls(spot)).toBe(1);
    // once awake, spot is preferred again
    await new Promise((r) => setTimeout(r, 50));
    await g.client.chat.completions.create({ model: 'fb-model', messages });
    expect(spot.stats.completed).toBe(1);
  });

  it('the worker puts an idle tier to sleep, never while a request is in flight; the next request wakes it', async () => {
    const spot = await sim(200, { itlMs: 15, outputTokens: 200 });
    const g = await gateway(`tiers:\n${tier('idle-tier', 'spot', spot.url, 'idle-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n    idle_sleep_s: 1\n    fallback_while_waking: false\n')}`);
    const config = loadConfig({ ...process.env, TIERS_FILE: g.tiersFile, REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' });
    const redis = new Redis(config.REDIS_URL);
    try {
      const worker = new TierIdleService(config, redis, new RedisKeys(config));
      // a 3-second stream in flight across the idle timeout
      const stream = await g.client.chat.completions.create({ model: 'idle-model', messages, stream: true });
      const reading = (async () => {
        let n = 0;
        for await (const c of stream) if (c.choices[0]?.delta?.content) n++;
        return n;
      })();
      await new Promise((r) => setTimeout(r, 2_200));
      const busy = await worker.runPass();
      expect(busy.busy).toEqual(['idle-tier']);
      expect(spot.sleeping).toBe(false);
      expect(await reading).toBe(200);

      // idle now: after idle_sleep_s without requests (and a heartbeat to say so), the worker puts it to sleep
      let slept: string[] = [];
      for (let i = 0; i < 40 && slept.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 250));
        slept = (await worker.runPass()).slept;
      }
      expect(slept).toEqual(['idle-tier']);
      expect(spot.sleeping).toBe(true);
      expect(spot.received.filter((r) => r.path === '/sleep')).toHaveLength(1);
      // the gateway hears it, and the next request wakes the tier again
      for (let i = 0; i < 50; i++) {
        const s: any = await (await fetch(`${g.root}/admin/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
        if (s.tiers[0].state === 'asleep') break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const answer = await g.client.chat.completions.create({ model: 'idle-model', messages, max_tokens: 3 });
      expect(answer.choices[0].message.content).toEqual(expect.any(String));
      expect(wakeCalls(spot)).toBe(1);
      expect(spot.sleeping).toBe(false);
    } finally {
      await redis.quit();
    }
  }, 30_000);

  it('a sleeping on-demand tier stays asleep while spot serves, and is woken when spot vanishes: no request fails', async () => {
    const spot = await sim(0);
    const od = await sim(300);
    await sleepSim(od);
    const g = await gateway(`tiers:\n${tier('spot-only', 'spot', spot.url, 'pre-model')}${tier('od-asleep', 'on-demand', od.url, 'pre-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n')}`);
    for (let i = 0; i < 3; i++) await g.client.chat.completions.create({ model: 'pre-model', messages });
    expect(spot.stats.completed).toBe(3);
    expect(wakeCalls(od)).toBe(0);
    expect(od.sleeping).toBe(true);

    await spot.close(); // preempted: its port refuses connections
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        g.client.chat.completions.create({ model: 'pre-model', messages, stream: i % 2 === 0 }).then(
          async (r) => {
            if ('choices' in r) return r.choices[0].message.content ? 'ok' : 'empty';
            let text = '';
            for await (const chunk of r) text += chunk.choices[0]?.delta?.content ?? '';
            return text ? 'ok' : 'empty';
          },
          (e: { status?: number }) => `error ${e.status}`,
        ),
      ),
    );
    expect(outcomes).toEqual(Array(10).fill('ok'));
    expect(wakeCalls(od)).toBe(1);
    expect(od.stats.completed).toBe(10);
  });

  it('the worker never puts a tier to sleep under a request that no gateway report shows yet', async () => {
    const spot = await sim(0, { itlMs: 10, outputTokens: 150 });
    const g = await gateway(`tiers:\n${tier('race-tier', 'spot', spot.url, 'race-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n    idle_sleep_s: 1\n    fallback_while_waking: false\n')}`);
    const config = loadConfig({ ...process.env, TIERS_FILE: g.tiersFile, REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' });
    const redis = new Redis(config.REDIS_URL);
    try {
      const worker = new TierIdleService(config, redis, new RedisKeys(config));
      expect((await worker.runPass()).slept).toEqual([]); // first sight counts as a use
      await new Promise((r) => setTimeout(r, 1_300));
      // idle by every report; a stream starts, and the worker looks before the gateway's next report
      const stream = await g.client.chat.completions.create({ model: 'race-model', messages, stream: true });
      const pass = await worker.runPass();
      expect(pass).toMatchObject({ slept: [], busy: ['race-tier'] });
      let n = 0;
      for await (const c of stream) if (c.choices[0]?.delta?.content) n++;
      expect(n).toBe(150);
      expect(spot.sleeping).toBe(false);
      expect(spot.received.filter((r) => r.path === '/sleep')).toHaveLength(0);
    } finally {
      await redis.quit();
    }
  });

  it('while the worker drains a tier, requests wait (acknowledged in the gateway\'s report) and go on when it calls the drain off', async () => {
    const spot = await sim(0);
    const g = await gateway(`tiers:\n${tier('drain-tier', 'spot', spot.url, 'drain-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n    fallback_while_waking: false\n')}`);
    await g.client.chat.completions.create({ model: 'drain-model', messages });
    const redis = new Redis(loadConfig(process.env).REDIS_URL);
    const reports = async () => {
      const keys = await redis.keys(`${prefix}tier:drain-tier:gw:*`);
      return (await Promise.all(keys.map((k) => redis.get(k)))).map((v) => JSON.parse(v!) as { inflight: number; waiters: number; ack: string | null });
    };
    try {
      // what the worker does: take the tier's lock, then announce the drain
      await redis.set(`${prefix}tier:drain-tier:lock`, 'test-worker', 'PX', 20_000);
      await redis.publish(`${prefix}tiers:state`, JSON.stringify({ tier: 'drain-tier', state: 'draining', epoch: 'epoch-1', gateway: 'test-worker' }));
      let acked = false;
      for (let i = 0; i < 100 && !acked; i++) {
        acked = (await reports()).some((r) => r.ack === 'epoch-1');
        if (!acked) await new Promise((r) => setTimeout(r, 20));
      }
      expect(acked).toBe(true);
      const pending = g.client.chat.completions.create({ model: 'drain-model', messages });
      let waiting = 0;
      for (let i = 0; i < 100 && waiting === 0; i++) {
        waiting = (await reports()).reduce((n, r) => n + r.waiters, 0);
        if (waiting === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(waiting).toBe(1);
      expect(spot.stats.requests).toBe(1); // held: nothing new went to the draining tier
      await redis.del(`${prefix}tier:drain-tier:lock`);
      await redis.publish(`${prefix}tiers:state`, JSON.stringify({ tier: 'drain-tier', state: 'awake', gateway: 'test-worker' }));
      expect((await pending).choices[0].message.content).toEqual(expect.any(String));
      expect(spot.stats.requests).toBe(2);
      expect(wakeCalls(spot)).toBe(0);
    } finally {
      await redis.quit();
    }
  });

  it('a tier put to sleep behind the gateway\'s back is found asleep on the engine\'s 503, and the SDK\'s retry wakes it', async () => {
    const spot = await sim(200);
    const g = await gateway(`tiers:\n${tier('op-slept', 'spot', spot.url, 'op-model', '    wake: { driver: vllm-sleep, deadline_s: 10 }\n    fallback_while_waking: false\n')}`);
    await g.client.chat.completions.create({ model: 'op-model', messages });
    await sleepSim(spot); // an operator, not our worker: no announcement
    const retrying = new OpenAI({ baseURL: `${g.root}/v1`, apiKey: key, maxRetries: 2 });
    const answer = await retrying.chat.completions.create({ model: 'op-model', messages });
    expect(answer.choices[0].message.content).toEqual(expect.any(String));
    expect(wakeCalls(spot)).toBe(1);
    expect(spot.sleeping).toBe(false);
  });
});
