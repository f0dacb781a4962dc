import { ApiKeysRepository, PrismaService } from '@spot/db';
import { KEY_CHANGED_CHANNEL, KEY_REVOCATION_CHANNEL } from '@spot/keys';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { CHAT_MODEL, type GatewayStack, OTHER_MODEL, startGatewayStack } from '../support/gateway-stack';

const messages = [{ role: 'user' as const, content: 'hi' }];

/** Limits count per clock minute: start a limit test with time left in the window. */
async function freshWindow(needMs = 5_000): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < needMs) await new Promise((r) => setTimeout(r, left + 50));
}

describe('gateway: keys and limits', () => {
  let s: GatewayStack;
  let redis: Redis;

  beforeAll(async () => {
    s = await startGatewayStack();
    redis = new Redis(s.config.REDIS_URL);
  });
  afterAll(async () => {
    await redis?.quit();
    await s?.close();
  });

  it('serves a warm key from memory: repeated requests read Postgres once', async () => {
    const { key } = await s.newKey();
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    const misses = async () => {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      return Number(/^gateway_key_lookups_total (\d+)/m.exec(text)?.[1] ?? NaN);
    };
    const before = await misses();
    await Promise.all(Array.from({ length: 5 }, () => client.models.list()));
    for (let i = 0; i < 5; i++) await client.chat.completions.create({ model: CHAT_MODEL, messages });
    expect((await misses()) - before).toBe(1);
  });

  it('a revocation pushed over Redis is refused within a second, although the key is warm', async () => {
    const { key, id, secretHash } = await s.newKey();
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await client.chat.completions.create({ model: CHAT_MODEL, messages }); // warm
    await s.app.get(ApiKeysRepository).revoke(id, new Date());
    const t0 = Date.now();
    await redis.publish(s.config.REDIS_PREFIX + KEY_REVOCATION_CHANNEL, JSON.stringify({ secretHash, keyId: id }));
    let status = 200;
    while (Date.now() - t0 < 1000) {
      status = await client.models
        .list()
        .then(() => 200)
        .catch((e: { status: number }) => e.status);
      if (status === 401) break;
    }
    expect(status).toBe(401);
    expect(Date.now() - t0).toBeLessThan(1000);
    await expect(client.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toMatchObject({
      status: 401,
      code: 'invalid_api_key',
      message: expect.stringMatching(/revoked/),
    });
  });

  it('a key whose settings changed is re-read at once when the change is pushed (allowed models narrowed)', async () => {
    const { key, id, secretHash } = await s.newKey();
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await client.chat.completions.create({ model: CHAT_MODEL, messages }); // warm
    await s.app.get(PrismaService).apiKey.update({ where: { id }, data: { allowedModels: [OTHER_MODEL] } });
    // not pushed yet: the warm key still carries its old settings
    await client.chat.completions.create({ model: CHAT_MODEL, messages });
    await redis.publish(s.config.REDIS_PREFIX + KEY_CHANGED_CHANNEL, JSON.stringify({ secretHash, keyId: id }));
    const t0 = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - t0 < 1000) {
      status = await client.chat.completions.create({ model: CHAT_MODEL, messages }).then(
        () => 200,
        (e: { status: number }) => e.status,
      );
    }
    expect(status).toBe(404);
    await expect(client.chat.completions.create({ model: OTHER_MODEL, messages })).resolves.toMatchObject({ object: 'chat.completion' });
  });

  it('re-checks a warm key behind the request once its TTL passes: a revocation missed by pub/sub still lands', async () => {
    const short = await startGatewayStack({ KEY_CACHE_TTL_MS: '150' });
    try {
      const { key, id } = await short.newKey();
      const client = new OpenAI({ baseURL: short.baseURL, apiKey: key, maxRetries: 0 });
      await client.models.list(); // warm
      await short.app.get(ApiKeysRepository).revoke(id, new Date()); // no pub/sub message
      await new Promise((r) => setTimeout(r, 200));
      // past the TTL the cached answer is served once more while Postgres is asked behind the request
      await expect(client.models.list()).resolves.toBeDefined();
      const deadline = Date.now() + 2000;
      let status = 200;
      while (status === 200 && Date.now() < deadline) {
        status = await client.models.list().then(() => 200, (e: { status: number }) => e.status);
      }
      expect(status).toBe(401);
    } finally {
      await short.close();
    }
  });

  it('a key revoked in Postgres is refused on first use (cold cache)', async () => {
    const { key, id } = await s.newKey();
    await s.app.get(ApiKeysRepository).revoke(id, new Date());
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await expect(client.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('enforces a per-key requests-per-minute limit with 429 rate_limit_exceeded and retry-after-ms', async () => {
    const { key } = await s.newKey({ rpmLimit: 2 });
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await freshWindow();
    await client.chat.completions.create({ model: CHAT_MODEL, messages });
    await client.chat.completions.create({ model: CHAT_MODEL, messages });
    const err = await client.chat.completions.create({ model: CHAT_MODEL, messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.type).toBe('requests');
    expect(Number(e.headers?.get('retry-after-ms'))).toBeGreaterThan(0);
    // a refused request is not billed
    const refusedId = e.headers?.get('x-request-id');
    expect(refusedId).toMatch(/^req_/);
    expect(await s.usageRow(refusedId!, 300)).toBeNull();
    // once refused, the rest of the window is refused here without asking Redis or the engine
    const seen = s.sim.stats.requests;
    await expect(client.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toMatchObject({ status: 429 });
    expect(s.sim.stats.requests).toBe(seen);
  });

  it('overlaps the limit check with the engine: a refusal aborts the engine request and nothing reaches the client', async () => {
    const slow = await startGatewayStack({}, { ttftMs: 2_000 });
    try {
      await slow.client.chat.completions.create({ model: CHAT_MODEL, messages }); // a warm connection to the engine
      const { key } = await slow.newKey({ tpmLimit: 50 });
      const client = new OpenAI({ baseURL: slow.baseURL, apiKey: key, maxRetries: 0 });
      await client.models.list(); // a warm key: the refusal below comes from Redis, not from a Postgres read
      await freshWindow();
      const t0 = Date.now();
      const err = await client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 100, stream: true }).catch((e: unknown) => e);
      expect(err).toMatchObject({ status: 429, type: 'tokens' });
      expect(Date.now() - t0).toBeLessThan(1_500); // the refusal did not wait for the engine's first token (2 s)
      await new Promise((r) => setTimeout(r, 2_200 - (Date.now() - t0))); // past the engine's time to first token
      // the engine got the request at once, and it was aborted when the refusal came in
      expect(slow.sim.stats).toMatchObject({ requests: 2, completed: 1, aborted: 1 });
    } finally {
      await slow.close();
    }
  });

  it('shares a limit between two gateways exactly, with local leases', async () => {
    const other = await startGatewayStack({ REDIS_PREFIX: s.config.REDIS_PREFIX });
    try {
      const { key } = await s.newKey({ rpmLimit: 25 });
      await freshWindow();
      const clients = [s, other].map((g) => new OpenAI({ baseURL: g.baseURL, apiKey: key, maxRetries: 0 }));
      const outcomes = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          clients[i % 2].chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 1 }).then(
            () => 'ok',
            (e: { status?: number }) => String(e.status),
          ),
        ),
      );
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(25);
      expect(outcomes.filter((o) => o === '429')).toHaveLength(35);
    } finally {
      await other.close();
    }
  });

  it('enforces a tokens-per-minute limit on the reserved worst case', async () => {
    const { key } = await s.newKey({ tpmLimit: 100 });
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await freshWindow();
    await client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 40 });
    const err = await client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 80 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'tokens' });
  });
});
