import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { CHAT_UPSTREAM, EMBED_MODEL, type GatewayStack, OTHER_MODEL, startGatewayStack } from '../support/gateway-stack';

const CHAT = 'llama-public';
const EMBED = 'embed-public';
const SAME = OTHER_MODEL;

/** Public ids mapped to the engine's own names (`upstream:`), and one served under its own name. */
const tiers = (simUrl: string) => `tiers:
  - name: names-spot
    kind: spot
    endpoints: [${simUrl}]
    models:
      - id: ${CHAT}
        upstream: ${CHAT_UPSTREAM}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
      - id: ${EMBED}
        upstream: ${EMBED_MODEL}
        price: { input_per_mtok: 0.01, output_per_mtok: 0 }
      - id: ${SAME}
        upstream: ${SAME}
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
`;

/** The `data:` JSON of every SSE event of `text` (the `[DONE]` left out). */
function events(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n\n')
    .filter((e) => e.includes('data: ') && !e.includes('data: [DONE]'))
    .map((e) => JSON.parse(e.slice(e.indexOf('data: ') + 6)) as Record<string, unknown>);
}

/**
 * Every answer names the model as the client asked for it, whichever engine name the tier gives it: OpenAI's
 * clients compare and log `model`, and the engine's name (a path, a quantisation) is the operator's business.
 */
