import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { costNanos } from '@spot/tiers';
import { GatewayMetrics } from '../../apps/gateway/src/metrics/gateway-metrics';
import { freePort } from '../support/free-port';
import { CHAT_UPSTREAM, type GatewayStack, OTHER_MODEL, startGatewayStack } from '../support/gateway-stack';

const MODEL = 'claude-test';
const CHAT_ONLY = 'chat-only-test';
const FAILOVER = 'failover-test';
const GONE = 'gone-test';
const BODY_LIMIT = 64 * 1024;
const PRICE = { input_per_mtok: 1, output_per_mtok: 2, cached_input_per_mtok: 0.1 };

/**
 * A tier for the Messages model (cached tokens priced apart) and a model that serves chat alone; a tier whose
 * first replica refuses connections; a tier with no replica left (each its own dead port: an ejected one goes last).
 */
function tiers(deadUrl: string, goneUrl: string) {
  return (simUrl: string) => `tiers:
  - name: test-spot
    kind: spot
    endpoints: [${simUrl}]
    models:
      - id: ${MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: ${PRICE.input_per_mtok}, output_per_mtok: ${PRICE.output_per_mtok}, cached_input_per_mtok: ${PRICE.cached_input_per_mtok} }
        apis: [chat, messages]
      - id: ${CHAT_ONLY}
        upstream: ${OTHER_MODEL}
        price: { input_per_mtok: 0.04, output_per_mtok: 0.08 }
        apis: [chat]
  - name: test-replicas
    kind: spot
    endpoints: [${deadUrl}, ${simUrl}]
    models:
      - id: ${FAILOVER}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
  - name: test-gone
    kind: spot
    endpoints: [${goneUrl}]
    models:
      - id: ${GONE}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
`;
}

type ApiErr = InstanceType<typeof Anthropic.APIError>;

const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Tell me about spot GPUs in a few words' }];

