import { randomUUID } from 'node:crypto';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, PrismaService } from '@spot/db';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { CHAT_MODEL, CHAT_UPSTREAM, tiersYaml } from '../support/gateway-stack';
import { PgProxy } from '../support/pg-proxy';

// Real gateway processes (dist/) over the real Postgres and Redis, Redis (and Postgres) behind a TCP proxy the
// test cuts (connections reset: Redis down) or blackholes (connections open, nothing answers: Redis hung).

const direct = loadConfig(process.env);
const redisTarget = { host: new URL(direct.REDIS_URL).hostname, port: Number(new URL(direct.REDIS_URL).port || 6379) };
const messages = [{ role: 'user' as const, content: 'hi' }];
// test tier prices: 0.05 $/M input (50 nano-USD a token), 0.10 $/M output (100)
const INPUT_NANOS = 50;
const OUTPUT_NANOS = 100;

type Outage = 'cut' | 'blackhole';

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function readyStatus(g: GatewayProcess): Promise<number> {
  return (await fetch(`${g.url}/readyz`)).status;
}

function client(g: GatewayProcess, key: string): OpenAI {
  return new OpenAI({ baseURL: g.baseURL, apiKey: key, maxRetries: 0 });
}

/** A request's outcome: 'ok', or the error code / status it got. */
async function outcome(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (err) {
    const e = err as { code?: string | null; status?: number };
    return e.code ?? String(e.status ?? err);
  }
}

