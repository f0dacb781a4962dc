import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, UsageEventsRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI from 'openai';
import { createGatewayApp } from '../../apps/gateway/src/gateway-app';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';

const MODEL = 'llama-failover';
const UPSTREAM = 'meta-llama/Llama-3.1-8B-Instruct';
const ADMIN = 'admin-token-for-tests-0123456789';
const messages = [{ role: 'user' as const, content: 'hi' }];

interface AdminEndpoint {
  url: string;
  state: string;
  ejections: number;
}

/**
 * A model served by a spot tier of two replicas and an on-demand tier of one, each a vllm-sim, behind an
 * in-process gateway: spot replicas vanish, fail, come back.
 */
describe('gateway: tier routing and failover', () => {
  let spotA: SimServer;
  let spotB: SimServer;
  let onDemand: SimServer;
  let app: NestFastifyApplication;
  let baseURL: string;
  let root: string;
  let client: OpenAI;
  let dir: string;

  async function admin(): Promise<Record<string, AdminEndpoint>> {
    const res = await fetch(`${root}/admin/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const body = (await res.json()) as { tiers: Array<{ endpoints: AdminEndpoint[] }> };
    return Object.fromEntries(body.tiers.flatMap((t) => t.endpoints).map((e) => [e.url, e]));
  }

  beforeAll(async () => {
    // spot replicas write long answers unless max_tokens caps them (the preemption test needs streams in flight)
    spotA = await startSim({ models: [UPSTREAM], itlMs: 3, outputTokens: 300 });
    spotB = await startSim({ models: [UPSTREAM], itlMs: 3, outputTokens: 300 });
    onDemand = await startSim({ models: [UPSTREAM], itlMs: 5, outputTokens: 8 });
    dir = mkdtempSync(join(tmpdir(), 'gw-failover-'));
    writeFileSync(
      join(dir, 'tiers.yaml'),
      `tiers:
  - name: od
    kind: on-demand
    endpoints: [${onDemand.url}]
    models:
      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: 0.20, output_per_mtok: 0.40 } }
  - name: spot
    kind: spot
    endpoints: [${spotA.url}, ${spotB.url}]
    models:
      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: 0.05, output_per_mtok: 0.10 } }