async function until<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('gateway: Anthropic Messages through the official @anthropic-ai/sdk', () => {
  let s: GatewayStack;
  let client: Anthropic;

  beforeAll(async () => {
    // no health check during the file: the failover test needs its dead replica not ejected yet
    s = await startGatewayStack({ GATEWAY_BODY_LIMIT: String(BODY_LIMIT), HEALTH_CHECK_INTERVAL_MS: '600000' }, { prefixCaching: true, itlMs: 2 }, tiers(`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`));
    client = new Anthropic({ baseURL: s.url, apiKey: s.key, maxRetries: 0 });
  });
  afterAll(async () => {
    await s?.close();
  });
  afterEach(() => {
    s.sim.faults.clear();
  });

  it('creates a Message (x-api-key) and records the usage the client was told, priced by the tier', async () => {
    const { data, response } = await client.messages.create({ model: MODEL, max_tokens: 16, messages }).withResponse();
    expect(data.type).toBe('message');
    expect(data.content[0]).toMatchObject({ type: 'text' });
    expect(data.usage.output_tokens).toBeGreaterThan(0);
    const received = s.sim.received.at(-1)!;
    expect(received.path).toBe('/v1/messages');
    expect(received.body).toMatchObject({ model: CHAT_UPSTREAM, max_tokens: 16 });
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({
      keyId: s.keyId,
      model: MODEL,
      tier: 'test-spot',
      promptTokens: data.usage.input_tokens,
      completionTokens: data.usage.output_tokens,
      cachedTokens: 0,
      status: 200,
      estimated: false,
    });
    expect(Number(row!.costNanos)).toBe(costNanos(PRICE, { promptTokens: data.usage.input_tokens, completionTokens: data.usage.output_tokens, cachedTokens: 0 }));
  });

  it('streams a Message: text assembled, finalMessage usage equal to the bill', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 12, messages });
    let text = '';
    stream.on('text', (t) => (text += t));
    const { response } = await stream.withResponse();
    const final = await stream.finalMessage();
    expect(text.length).toBeGreaterThan(0);
    expect(final.content[0]).toMatchObject({ type: 'text', text });
    expect(final.stop_reason).toBe('max_tokens');
    expect(final.usage.output_tokens).toBe(12);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ promptTokens: final.usage.input_tokens, completionTokens: 12, status: 200, estimated: false });
    expect(row!.ttftMs).not.toBeNull();
  });

  it('bills cache reads of a repeated long prompt at the cached price, as the client was told', async () => {
    const long: Anthropic.MessageParam[] = [{ role: 'user', content: `${'The spot market moves fast and capacity comes and goes. '.repeat(40)} Summarise.` }];
    await client.messages.create({ model: MODEL, max_tokens: 4, messages: long });
    const { data, response } = await client.messages.create({ model: MODEL, max_tokens: 4, messages: long }).withResponse();
    const cached = data.usage.cache_read_input_tokens!;
    expect(cached).toBeGreaterThan(0);
    // Anthropic's contract: input_tokens are what was not read from the cache
    const prompt = data.usage.input_tokens + cached + (data.usage.cache_creation_input_tokens ?? 0);
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ promptTokens: prompt, completionTokens: data.usage.output_tokens, cachedTokens: cached });
    const expected = costNanos(PRICE, { promptTokens: prompt, completionTokens: data.usage.output_tokens, cachedTokens: cached });
    expect(Number(row!.costNanos)).toBe(expected);
    // cheaper than the same tokens uncached
    expect(expected).toBeLessThan(costNanos(PRICE, { promptTokens: prompt, completionTokens: data.usage.output_tokens, cachedTokens: 0 }));

    // the same through a stream: message_start's cache reads
    const stream = client.messages.stream({ model: MODEL, max_tokens: 4, messages: long });
    const { response: streamed } = await stream.withResponse();
    const final = await stream.finalMessage();
    expect(final.usage.cache_read_input_tokens).toBe(cached);
    const streamedRow = await s.usageRow(streamed.headers.get('x-request-id')!);
    expect(streamedRow).toMatchObject({ promptTokens: prompt, cachedTokens: cached, completionTokens: final.usage.output_tokens, estimated: false });
  });

  it('counts tokens, recorded as a request of 0 tokens and no cost', async () => {
    const { data, response } = await client.messages.countTokens({ model: MODEL, messages }).withResponse();
    expect(data.input_tokens).toBeGreaterThan(0);
    expect(s.sim.received.at(-1)!.path).toBe('/v1/messages/count_tokens');
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ promptTokens: 0, completionTokens: 0, cachedTokens: 0, status: 200, estimated: false });
    expect(Number(row!.costNanos)).toBe(0);
  });

  it('takes the key as Authorization: Bearer too (the SDK authToken)', async () => {
    const bearer = new Anthropic({ baseURL: s.url, apiKey: null, authToken: s.key, maxRetries: 0 });
    const msg = await bearer.messages.create({ model: MODEL, max_tokens: 3, messages });
    expect(msg.usage.output_tokens).toBe(3);
  });

  it('answers a bad key with AuthenticationError (x-api-key and bearer), in Anthropic\'s envelope', async () => {
    const sent = s.sim.received.length;
    const bad = new Anthropic({ baseURL: s.url, apiKey: 'sk-spot-nope', maxRetries: 0 });
    const err = await bad.messages.create({ model: MODEL, max_tokens: 3, messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((err as ApiErr).status).toBe(401);
    expect((err as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    const bearer = new Anthropic({ baseURL: s.url, apiKey: null, authToken: 'sk-spot-nope', maxRetries: 0 });
    await expect(bearer.messages.countTokens({ model: MODEL, messages })).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    const none = await fetch(`${s.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error', message: expect.stringContaining('x-api-key') } });
    // a URL the fast path does not match reaches the same route through Fastify, with the same envelope
    const escaped = await fetch(`${s.url}/v1/m%65ssages`, { method: 'POST', headers: { 'x-api-key': 'sk-spot-nope', 'content-type': 'application/json' }, body: '{}' });
    expect(escaped.status).toBe(401);
    expect(await escaped.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    // no refused request reached an engine
    expect(s.sim.received.length).toBe(sent);
    const served = await fetch(`${s.url}/v1/messages/count_t%6Fkens`, {
      method: 'POST',
      headers: { 'x-api-key': s.key, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages }),
    });
    expect(served.status).toBe(200);
    expect(((await served.json()) as { input_tokens: number }).input_tokens).toBeGreaterThan(0);
  });

  it('answers NotFoundError for an unknown model and for a model whose apis exclude messages', async () => {
    const unknown = await client.messages.create({ model: 'nope', max_tokens: 3, messages }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect((unknown as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'not_found_error', message: expect.stringContaining('nope') } });
    await expect(client.messages.create({ model: CHAT_ONLY, max_tokens: 3, messages })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(client.messages.countTokens({ model: CHAT_ONLY, messages })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    // a key whose allow-list leaves the model out
    const narrow = await s.newKey({ models: [CHAT_ONLY] });
    const outside = new Anthropic({ baseURL: s.url, apiKey: narrow.key, maxRetries: 0 });
    await expect(outside.messages.create({ model: MODEL, max_tokens: 3, messages })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    // it serves chat, and /v1/models lists it as before
    const chat = await s.client.chat.completions.create({ model: CHAT_ONLY, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(chat.usage!.completion_tokens).toBe(2);
    expect((await s.client.models.list()).data.map((m) => m.id)).toEqual(expect.arrayContaining([MODEL, CHAT_ONLY, FAILOVER]));
  });

  it("checks the request as Anthropic does before any engine: 400 invalid_request_error", async () => {
    const sent = s.sim.received.length;
    const err = await client.messages.create({ model: MODEL, messages } as unknown as Anthropic.MessageCreateParamsNonStreaming).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as ApiErr).error).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
    const notJson = await fetch(`${s.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': s.key, 'content-type': 'application/json' }, body: '{' });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const text = await fetch(`${s.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': s.key, 'content-type': 'text/plain' }, body: 'hi' });
    expect(text.status).toBe(415);
    expect(await text.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(s.sim.received.length).toBe(sent);
  });

  it("answers a body past the limit 413 request_too_large, and an unreachable engine 502 api_error with retry-after", async () => {
    const big = JSON.stringify({ model: MODEL, max_tokens: 3, messages: [{ role: 'user', content: 'x'.repeat(BODY_LIMIT) }] });
    const tooLarge = await fetch(`${s.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': s.key, 'content-type': 'application/json' }, body: big });
    expect(tooLarge.status).toBe(413);
    expect(await tooLarge.json()).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
    const err = await client.messages.create({ model: GONE, max_tokens: 3, messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect((err as ApiErr).status).toBe(502);
    expect((err as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringContaining('unreachable') } });
    expect((err as ApiErr).headers?.get('retry-after')).toBe('1');
  });

  it('answers RateLimitError past the key\'s rpm, with retry-after', async () => {
    const limited = await s.newKey({ rpmLimit: 1 });
    const c = new Anthropic({ baseURL: s.url, apiKey: limited.key, maxRetries: 0 });
    await c.messages.create({ model: MODEL, max_tokens: 2, messages });
    const err = await until(
      () => c.messages.create({ model: MODEL, max_tokens: 2, messages }).then(() => null, (e: unknown) => e),
      (e) => e !== null,
    );
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect((err as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect((err as ApiErr).headers?.get('retry-after')).toMatch(/^\d+$/);
  });

  it("rewrites the engine's errors into Anthropic's envelope and status (529 overloaded, a stream's error event)", async () => {
    s.sim.faults.add({ kind: 'error-before', status: 529, path: '/v1/messages', message: 'overloaded', count: 'always' });
    const err = await client.messages.create({ model: MODEL, max_tokens: 3, messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect((err as ApiErr).status).toBe(529);
    expect((err as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'overloaded_error', message: 'overloaded' } });
    s.sim.faults.clear();

    s.sim.faults.add({ kind: 'error-after', afterTokens: 2, path: '/v1/messages', message: 'boom' });
    const stream = client.messages.stream({ model: MODEL, max_tokens: 10, messages });
    const { response } = await stream.withResponse();
    const failed = await stream.finalMessage().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Anthropic.APIError);
    expect((failed as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'api_error', message: 'boom' } });
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ status: 500, estimated: true, completionTokens: 2 });
    s.sim.faults.clear();

    // the engine's connection lost mid-stream: the client gets Anthropic's error event, never a clean end
    s.sim.faults.add({ kind: 'drop', afterTokens: 3, path: '/v1/messages' });
    const dropped = client.messages.stream({ model: MODEL, max_tokens: 10, messages });
    const { response: cut } = await dropped.withResponse();
    const broken = await dropped.finalMessage().catch((e: unknown) => e);
    expect(broken).toBeInstanceOf(Anthropic.APIError);
    expect((broken as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    expect(await s.usageRow(cut.headers.get('x-request-id')!)).toMatchObject({ status: 502, estimated: true, completionTokens: 3 });
  });

  it('bills a client abort mid-stream as for chat: the engine is aborted, the deltas delivered estimated', async () => {
    const slow = await startGatewayStack({}, { itlMs: 30, outputTokens: 200 }, tiers(`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`));
    try {
      const c = new Anthropic({ baseURL: slow.url, apiKey: slow.key, maxRetries: 0 });
      const controller = new AbortController();
      const { data: stream, response } = await c.messages.create({ model: MODEL, max_tokens: 200, messages, stream: true }, { signal: controller.signal }).withResponse();
      let deltas = 0;
      await (async () => {
        for await (const ev of stream) if (ev.type === 'content_block_delta' && ++deltas === 3) controller.abort();
      })().catch(() => undefined);
      expect(deltas).toBeLessThan(10);
      const stats = await until(() => ({ ...slow.sim.stats }), (st) => st.aborted >= 1, 2000);
      expect(stats.aborted).toBe(1);
      const row = await slow.usageRow(response.headers.get('x-request-id')!);
      expect(row).toMatchObject({ estimated: true, status: 499 });
      expect(row!.completionTokens).toBeGreaterThanOrEqual(3);
      expect(row!.completionTokens).toBeLessThan(200);
      expect(row!.promptTokens).toBeGreaterThan(0);
    } finally {
      await slow.close();
    }
  });

  it('fails over to the second replica when the first refuses connections', async () => {
    const sent = s.sim.received.length;
    const stream = client.messages.stream({ model: FAILOVER, max_tokens: 5, messages });
    const { response } = await stream.withResponse();
    const final = await stream.finalMessage();
    expect(final.usage.output_tokens).toBe(5);
    expect(s.sim.received.length).toBe(sent + 1);
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    expect(row).toMatchObject({ tier: 'test-replicas', completionTokens: 5, status: 200 });
    // the first replica was tried, refused, and the request retried on the second
    const retries = (await s.app.get(GatewayMetrics).retries.get()).values.find((v) => v.labels.tier === 'test-replicas');
    expect(retries?.value).toBe(1);
  });

  it("answers with Anthropic's request-id header (the SDK's _request_id), our x-request-id beside it, on errors too", async () => {
    const msg = await client.messages.create({ model: MODEL, max_tokens: 3, messages });
    expect(msg._request_id).toMatch(/^req_[0-9a-f]{32}$/);
    // the id of the usage row, as x-request-id is
    expect(await s.usageRow(msg._request_id!)).toMatchObject({ completionTokens: msg.usage.output_tokens });
    const stream = client.messages.stream({ model: MODEL, max_tokens: 3, messages });
    const { response: streamed } = await stream.withResponse();
    await stream.finalMessage();
    expect(streamed.headers.get('request-id')).toBe(streamed.headers.get('x-request-id'));
    const counted = await client.messages.countTokens({ model: MODEL, messages });
    expect(counted._request_id).toMatch(/^req_/);
    // errors: before the body is read (a bad key), after it (an unknown model), and from the engine
    const bad = new Anthropic({ baseURL: s.url, apiKey: 'sk-spot-nope', maxRetries: 0 });
    const denied = (await bad.messages.create({ model: MODEL, max_tokens: 3, messages }).catch((e: unknown) => e)) as ApiErr;
    expect(denied).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(denied.requestID).toMatch(/^req_/);
    expect(denied.requestID).toBe(denied.headers?.get('x-request-id'));
    const unknown = (await client.messages.create({ model: 'nope', max_tokens: 3, messages }).catch((e: unknown) => e)) as ApiErr;
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect(unknown.requestID).toBe(unknown.headers?.get('x-request-id'));
    const notJson = await fetch(`${s.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': s.key, 'content-type': 'application/json' }, body: '{' });
    expect(notJson.headers.get('request-id')).toBe(notJson.headers.get('x-request-id'));
    s.sim.faults.add({ kind: 'error-before', status: 529, path: '/v1/messages', message: 'overloaded' });
    const engine = (await client.messages.create({ model: MODEL, max_tokens: 3, messages }).catch((e: unknown) => e)) as ApiErr;
    expect(engine.status).toBe(529);
    expect(engine.requestID).toBe(engine.headers?.get('x-request-id'));
    // through Fastify (a URL the fast path does not match)
    const escaped = await fetch(`${s.url}/v1/m%65ssages`, { method: 'POST', headers: { 'x-api-key': 'sk-spot-nope', 'content-type': 'application/json' }, body: '{}' });
    expect(escaped.headers.get('request-id')).toBe(escaped.headers.get('x-request-id'));
    // OpenAI's routes keep to OpenAI's header
    const chat = await s.client.chat.completions.create({ model: CHAT_ONLY, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }).withResponse();
    expect(chat.response.headers.get('request-id')).toBeNull();
    expect(chat.response.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('GET /v1/models lists what each key may use: every API for OpenAI\'s clients, Messages models for Anthropic\'s, in their shapes', async () => {
    const all = await client.models.list();
    expect(all.data.map((m) => m.id)).toEqual([FAILOVER, GONE, MODEL].sort());
    expect(all.data[0]).toMatchObject({ type: 'model', display_name: all.data[0].id, created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    const raw = await fetch(`${s.url}/v1/models`, { headers: { 'x-api-key': s.key, 'anthropic-version': '2023-06-01' } });
    expect(raw.headers.get('request-id')).toBe(raw.headers.get('x-request-id'));
    expect(await raw.json()).toEqual({ data: all.data, has_more: false, first_id: MODEL, last_id: GONE });
    const narrow = await s.newKey({ models: [MODEL, CHAT_ONLY] });
    const a = new Anthropic({ baseURL: s.url, apiKey: narrow.key, maxRetries: 0 });
    expect((await a.models.list()).data.map((m) => m.id)).toEqual([MODEL]);
    expect((await a.models.retrieve(MODEL)).id).toBe(MODEL);
    // chat only: not a Messages model; left out of the allow-list: not this key's
    await expect(a.models.retrieve(CHAT_ONLY)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(a.models.retrieve(FAILOVER)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    // the same key through OpenAI's client: what it may use on any API
    const o = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: narrow.key, maxRetries: 0 });
    expect((await o.models.list()).data.map((m) => m.id)).toEqual([CHAT_ONLY, MODEL].sort());
    await expect(o.models.retrieve(FAILOVER)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const bad = await new Anthropic({ baseURL: s.url, apiKey: 'sk-spot-nope', maxRetries: 0 }).models.list().catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((bad as ApiErr).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    expect((bad as ApiErr).requestID).toMatch(/^req_/);
  });
});
