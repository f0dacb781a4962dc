import { Agent, run, setDefaultOpenAIClient, setTracingDisabled, tool } from '@openai/agents';
import { ResponsesRepository } from '@spot/db';
import { costNanos } from '@spot/tiers';
import OpenAI from 'openai';
import { z } from 'zod';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { spawnGateway, type GatewayProcess } from '../support/gateway-process';
import { CHAT_MODEL, CHAT_UPSTREAM, EMBED_MODEL, type GatewayStack, OTHER_MODEL, startGatewayStack } from '../support/gateway-stack';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PRICE = { input_per_mtok: 0.05, output_per_mtok: 0.1, cached_input_per_mtok: 0.01 };

/** One tier, two replicas (both sims), the cached price set. */
function twoReplicaTiers(a: string, b: string): string {
  return `tiers:
  - name: test-spot
    kind: spot
    endpoints: [${a}, ${b}]
    models:
      - id: ${CHAT_MODEL}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: ${PRICE.input_per_mtok}, output_per_mtok: ${PRICE.output_per_mtok}, cached_input_per_mtok: ${PRICE.cached_input_per_mtok} }
      - id: ${OTHER_MODEL}
        price: { input_per_mtok: 0.04, output_per_mtok: 0.08 }
      - id: ${EMBED_MODEL}
        price: { input_per_mtok: 0.01, output_per_mtok: 0 }
`;
}

type Received = { method: string; path: string; body: Record<string, unknown> };