`,
    );
    const config = loadConfig({
      ...process.env,
      TIERS_FILE: join(dir, 'tiers.yaml'),
      REDIS_PREFIX: `test:${randomUUID()}:`,
      USAGE_SPOOL_DIR: join(dir, 'spool'),
      USAGE_FLUSH_MS: '20',
      LOG_LEVEL: 'silent',
      ADMIN_TOKEN: ADMIN,
      BREAKER_FAILURES: '2',
      BREAKER_COOLDOWN_MS: '300',
      HEALTH_CHECK_INTERVAL_MS: '200',
    });
    app = await createGatewayApp(config, { logger: false });
    await app.listen(0, '127.0.0.1');
    root = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    baseURL = `${root}/v1`;
    const org = await app.get(OrgsRepository).create(`fo-${randomUUID().slice(0, 12)}`, 'Failover');
    const minted = mintApiKey();
    await app.get(ApiKeysRepository).create({
      orgId: org!.id,
      name: 'fo',
      prefix: minted.prefix,
      secretHash: minted.secretHash,
      allowedModels: [],
      expiresAt: null,
      createdById: null,
    });
    client = new OpenAI({ baseURL, apiKey: minted.key, maxRetries: 0 });
  });

  afterAll(async () => {
    await app?.close();
    await Promise.all([spotA, spotB, onDemand].map((s) => s?.close().catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A short completion (8 tokens). */
  const ask = () => client.chat.completions.create({ model: MODEL, messages, max_tokens: 8 });

  async function usageRow(requestId: string) {
    const usage = app.get(UsageEventsRepository);
    for (let i = 0; i < 100; i++) {
      const row = await usage.findByRequestId(requestId);
      if (row) return row;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no usage row for ${requestId}`);
  }

  it('prefers spot, spreading over its replicas; usage and price follow the tier that served', async () => {
    await Promise.all(Array.from({ length: 8 }, () => ask()));
    expect(spotA.stats.completed + spotB.stats.completed).toBe(8);
    expect(spotA.stats.completed).toBeGreaterThan(0);
    expect(spotB.stats.completed).toBeGreaterThan(0);
    expect(onDemand.stats.completed).toBe(0);
    const res = await ask().withResponse();
    const row = await usageRow(res.request_id!);
    expect(row.tier).toBe('spot');
    expect(Number(row.costNanos)).toBe(row.promptTokens * 50 + row.completionTokens * 100);
  });

  it('retries a 5xx before the first byte on another replica, never a 4xx', async () => {
    spotA.reset();
    spotB.reset();
    spotA.faults.add({ kind: 'error-before', status: 503, count: 'always' });
    spotB.faults.add({ kind: 'error-before', status: 503, count: 1 });
    const ok = await ask();
    expect(ok.choices[0].message.content).toEqual(expect.any(String));
    spotA.faults.clear();
    spotB.faults.clear();

    spotA.reset();
    spotB.reset();
    onDemand.reset();
    spotA.faults.add({ kind: 'error-before', status: 400, count: 1 });
    spotB.faults.add({ kind: 'error-before', status: 400, count: 1 });
    const err = await ask().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(spotA.stats.requests + spotB.stats.requests + onDemand.stats.requests).toBe(1);
    spotA.faults.clear();
    spotB.faults.clear();
  });

  it('ejects a replica after repeated 5xx and brings it back through a half-open probe', async () => {
    // both spot replicas fail twice: each circuit opens, traffic goes on-demand without errors
    spotA.faults.add({ kind: 'error-before', status: 500, count: 'always' });
    spotB.faults.add({ kind: 'error-before', status: 500, count: 'always' });
    // the health checker would bring them back (their /health is fine): fail it too
    spotA.faults.add({ kind: 'error-before', path: '/health', status: 503, count: 'always' });
    spotB.faults.add({ kind: 'error-before', path: '/health', status: 503, count: 'always' });
    for (let i = 0; i < 4; i++) await ask();
    let state = await admin();
    expect(state[spotA.url].state).not.toBe('closed');
    expect(state[spotB.url].state).not.toBe('closed');
    onDemand.reset();
    await ask();
    expect(onDemand.stats.completed).toBe(1);

    spotA.faults.clear();
    spotB.faults.clear();
    spotA.reset();
    spotB.reset();
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      await ask();
      state = await admin();
      if (state[spotA.url].state === 'closed' && state[spotB.url].state === 'closed') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(state[spotA.url].state).toBe('closed');
    expect(state[spotB.url].state).toBe('closed');
    expect(state[spotA.url].ejections).toBeGreaterThan(0);
    spotA.reset();
    spotB.reset();
    await ask();
    expect(spotA.stats.completed + spotB.stats.completed).toBe(1);
  });

  it('a vanished spot tier (preempted): requests not yet streaming move on-demand with no error; streams under way are continued there', async () => {
    spotA.reset();
    spotB.reset();
    onDemand.reset();
    // a long stream in progress on spot when it vanishes
    const slowStreams = await Promise.all(
      [0, 1].map(() => client.chat.completions.create({ model: MODEL, messages, stream: true, max_tokens: 400 }, { timeout: 20_000 })),
    );
    const reading = slowStreams.map(async (stream) => {
      let text = '';
      let finishes = 0;
      try {
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta?.content ?? '';
          if (chunk.choices[0]?.finish_reason) finishes++;
        }
        return text !== '' && finishes === 1 ? 'clean end' : `text ${text.length}, ${finishes} finishes`;
      } catch {
        return 'error';
      }
    });
    await new Promise((r) => setTimeout(r, 100));
    const urls = [spotA.url, spotB.url];
    // both spot replicas disappear (their sockets are destroyed, their ports refuse)
    await Promise.all([spotA.close(), spotB.close()]);
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, stream: i % 2 === 0 }).then(
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
    expect(outcomes).toEqual(Array(20).fill('ok'));
    expect(onDemand.stats.completed).toBeGreaterThanOrEqual(20);
    // the streams under way went on on-demand from what spot had delivered (see gateway-continuation.e2e-spec.ts)
    expect(await Promise.all(reading)).toEqual(['clean end', 'clean end']);
    const state = await admin();
    for (const url of urls) expect(state[url].state).not.toBe('closed');
    // usage of a request served on-demand is priced on-demand
    const res = await ask().withResponse();
    const row = await usageRow(res.request_id!);
    expect(row.tier).toBe('od');
    expect(Number(row.costNanos)).toBe(row.promptTokens * 200 + row.completionTokens * 400);
  });

  it('/admin/tiers needs the admin token', async () => {
    expect((await fetch(`${root}/admin/tiers`)).status).toBe(401);
    expect((await fetch(`${root}/admin/tiers`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    // the spot replicas are gone: their circuits are open, half-open only for a moment after each cooldown until the
    // next health check fails (BREAKER_COOLDOWN_MS 300, HEALTH_CHECK_INTERVAL_MS 200), so the listing is read again then
    const list = async () => (await (await fetch(`${root}/admin/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { tiers: Array<{ name: string; state: string }> };
    let body = await list();
    for (let i = 0; i < 50 && body.tiers.some((t) => t.name === 'spot' && t.state !== 'unhealthy'); i++) {
      await new Promise((r) => setTimeout(r, 20));
      body = await list();
    }
    expect(body.tiers.map((t) => [t.name, t.state])).toEqual([
      ['od', 'awake'],
      ['spot', 'unhealthy'],
    ]);
  });
});