describe('gateway: answers carry the model the client asked for, on every API, streamed chunks included', () => {
  let s: GatewayStack;
  let anthropic: Anthropic;
  const raw = (path: string, body: unknown) =>
    fetch(`${s.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  beforeAll(async () => {
    s = await startGatewayStack({}, { outputTokens: 4 }, tiers);
    anthropic = new Anthropic({ baseURL: s.url, apiKey: s.key, maxRetries: 0 });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('chat and completions, streamed and not: the client\'s model in the body and in every chunk', async () => {
    const chat = await s.client.chat.completions.create({ model: CHAT, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    expect(chat.model).toBe(CHAT);
    expect(s.sim.received.at(-1)!.body).toMatchObject({ model: CHAT_UPSTREAM });
    const stream = await s.client.chat.completions.create({ model: CHAT, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true, stream_options: { include_usage: true } });
    const chunks: string[] = [];
    for await (const c of stream) chunks.push(c.model);
    expect(chunks.length).toBeGreaterThan(3);
    expect(new Set(chunks)).toEqual(new Set([CHAT]));

    const completion = await s.client.completions.create({ model: CHAT, prompt: 'once upon', max_tokens: 3 });
    expect(completion.model).toBe(CHAT);
    const cs = await s.client.completions.create({ model: CHAT, prompt: 'once upon', max_tokens: 3, stream: true });
    const models: string[] = [];
    for await (const c of cs) models.push(c.model);
    expect(new Set(models)).toEqual(new Set([CHAT]));
    // the body's length is the renamed body's (what the SDK parsed), no engine name anywhere
    const res = await raw('/v1/chat/completions', { model: CHAT, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    const text = await res.text();
    expect(text).not.toContain(CHAT_UPSTREAM);
    expect((JSON.parse(text) as { model: string }).model).toBe(CHAT);
  });

  it('embeddings and rerank', async () => {
    const emb = await s.client.embeddings.create({ model: EMBED, input: ['spot', 'on-demand'] });
    expect(emb.model).toBe(EMBED);
    expect(emb.data).toHaveLength(2);
    const rerank = await raw('/v1/rerank', { model: EMBED, query: 'cheap', documents: ['spot is cheap', 'the sea'] });
    expect(rerank.status).toBe(200);
    expect(((await rerank.json()) as { model: string }).model).toBe(EMBED);
  });

  it('responses, streamed and not, and the stored Response', async () => {
    const r = await s.client.responses.create({ model: CHAT, input: 'hi' });
    expect(r.model).toBe(CHAT);
    expect((await s.client.responses.retrieve(r.id)).model).toBe(CHAT);
    const stream = await s.client.responses.create({ model: CHAT, input: 'hi', stream: true });
    const seen: string[] = [];
    for await (const ev of stream) if ('response' in ev) seen.push(ev.response.model);
    expect(seen).toEqual([CHAT, CHAT, CHAT]);
  });

  it('messages, streamed and not', async () => {
    const messages = [{ role: 'user' as const, content: 'hi' }];
    const msg = await anthropic.messages.create({ model: CHAT, max_tokens: 3, messages });
    expect(msg.model).toBe(CHAT);
    const stream = anthropic.messages.stream({ model: CHAT, max_tokens: 3, messages });
    const started: string[] = [];
    stream.on('streamEvent', (e) => {
      if (e.type === 'message_start') started.push(e.message.model);
    });
    const final = await stream.finalMessage();
    expect(started).toEqual([CHAT]);
    expect(final.model).toBe(CHAT);
  });

  it('an answer whose names agree passes as the engine sent it (its content-length kept)', async () => {
    const res = await raw('/v1/chat/completions', { model: SAME, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(res.headers.get('content-length')).not.toBeNull();
    expect(((await res.json()) as { model: string }).model).toBe(SAME);
    const renamed = await raw('/v1/chat/completions', { model: CHAT, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(renamed.headers.get('content-length')).toBeNull();
    expect(events(`data: ${await renamed.text()}\n\n`)[0].model).toBe(CHAT);
  });
});

describe('gateway: the Response object has every field of OpenAI\'s, previous_response_id included', () => {
  let s: GatewayStack;

  beforeAll(async () => {
    s = await startGatewayStack({}, { outputTokens: 3 }, tiers);
  });
  afterAll(async () => {
    await s?.close();
  });

  // openai-node's `Response` fields (less the SDK's own output_text, and the fields OpenAI adds for its own tools)
  const FIELDS = [
    'id', 'object', 'created_at', 'status', 'background', 'completed_at', 'conversation', 'error', 'incomplete_details', 'instructions',
    'max_output_tokens', 'max_tool_calls', 'metadata', 'model', 'output', 'parallel_tool_calls', 'previous_response_id', 'prompt',
    'prompt_cache_key', 'prompt_cache_retention', 'reasoning', 'safety_identifier', 'service_tier', 'store', 'temperature', 'text',
    'tool_choice', 'tools', 'top_logprobs', 'top_p', 'truncation', 'usage', 'user',
  ];
  const missing = (r: object) => FIELDS.filter((f) => !(f in r));

  it('create (not streamed), then a second turn: previous_response_id null, then the id given; the same on retrieve', async () => {
    const first = await s.client.responses.create({ model: CHAT, input: 'first turn', safety_identifier: 'user-42', prompt_cache_key: 'conv-1' });
    expect(missing(first)).toEqual([]);
    expect(first).toMatchObject({ previous_response_id: null, store: true, error: null, conversation: null, safety_identifier: 'user-42', prompt_cache_key: 'conv-1', status: 'completed' });
    expect(first.completed_at).toBeGreaterThanOrEqual(first.created_at);
    const second = await s.client.responses.create({ model: CHAT, input: 'second turn', previous_response_id: first.id });
    expect(missing(second)).toEqual([]);
    expect(second.previous_response_id).toBe(first.id);
    expect(second.safety_identifier).toBeNull();
    // the engine got neither: the state is ours
    expect(s.sim.received.at(-1)!.body).not.toHaveProperty('previous_response_id');
    const got = await s.client.responses.retrieve(second.id);
    expect(missing(got)).toEqual([]);
    expect(got).toMatchObject({ id: second.id, previous_response_id: first.id, model: CHAT, store: true, completed_at: second.completed_at });
    expect((await s.client.responses.retrieve(first.id)).previous_response_id).toBeNull();
    // store: false is said so
    const unstored = await s.client.responses.create({ model: CHAT, input: 'not kept', store: false });
    expect((unstored as unknown as { store: boolean }).store).toBe(false);
  });

  it('streamed: response.created, in_progress and completed carry the whole object; the stored one is the completed', async () => {
    const first = await s.client.responses.create({ model: CHAT, input: 'turn one' });
    const stream = await s.client.responses.create({ model: CHAT, input: 'turn two', previous_response_id: first.id, stream: true });
    const lifecycle: OpenAI.Responses.Response[] = [];
    for await (const ev of stream) if ('response' in ev) lifecycle.push(ev.response);
    expect(lifecycle.map((r) => r.status)).toEqual(['in_progress', 'in_progress', 'completed']);
    for (const r of lifecycle) {
      expect(missing(r)).toEqual([]);
      expect(r.previous_response_id).toBe(first.id);
    }
    expect(lifecycle[0].completed_at).toBeNull();
    const done = lifecycle[2];
    expect(done.completed_at).toEqual(expect.any(Number));
    const got = await s.client.responses.retrieve(done.id);
    expect(got).toMatchObject({ previous_response_id: first.id, completed_at: done.completed_at, model: CHAT });
    expect(missing(got)).toEqual([]);
  });
});