describe('gateway: the Responses API, with the state kept by the gateway', () => {
  let a: SimServer;
  let b: SimServer;
  let s: GatewayStack;
  let tiersFile: string;
  let client: OpenAI;

  beforeAll(async () => {
    a = await startSim({ models: [CHAT_UPSTREAM, OTHER_MODEL, EMBED_MODEL], prefixCaching: true, outputTokens: 12 });
    b = await startSim({ models: [CHAT_UPSTREAM, OTHER_MODEL, EMBED_MODEL], prefixCaching: true, outputTokens: 12 });
    const dir = mkdtempSync(join(tmpdir(), 'gw-resp-'));
    tiersFile = join(dir, 'tiers.yaml');
    writeFileSync(tiersFile, twoReplicaTiers(a.url, b.url));
    s = await startGatewayStack({ TIERS_FILE: tiersFile });
    client = s.client;
  });
  afterAll(async () => {
    await s?.close();
    await a?.close();
    await b?.close();
  });
  afterEach(() => {
    a.faults.clear();
    b.faults.clear();
  });

  const responsesTo = (sim: SimServer): Received[] => (sim.received as unknown as Received[]).filter((r) => r.path === '/v1/responses');
  /** The replica that served the last /v1/responses request, and the other one. */
  function servedBy(before: { a: number; b: number }): { served: SimServer; other: SimServer; body: Record<string, unknown> } {
    const ra = responsesTo(a);
    const rb = responsesTo(b);
    if (ra.length > before.a) return { served: a, other: b, body: ra[ra.length - 1].body };
    if (rb.length > before.b) return { served: b, other: a, body: rb[rb.length - 1].body };
    throw new Error('no replica received the request');
  }
  const counts = () => ({ a: responsesTo(a).length, b: responsesTo(b).length });

  async function usageMatches(requestId: string, usage: OpenAI.Responses.ResponseUsage): Promise<void> {
    const row = await s.usageRow(requestId);
    const cached = usage.input_tokens_details.cached_tokens;
    expect(row).toMatchObject({
      orgId: s.orgId,
      keyId: s.keyId,
      model: CHAT_MODEL,
      tier: 'test-spot',
      promptTokens: usage.input_tokens,
      completionTokens: usage.output_tokens,
      cachedTokens: cached,
      status: 200,
      estimated: false,
    });
    expect(Number(row!.costNanos)).toBe(costNanos(PRICE, { promptTokens: usage.input_tokens, completionTokens: usage.output_tokens, cachedTokens: cached }));
  }

  it('create (not streamed): the engine gets store:false, the Response is stored and retrievable, usage equals what the SDK read', async () => {
    const before = counts();
    const { data, request_id } = await client.responses.create({ model: CHAT_MODEL, input: 'Tell me about spot GPUs', instructions: 'Be brief.' }).withResponse();
    expect(data.id).toMatch(/^resp_/);
    expect(data.status).toBe('completed');
    expect(data.output_text.length).toBeGreaterThan(0);
    const { body } = servedBy(before);
    expect(body).toMatchObject({ model: CHAT_UPSTREAM, store: false, input: [{ type: 'message', role: 'user', content: 'Tell me about spot GPUs' }] });
    await usageMatches(request_id!, data.usage!);
    const got = await client.responses.retrieve(data.id);
    expect(got.id).toBe(data.id);
    expect(got.output_text).toBe(data.output_text);
    expect(got.usage).toEqual(data.usage);
  });

  it('a second turn with previous_response_id is served by the OTHER replica, from the gateway-expanded input', async () => {
    const before = counts();
    const first = await client.responses.create({ model: CHAT_MODEL, input: 'First question, about preemption' });
    const { served, other } = servedBy(before);
    // the replica that served turn one refuses now: turn two can only land on the other one
    served.faults.add({ kind: 'error-before', status: 503, count: 'always' });
    const otherBefore = responsesTo(other).length;
    const { data: second, request_id } = await client.responses.create({ model: CHAT_MODEL, input: 'And the second one?', previous_response_id: first.id }).withResponse();
    expect(second.status).toBe('completed');
    const got = responsesTo(other).slice(otherBefore);
    expect(got.length).toBe(1);
    const body = got[0].body;
    expect(body).not.toHaveProperty('previous_response_id');
    expect(body.store).toBe(false);
    // OpenAI's order: the previous input, the previous output, then this input
    expect(body.input).toEqual([
      { type: 'message', role: 'user', content: 'First question, about preemption' },
      ...(JSON.parse(JSON.stringify(first.output)) as unknown[]),
      { type: 'message', role: 'user', content: 'And the second one?' },
    ]);
    await usageMatches(request_id!, second.usage!);
    const stored = await client.responses.retrieve(second.id);
    expect(stored.previous_response_id).toBe(first.id);
  });

  it('responses.stream: the SDK assembles the text; response.completed is stored and billed as reported', async () => {
    const stream = client.responses.stream({ model: CHAT_MODEL, input: 'Stream a short answer' });
    const types = new Set<string>();
    let deltas = '';
    for await (const ev of stream) {
      types.add(ev.type);
      if (ev.type === 'response.output_text.delta') deltas += ev.delta;
    }
    const final = await stream.finalResponse();
    expect([...types]).toEqual(expect.arrayContaining(['response.created', 'response.in_progress', 'response.output_text.delta', 'response.completed']));
    expect(final.output_text).toBe(deltas);
    const row = await until(async () => (await app().find(s.orgId, final.id, new Date())) !== null);
    expect(row).toBe(true);
    const got = await client.responses.retrieve(final.id);
    expect(got.output_text).toBe(deltas);
    // the usage row of the stream: find it by its exact tokens (the stream's request id is in its head)
    const res = await fetch(`${s.baseURL}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: CHAT_MODEL, input: 'Stream a short answer', stream: true }),
    });
    const text = await res.text();
    const events = text.split('\n\n').filter(Boolean);
    expect(events[events.length - 1].startsWith('event: response.completed\n')).toBe(true);
    const completed = JSON.parse(events[events.length - 1].split('\ndata: ')[1]) as { response: OpenAI.Responses.Response };
    await usageMatches(res.headers.get('x-request-id')!, completed.response.usage!);
  });

  it('cached input tokens reach the usage row and are priced at the cached price', async () => {
    const input = 'A long shared preamble about spot capacity, preemption notices and fallbacks. '.repeat(20);
    let usage: OpenAI.Responses.ResponseUsage | null = null;
    let requestId = '';
    for (let i = 0; i < 6 && (usage === null || usage.input_tokens_details.cached_tokens === 0); i++) {
      const { data, request_id } = await client.responses.create({ model: CHAT_MODEL, input, store: false }).withResponse();
      usage = data.usage!;
      requestId = request_id!;
    }
    expect(usage!.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    await usageMatches(requestId, usage!);
  });

  it('store:false keeps nothing: retrieve and previous_response_id are 404', async () => {
    const r = await client.responses.create({ model: CHAT_MODEL, input: 'not kept', store: false });
    await new Promise((res) => setTimeout(res, 100));
    expect(await app().find(s.orgId, r.id, new Date())).toBeNull();
    await expect(client.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404 });
    const before = counts();
    await expect(client.responses.create({ model: CHAT_MODEL, input: 'x', previous_response_id: r.id })).rejects.toMatchObject({
      status: 404,
      error: { message: `Previous response with id '${r.id}' not found.`, type: 'invalid_request_error', param: 'previous_response_id', code: 'previous_response_not_found' },
    });
    // no engine was asked
    expect(counts()).toEqual(before);
  });

  it('inputItems.list pages the input items in OpenAI order (desc by default, after, limit, has_more)', async () => {
    const input: OpenAI.Responses.ResponseInput = [
      { role: 'user', content: 'one' },
      { role: 'user', content: 'two' },
      { role: 'user', content: 'three' },
    ];
    const r = await client.responses.create({ model: CHAT_MODEL, input });
    const page1 = await client.responses.inputItems.list(r.id, { limit: 2 });
    const texts = (items: OpenAI.Responses.ResponseItem[]) => items.map((it) => ((it as OpenAI.Responses.ResponseInputMessageItem).content[0] as { text: string }).text);
    expect(texts(page1.data)).toEqual(['three', 'two']);
    expect(page1.has_more).toBe(true);
    expect(page1.data[0].id).toMatch(/^msg_/);
    const page2 = await client.responses.inputItems.list(r.id, { limit: 2, after: page1.data[1].id });
    expect(texts(page2.data)).toEqual(['one']);
    expect(page2.has_more).toBe(false);
    const all: string[] = [];
    for await (const item of client.responses.inputItems.list(r.id, { limit: 1, order: 'asc' })) all.push(texts([item])[0]);
    expect(all).toEqual(['one', 'two', 'three']);
    // ids are stable across reads
    const again = await client.responses.inputItems.list(r.id, { limit: 2 });
    expect(again.data.map((d) => d.id)).toEqual(page1.data.map((d) => d.id));
  });

  it('delete deletes: retrieve, input_items and previous_response_id are 404 after it', async () => {
    const r = await client.responses.create({ model: CHAT_MODEL, input: 'to delete' });
    await client.responses.delete(r.id);
    await expect(client.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404, error: { message: `No response found with id '${r.id}'.` } });
    await expect(client.responses.inputItems.list(r.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.delete(r.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.create({ model: CHAT_MODEL, input: 'x', previous_response_id: r.id })).rejects.toMatchObject({ status: 404 });
  });

  it('cancel of a foreground Response is refused (400) and changes nothing; an unknown id is 404', async () => {
    const r = await client.responses.create({ model: CHAT_MODEL, input: 'cancel me' });
    await expect(client.responses.cancel(r.id)).rejects.toMatchObject({ status: 400, error: { type: 'invalid_request_error' } });
    expect((await client.responses.retrieve(r.id)).status).toBe('completed');
    await expect(client.responses.cancel('resp_unknown')).rejects.toMatchObject({ status: 404 });
  });

  it("retention: a Response past expires_at is 404 everywhere, and the worker's retention query deletes it", async () => {
    const r = await client.responses.create({ model: CHAT_MODEL, input: 'old' });
    await until(async () => (await app().find(s.orgId, r.id, new Date())) !== null);
    await app().expire(r.id, new Date(Date.now() - 1000));
    await expect(client.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.inputItems.list(r.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.create({ model: CHAT_MODEL, input: 'x', previous_response_id: r.id })).rejects.toMatchObject({ status: 404 });
    expect(await app().deleteExpired(new Date())).toBeGreaterThanOrEqual(1);
    expect(await app().expire(r.id, new Date(Date.now() + 60_000))).toBeUndefined();
    expect(await app().find(s.orgId, r.id, new Date())).toBeNull();
  });

  it("tenant isolation: another org's key gets 404 on every route and changes nothing", async () => {
    const r = await client.responses.create({ model: CHAT_MODEL, input: 'mine' });
    const otherStack = await startGatewayStack({ TIERS_FILE: tiersFile });
    try {
      const stranger = otherStack.client;
      const notFound = { status: 404, error: { message: `No response found with id '${r.id}'.` } };
      await expect(stranger.responses.retrieve(r.id)).rejects.toMatchObject(notFound);
      await expect(stranger.responses.inputItems.list(r.id)).rejects.toMatchObject(notFound);
      await expect(stranger.responses.cancel(r.id)).rejects.toMatchObject(notFound);
      await expect(stranger.responses.delete(r.id)).rejects.toMatchObject(notFound);
      const before = counts();
      await expect(stranger.responses.create({ model: CHAT_MODEL, input: 'x', previous_response_id: r.id })).rejects.toMatchObject({ status: 404 });
      expect(counts()).toEqual(before);
      // still there for its owner, unchanged
      expect((await client.responses.retrieve(r.id)).output_text).toBe(r.output_text);
    } finally {
      await otherStack.close();
    }
  });

  it('a key whose allow-list does not name the model gets 404 for its Responses', async () => {
    const r = await client.responses.create({ model: CHAT_MODEL, input: 'allow-list' });
    const narrow = await s.newKey({ models: [OTHER_MODEL] });
    const c = new OpenAI({ baseURL: s.baseURL, apiKey: narrow.key, maxRetries: 0 });
    await expect(c.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404 });
    await expect(c.responses.create({ model: CHAT_MODEL, input: 'x' })).rejects.toMatchObject({ status: 404, error: { code: 'model_not_found' } });
  });

  describe('a second gateway process', () => {
    let gw: GatewayProcess | null = null;
    afterAll(async () => {
      await gw?.stop();
    });

    it('serves the second turn of a Response the first gateway stored', async () => {
      gw = await spawnGateway({ env: { TIERS_FILE: tiersFile, DATABASE_URL: s.config.DATABASE_URL, LOG_LEVEL: 'error' } });
      const first = await client.responses.create({ model: CHAT_MODEL, input: 'Turn one on gateway one' });
      const c2 = new OpenAI({ baseURL: gw.baseURL, apiKey: s.key, maxRetries: 0 });
      const before = counts();
      const { data: second, request_id } = await c2.responses.create({ model: CHAT_MODEL, input: 'Turn two on gateway two', previous_response_id: first.id }).withResponse();
      expect(second.status).toBe('completed');
      const { body } = servedBy(before);
      expect((body.input as unknown[]).length).toBe(2 + first.output.length);
      expect(body.store).toBe(false);
      await usageMatches(request_id!, second.usage!);
      // and the first gateway reads what the second stored
      const third = await client.responses.create({ model: CHAT_MODEL, input: 'Turn three back on gateway one', previous_response_id: second.id });
      expect(third.status).toBe('completed');
      expect((await client.responses.retrieve(second.id)).previous_response_id).toBe(first.id);
    });
  });

  describe('@openai/agents', () => {
    const weather = tool({
      name: 'get_weather',
      description: 'The weather in a city',
      parameters: z.object({ city: z.string() }),
      execute: ({ city }) => `It is sunny in ${city}.`,
    });
    beforeAll(() => {
      setTracingDisabled(true);
      setDefaultOpenAIClient(client as never);
    });

    it('runs an agent with one function tool end to end (full input sent back each turn)', async () => {
      const before = counts();
      const agent = new Agent({ name: 'weather', instructions: 'Answer with the tool.', model: CHAT_MODEL, tools: [weather] });
      const result = await run(agent, 'What is the weather in Paris?');
      expect(typeof result.finalOutput).toBe('string');
      expect((result.finalOutput as string).length).toBeGreaterThan(0);
      const calls = result.newItems.filter((i) => i.type === 'tool_call_output_item');
      expect(calls.length).toBe(1);
      const sent = [...responsesTo(a).slice(before.a), ...responsesTo(b).slice(before.b)];
      expect(sent.length).toBe(2);
      const last = sent.find((r) => (r.body.input as Array<{ type?: string }>).some((i) => i.type === 'function_call_output'));
      expect(last).toBeDefined();
    });

    it('runs the agent server-managed: the function_call_output goes with previous_response_id, which the gateway expands', async () => {
      const start = await client.responses.create({ model: CHAT_MODEL, input: 'We will talk about weather.' });
      const before = counts();
      const agent = new Agent({ name: 'weather', instructions: 'Answer with the tool.', model: CHAT_MODEL, tools: [weather] });
      const result = await run(agent, 'What is the weather in Oslo?', { previousResponseId: start.id });
      expect((result.finalOutput as string).length).toBeGreaterThan(0);
      const sent = [...responsesTo(a).slice(before.a), ...responsesTo(b).slice(before.b)];
      expect(sent.length).toBe(2);
      // what the engine got for the tool output turn: the whole chain, expanded by the gateway
      const toolTurn = sent.find((r) => (r.body.input as Array<{ type?: string }>).some((i) => i.type === 'function_call_output'))!;
      const items = toolTurn.body.input as Array<{ type?: string; role?: string; content?: unknown }>;
      expect(items[0]).toMatchObject({ role: 'user', content: 'We will talk about weather.' });
      expect(items.some((i) => i.type === 'function_call')).toBe(true);
      expect(toolTurn.body).not.toHaveProperty('previous_response_id');
    });
  });

  function app(): ResponsesRepository {
    return s.app.get(ResponsesRepository);
  }
});

async function until(fn: () => Promise<boolean>, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
