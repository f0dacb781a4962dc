import { randomUUID } from 'node:crypto';
import { ApiKeysRepository, OrgsRepository, PrismaService, UsageEventsRepository } from '@spot/db';
import { mintApiKey, ORG_CHANGED_CHANNEL } from '@spot/keys';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { CHAT_MODEL, type GatewayStack, startGatewayStack } from '../support/gateway-stack';

const messages = [{ role: 'user' as const, content: 'hi' }];

interface OrgKey {
  orgId: string;
  key: string;
}

/** Nano-USD of a usage row set: what the gateway priced the requests at. */
async function spentNanos(prisma: PrismaService, orgId: string): Promise<number> {
  const agg = await prisma.usageEvent.aggregate({ where: { orgId }, _sum: { costNanos: true } });
  return Number(agg._sum.costNanos ?? 0);
}

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('gateway: org budget and billing standing', () => {
  let s: GatewayStack;
  let prisma: PrismaService;
  let redis: Redis;

  beforeAll(async () => {
    // the engine writes as many tokens as max_tokens allows: a request's real cost is close to its worst case
    s = await startGatewayStack({ USAGE_FLUSH_MS: '20' }, { outputTokens: 1_000 });
    prisma = s.app.get(PrismaService);
    redis = new Redis(s.config.REDIS_URL);
  });
  afterAll(async () => {
    await redis?.quit();
    await s?.close();
  });

  async function orgWithKey(settings: { budgetMicros?: number | null; billingStatus?: 'active' | 'past_due' | 'canceled'; statusAgoMs?: number } = {}): Promise<OrgKey> {
    const org = await s.app.get(OrgsRepository).create(`b-${randomUUID().slice(0, 18)}`, 'Budget org');
    if (!org) throw new Error('slug collision');
    await prisma.org.update({
      where: { id: org.id },
      data: {
        monthlyBudgetMicros: settings.budgetMicros ?? null,
        billingStatus: settings.billingStatus ?? 'none',
        billingStatusAt: settings.billingStatus ? new Date(Date.now() - (settings.statusAgoMs ?? 0)) : null,
      },
    });
    const minted = mintApiKey();
    await s.app.get(ApiKeysRepository).create({
      orgId: org.id,
      name: 'budget',
      prefix: minted.prefix,
      secretHash: minted.secretHash,
      allowedModels: [],
      expiresAt: null,
      createdById: null,
    });
    return { orgId: org.id, key: minted.key };
  }

  const publishOrgChange = (orgId: string) => redis.publish(`${s.config.REDIS_PREFIX}${ORG_CHANGED_CHANNEL}`, JSON.stringify({ orgId }));

  it('answers 429 insufficient_quota with x-should-retry: false once spend plus the worst case would pass the budget', async () => {
    const { orgId, key } = await orgWithKey({ budgetMicros: 40 });
    let attempts = 0;
    const client = new OpenAI({
      baseURL: s.baseURL,
      apiKey: key,
      maxRetries: 3,
      fetch: (url, init) => {
        attempts++;
        return fetch(url, init);
      },
    });
    let admitted = 0;
    let refusal: unknown;
    for (let i = 0; i < 50 && refusal === undefined; i++) {
      attempts = 0;
      try {
        await client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 20 });
        admitted++;
      } catch (err) {
        refusal = err;
      }
    }
    expect(refusal).toBeInstanceOf(OpenAI.RateLimitError);
    expect(refusal).toMatchObject({ status: 429, code: 'insufficient_quota', type: 'insufficient_quota' });
    expect((refusal as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('false');
    // the SDK honoured x-should-retry: one attempt, no retries of a request that cannot succeed
    expect(attempts).toBe(1);
    expect(admitted).toBeGreaterThanOrEqual(3);
    const spent = await until(async () => {
      const n = await spentNanos(prisma, orgId);
      const rows = await prisma.usageEvent.count({ where: { orgId } });
      return rows === admitted ? n : undefined;
    }, 5_000);
    // never past the budget, and refused only when the next worst case (~1.5-3 µ$ here) no longer fits
    expect(spent).toBeLessThanOrEqual(40_000);
    expect(40_000 - spent).toBeLessThan(4_000);
  });

  it('reserves the worst case up front: concurrent streams on two gateways cannot overshoot', async () => {
    const other = await startGatewayStack({ REDIS_PREFIX: s.config.REDIS_PREFIX }, { outputTokens: 1_000 });
    try {
      const { orgId, key } = await orgWithKey({ budgetMicros: 30 });
      const clients = [s, other].map((g) => new OpenAI({ baseURL: g.baseURL, apiKey: key, maxRetries: 0 }));
      const outcomes = await Promise.all(
        Array.from({ length: 24 }, async (_, i) => {
          try {
            const stream = await clients[i % 2].chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 50, stream: true });
            let text = '';
            for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
            return text.length > 0 ? 'ok' : 'empty';
          } catch (err) {
            return (err as { code?: string }).code ?? String(err);
          }
        }),
      );
      const ok = outcomes.filter((o) => o === 'ok').length;
      expect(outcomes.filter((o) => o !== 'ok' && o !== 'insufficient_quota')).toEqual([]);
      // each stream's worst case is ~6 µ$ (50 tokens at 0.10 $/M plus the prompt): five fit in 30 µ$, not 24
      expect(ok).toBeGreaterThanOrEqual(3);
      expect(ok).toBeLessThanOrEqual(5);
      const spent = await until(async () => ((await prisma.usageEvent.count({ where: { orgId } })) === ok ? spentNanos(prisma, orgId) : undefined), 5_000);
      expect(spent).toBeLessThanOrEqual(30_000);
    } finally {
      await other.close();
    }
  });

  it("seeds a missing ledger from the month's usage events, not from zero", async () => {
    const { orgId, key } = await orgWithKey({ budgetMicros: 10 });
    const usage = s.app.get(UsageEventsRepository);
    const now = new Date();
    const lastMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) - 3_600_000);
    const event = (createdAt: Date, costNanos: bigint) => ({
      requestId: `seed-${randomUUID()}`,
      createdAt,
      orgId,
      keyId: randomUUID(),
      model: CHAT_MODEL,
      tier: 'test-spot',
      promptTokens: 1,
      completionTokens: 1,
      durationMs: 1,
      status: 200,
      costNanos,
    });
    // last month's spend does not count; this month's 9.5 µ$ leaves no room for a request
    await usage.insertMany([event(lastMonth, 1_000_000n), event(now, 9_500n)]);
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await expect(client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 })).rejects.toMatchObject({
      status: 429,
      code: 'insufficient_quota',
    });
    expect(await redis.hget(`${s.config.REDIS_PREFIX}budget:${orgId}:${now.toISOString().slice(0, 7)}`, 'spent')).toBe('9500');
  });

  it('ignores reservations of a gateway that stopped heartbeating (crashed)', async () => {
    const { orgId, key } = await orgWithKey({ budgetMicros: 20 });
    const ledger = `${s.config.REDIS_PREFIX}budget:${orgId}:${new Date().toISOString().slice(0, 7)}`;
    await redis.hset(ledger, { spent: '0', 'r:deadbeef': '19000', 't:deadbeef': String(Date.now() - 120_000) });
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 });
    expect(await redis.hexists(ledger, 'r:deadbeef')).toBe(0);
  });

  it('a budget raised in the console reaches the gateway within a second (org change pushed over Redis)', async () => {
    const { orgId, key } = await orgWithKey({ budgetMicros: 1 });
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0 });
    await expect(client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 })).rejects.toMatchObject({ code: 'insufficient_quota' });
    await prisma.org.update({ where: { id: orgId }, data: { monthlyBudgetMicros: 1_000_000 } });
    await publishOrgChange(orgId);
    const started = Date.now();
    await until(
      () =>
        client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 }).then(
          () => true,
          () => undefined,
        ),
      3_000,
    );
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('pauses an org past due beyond the grace period or canceled with 402 insufficient_quota, and resumes when paid', async () => {
    const late = await orgWithKey({ billingStatus: 'past_due', statusAgoMs: 73 * 3_600_000 });
    const recent = await orgWithKey({ billingStatus: 'past_due', statusAgoMs: 3_600_000 });
    const canceled = await orgWithKey({ billingStatus: 'canceled' });
    const call = (key: string) =>
      new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 2 }).chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 5 });

    const err = await call(late.key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ status: 402, code: 'insufficient_quota', type: 'insufficient_quota' });
    expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('false');
    await expect(call(canceled.key)).rejects.toMatchObject({ status: 402, code: 'insufficient_quota' });
    await expect(call(recent.key)).resolves.toMatchObject({ object: 'chat.completion' });

    await prisma.org.update({ where: { id: late.orgId }, data: { billingStatus: 'active', billingStatusAt: new Date() } });
    await publishOrgChange(late.orgId);
    await until(() => call(late.key).then(() => true, () => undefined), 3_000);
  });

  it('prices each usage event at the serving tier (nano-USD on the row)', async () => {
    const res = await s.client.chat.completions.create({ model: CHAT_MODEL, messages, max_tokens: 7 }).withResponse();
    const row = await s.usageRow(res.response.headers.get('x-request-id')!);
    expect(row).not.toBeNull();
    // test tier prices: 0.05 $/M input, 0.10 $/M output
    expect(Number(row!.costNanos)).toBe(row!.promptTokens * 50 + row!.completionTokens * 100);
    expect(row!.completionTokens).toBe(7);
  });
});
