import Anthropic from '@anthropic-ai/sdk';
import { BillingSyncService, centsPerToken, lineAmountCents, UsageRollupService } from '@spot/billing';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import { costNanos } from '@spot/tiers';
import OpenAI from 'openai';
import { type FakeStripe, startFakeStripe } from '../fakes/stripe/fake-stripe';
import { type Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';
import { CHAT_UPSTREAM, type GatewayStack, startGatewayStack } from '../support/gateway-stack';

const RESP_MODEL = 'resp-cached';
const MSG_MODEL = 'msg-cached';
// dear enough that a few hundred tokens make whole cents, and cheap enough cached that it shows
const RESP_PRICE = { input_per_mtok: 3000, output_per_mtok: 9000, cached_input_per_mtok: 300 };
const MSG_PRICE = { input_per_mtok: 2500, output_per_mtok: 7500, cached_input_per_mtok: 250 };

const tiers = (simUrl: string) => `tiers:
  - name: cache-spot
    kind: spot
    endpoints: [${simUrl}]
    models:
      - id: ${RESP_MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: ${RESP_PRICE.input_per_mtok}, output_per_mtok: ${RESP_PRICE.output_per_mtok}, cached_input_per_mtok: ${RESP_PRICE.cached_input_per_mtok} }
        apis: [responses]
      - id: ${MSG_MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: ${MSG_PRICE.input_per_mtok}, output_per_mtok: ${MSG_PRICE.output_per_mtok}, cached_input_per_mtok: ${MSG_PRICE.cached_input_per_mtok} }
        apis: [messages]
`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

interface Told {
  requestId: string;
  model: string;
  prompt: number;
  cached: number;
  completion: number;
}

/**
 * Prompt caching billed end to end on the Responses and Messages APIs: the engine (vllm-sim with prefix caching)
 * reports cached tokens, the official clients see them, the usage rows carry them, the rollup and the Stripe
 * sync price them at `cached_input_per_mtok`, and the console's bill equals Stripe's invoice preview to the cent.
 */
describe('prompt caching billed on /v1/responses and /v1/messages, to the cent', () => {
  let fake: FakeStripe;
  let gw: GatewayStack;
  let c: ConsoleStack;
  let owner: Browser;
  let slug: string;
  let orgId: string;
  let openai: OpenAI;
  let anthropic: Anthropic;
  const told: Told[] = [];

  beforeAll(async () => {
    fake = await startFakeStripe({ apiKey: `sk_test_cached_${Date.now()}` });
    gw = await startGatewayStack({}, { prefixCaching: true, outputTokens: 5 }, tiers);
    // one price book: the console bills what the gateway priced
    c = await startConsoleStack({ STRIPE_SECRET_KEY: fake.apiKey, STRIPE_API_BASE: fake.url, STRIPE_TIMEOUT_MS: '3000', TIERS_FILE: gw.config.TIERS_FILE });
    owner = await c.signIn(newGitHubUser('cacher'));
    slug = `cache-${Math.random().toString(36).slice(2, 10)}`;
    expect((await owner.api('POST', '/api/orgs', { slug, name: 'Cache' })).status).toBe(201);
    orgId = (await c.app.get(PrismaService).org.findUniqueOrThrow({ where: { slug } })).id;
    expect(await j(owner.api('POST', `/api/orgs/${slug}/billing/enable`))).toMatchObject({ enabled: true });
    const key = await j(owner.api('POST', `/api/orgs/${slug}/keys`, { name: 'cache' }));
    openai = new OpenAI({ baseURL: gw.baseURL, apiKey: key.key, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: gw.url, apiKey: key.key, maxRetries: 0 });
  }, 60_000);
  afterAll(async () => {
    await c?.close();
    await gw?.close();
    await fake?.close();
  });

  const longPrefix = (topic: string) => `${`Spot capacity for ${topic} comes and goes with the market, and the scheduler must follow it. `.repeat(30)}`;

  it('Responses: a second request with the same long prefix reports cached tokens, streamed and not; the rows carry them', async () => {
    const prefix = longPrefix('responses');
    const first = await openai.responses.create({ model: RESP_MODEL, input: `${prefix} Question one?` }).withResponse();
    expect(first.data.usage!.input_tokens_details.cached_tokens).toBe(0);
    const second = await openai.responses.create({ model: RESP_MODEL, input: `${prefix} Question two?` }).withResponse();
    const { data: events, response: streamed } = await openai.responses.create({ model: RESP_MODEL, input: `${prefix} Question three?`, stream: true }).withResponse();
    let final: OpenAI.Responses.Response | null = null;
    for await (const ev of events) if (ev.type === 'response.completed') final = ev.response;
    for (const [res, body] of [
      [first.response, first.data],
      [second.response, second.data],
      [streamed, final!],
    ] as const) {
      const u = body.usage!;
      told.push({ requestId: res.headers.get('x-request-id')!, model: RESP_MODEL, prompt: u.input_tokens, cached: u.input_tokens_details.cached_tokens, completion: u.output_tokens });
    }
    expect(second.data.usage!.input_tokens_details.cached_tokens).toBeGreaterThan(100);
    expect(final!.usage!.input_tokens_details.cached_tokens).toBeGreaterThan(100);
    for (const t of told.filter((x) => x.model === RESP_MODEL)) {
      const row = await gw.usageRow(t.requestId);
      expect(row).toMatchObject({ orgId, model: RESP_MODEL, promptTokens: t.prompt, cachedTokens: t.cached, completionTokens: t.completion, estimated: false });
      expect(Number(row!.costNanos)).toBe(costNanos(RESP_PRICE, { promptTokens: t.prompt, completionTokens: t.completion, cachedTokens: t.cached }));
    }
  });

  it('Messages: cache reads reported by the client are the rows\' cached tokens, the prompt being input + cache reads + writes', async () => {
    const system = longPrefix('messages');
    const ask = (q: string) => ({ model: MSG_MODEL, max_tokens: 5, system, messages: [{ role: 'user' as const, content: q }] });
    const first = await anthropic.messages.create(ask('Question one?')).withResponse();
    expect(first.data.usage.cache_read_input_tokens ?? 0).toBe(0);
    const second = await anthropic.messages.create(ask('Question two?')).withResponse();
    const stream = anthropic.messages.stream(ask('Question three?'));
    const { response: streamed } = await stream.withResponse();
    const final = await stream.finalMessage();
    for (const [res, body] of [
      [first.response, first.data],
      [second.response, second.data],
      [streamed, final],
    ] as const) {
      const u = body.usage;
      const cached = u.cache_read_input_tokens ?? 0;
      told.push({ requestId: res.headers.get('x-request-id')!, model: MSG_MODEL, prompt: u.input_tokens + cached + (u.cache_creation_input_tokens ?? 0), cached, completion: u.output_tokens });
    }
    expect(second.data.usage.cache_read_input_tokens).toBeGreaterThan(100);
    expect(final.usage.cache_read_input_tokens).toBeGreaterThan(100);
    // the uncached part is what input_tokens says (the cached prefix is not in it)
    expect(second.data.usage.input_tokens).toBeLessThan(second.data.usage.cache_read_input_tokens!);
    for (const t of told.filter((x) => x.model === MSG_MODEL)) {
      const row = await gw.usageRow(t.requestId);
      expect(row).toMatchObject({ orgId, model: MSG_MODEL, promptTokens: t.prompt, cachedTokens: t.cached, completionTokens: t.completion, estimated: false });
      expect(Number(row!.costNanos)).toBe(costNanos(MSG_PRICE, { promptTokens: t.prompt, completionTokens: t.completion, cachedTokens: t.cached }));
    }
  });

  it('after a rollup and a billing sync, the bill has cached-input lines at the cached price and equals Stripe\'s preview to the cent', async () => {
    expect(told).toHaveLength(6);
    // every row is in Postgres before the pass (the recorder batches)
    const usage = c.app.get(UsageEventsRepository);
    for (const t of told) expect(await usage.findByRequestId(t.requestId)).not.toBeNull();
    await c.app.get(UsageRollupService).runPass();
    expect(await c.app.get(BillingSyncService).runPass()).toMatchObject({ rejected: 0, pending: 0 });

    const bill = await j(owner.fetch(`/api/orgs/${slug}/bill`));
    expect(bill.source).toBe('stripe');
    // what the clients were told, per model and direction, at the price book's unit prices, each line rounded as Stripe does
    const expected: Array<{ model: string; direction: string; tokens: number; unitAmountDecimal: string; amountCents: number }> = [];
    for (const [model, price] of [
      [MSG_MODEL, MSG_PRICE],
      [RESP_MODEL, RESP_PRICE],
    ] as const) {
      const mine = told.filter((t) => t.model === model);
      const tokens = {
        input: mine.reduce((s, t) => s + t.prompt - t.cached, 0),
        cached_input: mine.reduce((s, t) => s + t.cached, 0),
        output: mine.reduce((s, t) => s + t.completion, 0),
      };
      const unit = { input: price.input_per_mtok, cached_input: price.cached_input_per_mtok, output: price.output_per_mtok };
      for (const direction of ['input', 'cached_input', 'output'] as const) {
        const u = centsPerToken(unit[direction]);
        expected.push({ model, direction, tokens: tokens[direction], unitAmountDecimal: u, amountCents: Number(lineAmountCents(BigInt(tokens[direction]), u)) });
      }
    }
    expect(bill.lines.map((l: Record<string, unknown>) => ({ model: l.model, direction: l.direction, tokens: l.tokens, unitAmountDecimal: l.unitAmountDecimal, amountCents: l.amountCents }))).toEqual(expected);
    const total = expected.reduce((s, l) => s + l.amountCents, 0);
    expect(bill.totalCents).toBe(total);
    expect(bill.stripe).toMatchObject({ totalCents: total, error: null });

    // the cached price made a difference: the same tokens at the input price would cost more
    const cachedLines = expected.filter((l) => l.direction === 'cached_input');
    const atInputPrice = cachedLines.reduce((s, l) => s + Number(lineAmountCents(BigInt(l.tokens), centsPerToken(l.model === MSG_MODEL ? MSG_PRICE.input_per_mtok : RESP_PRICE.input_per_mtok))), 0);
    expect(atInputPrice).toBeGreaterThan(cachedLines.reduce((s, l) => s + l.amountCents, 0) + 100);

    // Stripe holds exactly the cached tokens on the cached lines' meters
    const catalog = await c.app.get(PrismaService).billingLine.findMany({ where: { direction: 'cached_input', model: { in: [RESP_MODEL, MSG_MODEL] } } });
    const org = await c.app.get(PrismaService).org.findUniqueOrThrow({ where: { id: orgId } });
    const meteredCached = fake.state.meterEvents
      .filter((e) => e.payload.stripe_customer_id === org.stripeCustomerId && catalog.some((l) => l.eventName === e.event_name))
      .reduce((s, e) => s + Number(e.payload.value), 0);
    expect(meteredCached).toBe(cachedLines.reduce((s, l) => s + l.tokens, 0));
  });
});