describe.each<Outage>(['blackhole', 'cut'])('gateway: Redis %s', (mode) => {
  const prisma = new PrismaService(direct);
  let sim: SimServer;
  let redisProxy: PgProxy;
  let redis: Redis;
  const gateways: GatewayProcess[] = [];

  const outage = () => (mode === 'cut' ? redisProxy.cut() : redisProxy.blackhole());

  async function gateway(env: Record<string, string> = {}): Promise<GatewayProcess> {
    const g = await spawnGateway({
      tiersYaml: tiersYaml(sim.url),
      env: { REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`, USAGE_FLUSH_MS: '20', ...env },
    });
    gateways.push(g);
    return g;
  }

  async function budgetOrg(budgetMicros: number): Promise<{ orgId: string; key: string }> {
    const seeded = await seedOrgKey(prisma, { slugPrefix: 'ro' });
    await prisma.org.update({ where: { id: seeded.orgId }, data: { monthlyBudgetMicros: budgetMicros } });
    return seeded;
  }

  beforeAll(async () => {
    // a plain answer is as long as max_tokens allows: a request costs close to its worst case
    sim = await startSim({ models: [CHAT_UPSTREAM], outputTokens: 1_000 });
    redisProxy = await PgProxy.start(redisTarget);
    redis = new Redis(direct.REDIS_URL);
  });
  afterEach(async () => {
    redisProxy.restore();
    await Promise.all(gateways.splice(0).map((g) => g.stop()));
  });
  afterAll(async () => {
    await redisProxy?.close();
    await sim?.close();
    await redis?.quit();
    await prisma.$disconnect();
  });

  it('requests of a budgeted org do not wait on Redis, and /readyz says 503 while it does not answer, 200 once it does', async () => {
    const g = await gateway();
    const { key } = await budgetOrg(1_000_000);
    const c = client(g, key);
    await c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 });
    expect(await readyStatus(g)).toBe(200);

    outage();
    await until('/readyz 503', async () => ((await readyStatus(g)) === 503 ? true : undefined), 5_000);
    // every request ends (none hangs for the outage) and, the budget being far, is served
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        outcome(async () => {
          if (i % 2 === 0) {
            await c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 });
            return;
          }
          const stream = await c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5, stream: true });
          for await (const chunk of stream) void chunk;
        }),
      ),
    );
    expect(outcomes).toEqual(Array(8).fill('ok'));
    expect(await readyStatus(g)).toBe(503);

    redisProxy.restore();
    await until('/readyz 200', async () => ((await readyStatus(g)) === 200 ? true : undefined), 10_000);
    await expect(c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 })).resolves.toMatchObject({ object: 'chat.completion' });
  }, 40_000);

  it('stops on SIGTERM while Redis does not answer (closing its connections does not wait for replies)', async () => {
    const g = await gateway();
    outage();
    await new Promise((r) => setTimeout(r, 500));
    expect(await g.stop()).toBe(0);
  }, 30_000);

  it('two gateways enforce the budget from their own views while Redis is out; the outage spend reaches the ledger once', async () => {
    const prefix = `test:${randomUUID()}:`;
    const [g1, g2] = await Promise.all([gateway({ REDIS_PREFIX: prefix }), gateway({ REDIS_PREFIX: prefix })]);
    const budgetMicros = 60;
    const { orgId, key } = await budgetOrg(budgetMicros);
    const clients = [client(g1, key), client(g2, key)];
    // each gateway sees the ledger (and both gateways registered) before the outage
    for (let i = 0; i < 4; i++) await clients[i % 2].chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 });

    outage();
    const n = 24;
    const outcomes = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        outcome(async () => {
          const stream = await clients[i % 2].chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 50, stream: true });
          let text = '';
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
          if (text.length === 0) throw new Error('empty stream');
        }),
      ),
    );
    // every request settled, served or refused as over budget (nothing else, nothing hung)
    expect(outcomes.filter((o) => o !== 'ok' && o !== 'insufficient_quota')).toEqual([]);
    const ok = outcomes.filter((o) => o === 'ok').length;
    expect(ok).toBeGreaterThanOrEqual(2);
    expect(ok).toBeLessThan(n);

    const spent = await until(
      'usage events of every served request',
      async () => {
        const rows = await prisma.usageEvent.findMany({ where: { orgId }, select: { costNanos: true } });
        return rows.length === 4 + ok ? rows.reduce((s, r) => s + Number(r.costNanos), 0) : undefined;
      },
      10_000,
    );
    // one request's worst case: the prompt estimate (body bytes / 4) at the input price and max_tokens at the output price
    const body = JSON.stringify({ model: CHAT_MODEL, messages, max_tokens: 50, stream: true, stream_options: { include_usage: true } });
    const worst = Math.ceil(body.length / 4) * INPUT_NANOS + 50 * OUTPUT_NANOS;
    expect(spent).toBeLessThanOrEqual(budgetMicros * 1_000 + 2 * worst);

    redisProxy.restore();
    const ledger = `${prefix}budget:${orgId}:${new Date().toISOString().slice(0, 7)}`;
    // the ledger gets what was spent during the outage, once, and the reservations are all released
    const fields = await until(
      'the ledger to account for every request',
      async () => {
        const h = await redis.hgetall(ledger);
        const reserved = Object.entries(h).filter(([f, v]) => f.startsWith('r:') && v !== '0');
        return Number(h.spent) === spent && reserved.length === 0 ? h : undefined;
      },
      10_000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}: ledger ${JSON.stringify(await redis.hgetall(ledger))}, usage events ${spent}`);
    });
    expect(Number(fields.spent)).toBe(spent);
  }, 60_000);

  it('a key revoked while the gateway is cut off from Redis is refused within 2 s (warm keys re-checked in Postgres)', async () => {
    const g = await gateway();
    const seeded = await seedOrgKey(prisma, { slugPrefix: 'rv' });
    const c = client(g, seeded.key);
    await c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 2 }); // warm

    outage();
    // time for the gateway to notice (a blackholed subscription looks connected)
    await new Promise((r) => setTimeout(r, 1_000));
    await expect(c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 2 })).resolves.toMatchObject({ object: 'chat.completion' });
    // revoked in Postgres only: the console's pub/sub message cannot reach the gateway now
    await new ApiKeysRepository(prisma).revoke(seeded.keyId, new Date());
    const refusal = await until(
      'the revoked key to be refused',
      async () => {
        const o = await outcome(() => c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 2 }));
        return o === 'ok' ? undefined : o;
      },
      2_000,
    );
    expect(refusal).toBe('invalid_api_key');
  }, 30_000);

  it('with Postgres down too, a warm key keeps working, and still once Redis is back before Postgres', async () => {
    const pgProxy = await PgProxy.start();
    try {
      const g = await gateway({ DATABASE_URL: pgProxy.url(direct.DATABASE_URL) });
      const seeded = await seedOrgKey(prisma, { slugPrefix: 'rp' });
      const c = client(g, seeded.key);
      await c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 2 }); // warm

      pgProxy.cut();
      outage();
      // across several rounds of re-checks that cannot reach Postgres
      for (let i = 0; i < 3; i++) {
        await expect(c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 2 })).resolves.toMatchObject({ object: 'chat.completion' });
        await new Promise((r) => setTimeout(r, 700));
      }

      redisProxy.restore();
      await until('/readyz 200', async () => ((await readyStatus(g)) === 200 ? true : undefined), 10_000);
      // the subscription is back but may have missed messages: the keys are re-checked, not dropped
      for (let i = 0; i < 3; i++) {
        await expect(c.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 2 })).resolves.toMatchObject({ object: 'chat.completion' });
        await new Promise((r) => setTimeout(r, 700));
      }
    } finally {
      pgProxy.restore();
      await Promise.all(gateways.splice(0).map((g) => g.stop()));
      await pgProxy.close();
    }
  }, 40_000);
});
