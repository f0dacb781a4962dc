import { EMBED_MODEL, type GatewayStack, startGatewayStack } from '../support/gateway-stack';

// The tiers file of the stack prices EMBED_MODEL at 0.01 $/Mtok of input: 10 nano-USD a token.
const NANOS_PER_TOKEN = 10;

/** vLLM's scoring APIs through the gateway, by plain fetch as RAG stacks call them: auth, routing, metering. */
describe('gateway: rerank and score', () => {
  let s: GatewayStack;
  const post = (path: string, body: unknown, key: string | null = s.key) =>
    fetch(`${s.url}${path}`, {
      method: 'POST',
      headers: { ...(key === null ? {} : { authorization: `Bearer ${key}` }), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    s = await startGatewayStack();
  });
  afterAll(async () => {
    await s?.close();
  });

  it('reranks on every path vLLM serves, bills the prompt tokens the engine reported, at the tier price', async () => {
    const documents = ['spot instances are cheap', 'on-demand instances are steady', 'bananas are yellow'];
    for (const [path, upstream] of [
      ['/v1/rerank', '/v1/rerank'],
      ['/rerank', '/v1/rerank'],
      ['/v2/rerank', '/v2/rerank'],
    ] as const) {
      s.sim.received.length = 0;
      const res = await post(path, { model: EMBED_MODEL, query: 'cheap spot instances', documents, top_n: 2 });
      expect(res.status).toBe(200);
      const requestId = res.headers.get('x-request-id')!;
      const body = (await res.json()) as { results: Array<{ index: number; relevance_score: number }>; usage: { prompt_tokens: number } };
      expect(body.results).toHaveLength(2);
      expect(body.results[0].index).toBe(0);
      expect(s.sim.received[0]).toMatchObject({ path: upstream, body: { model: EMBED_MODEL, query: 'cheap spot instances' } });
      const row = await s.usageRow(requestId);
      expect(row).toMatchObject({ model: EMBED_MODEL, promptTokens: body.usage.prompt_tokens, completionTokens: 0, estimated: false, status: 200 });
      expect(body.usage.prompt_tokens).toBeGreaterThan(0);
      expect(Number(row!.costNanos)).toBe(body.usage.prompt_tokens * NANOS_PER_TOKEN);
    }
  });

  it('scores text pairs on /v1/score and /score and bills them', async () => {
    for (const path of ['/v1/score', '/score']) {
      const res = await post(path, { model: EMBED_MODEL, text_1: 'spot gpus', text_2: ['spot gpus are cheap', 'the sea is blue'] });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { data: Array<{ score: number }>; usage: { prompt_tokens: number } };
      expect(body.data).toHaveLength(2);
      expect(body.data[0].score).toBeGreaterThan(body.data[1].score);
      const row = await s.usageRow(res.headers.get('x-request-id')!);
      expect(row!.promptTokens).toBe(body.usage.prompt_tokens);
    }
  });

  it('answers bad requests in the OpenAI envelope: ours before the engine, the engine\'s rewritten', async () => {
    const noKey = await post('/v1/rerank', { model: EMBED_MODEL, query: 'q', documents: ['d'] }, null);
    expect(noKey.status).toBe(401);
    expect(((await noKey.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    const unknown = await post('/v1/rerank', { model: 'no-such-model', query: 'q', documents: ['d'] });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('model_not_found');
    s.sim.received.length = 0;
    const missing = await post('/v1/rerank', { model: EMBED_MODEL, documents: ['d'] });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { param: string } }).error).toMatchObject({ param: 'query', code: 'missing_required_parameter' });
    expect(s.sim.received).toHaveLength(0);
    // 2:3 texts: the engine's 400, in OpenAI's envelope
    const uneven = await post('/v1/score', { model: EMBED_MODEL, text_1: ['a', 'b'], text_2: ['c', 'd', 'e'] });
    expect(uneven.status).toBe(400);
    const err = ((await uneven.json()) as { error: { message: string; type: string } }).error;
    expect(err.message).toMatch(/1:1, 1:N or N:N/);
    expect(err.type).toBe('invalid_request_error');
  });
});
