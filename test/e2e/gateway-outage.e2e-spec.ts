import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import OpenAI from 'openai';
import { CHAT_MODEL, type GatewayStack, startGatewayStack } from '../support/gateway-stack';
import { freePort } from '../support/free-port';
import { PgProxy } from '../support/pg-proxy';

const messages = [{ role: 'user' as const, content: 'hi' }];

describe('gateway: a Postgres outage', () => {
  let proxy: PgProxy;
  let s: GatewayStack;
  let prisma: PrismaService;

  beforeAll(async () => {
    const direct = loadConfig(process.env);
    proxy = await PgProxy.start();
    // the gateway reaches Postgres only through the proxy, which the test can cut
    s = await startGatewayStack({ DATABASE_URL: proxy.url(direct.DATABASE_URL), KEY_CACHE_TTL_MS: '200' });
    prisma = new PrismaService(direct);
  });
  afterAll(async () => {
    proxy.restore();
    await s?.close();
    await proxy?.close();
    await prisma?.$disconnect();
  });

  it('keeps serving warm keys, stays ready, refuses unknown keys with 503, and writes the usage once Postgres is back', async () => {
    await s.client.chat.completions.create({ model: CHAT_MODEL, messages }); // warm
    const cold = await s.newKey();
    proxy.cut();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { request_id } = await s.client.chat.completions.create({ model: CHAT_MODEL, messages }).withResponse();
      ids.push(request_id!);
      await new Promise((r) => setTimeout(r, 60)); // past the 200 ms cache TTL: re-checks fail, the cached answer stands
    }
    expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
    const coldClient = new OpenAI({ baseURL: s.baseURL, apiKey: cold.key, maxRetries: 0 });
    await expect(coldClient.models.list()).rejects.toMatchObject({ status: 503 });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(Number(/^gateway_usage_events_pending (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(5);

    proxy.restore();
    const usage = new UsageEventsRepository(prisma);
    const deadline = Date.now() + 10_000;
    let rows = await usage.findByRequestIds(ids);
    while (rows.length < ids.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      rows = await usage.findByRequestIds(ids);
    }
    expect(rows.map((r) => r.requestId).sort()).toEqual([...ids].sort());
    expect(rows.every((r) => r.status === 200 && r.completionTokens > 0)).toBe(true);
  });
});

describe('gateway: Redis unreachable', () => {
  it('stays alive but reports not ready, so a load balancer sends traffic elsewhere', async () => {
    const port = await freePort();
    const s = await startGatewayStack({ REDIS_URL: `redis://127.0.0.1:${port}` });
    try {
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      const ready = await fetch(`${s.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'not_ready' });
    } finally {
      await s.close();
    }
  });
});
