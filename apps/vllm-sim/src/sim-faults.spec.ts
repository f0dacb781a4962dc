import OpenAI from 'openai';
import { postJson, sseData, until } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

describe('vllm-sim fault injection', () => {
  let sim: SimServer;
  let client: OpenAI;
  const messages = [{ role: 'user' as const, content: 'hi' }];

  beforeAll(async () => {
    sim = await startSim({ models: ['m1', 'm2'], outputTokens: 6 });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  it.each([
    [500, OpenAI.InternalServerError, 'InternalServerError'],
    [503, OpenAI.InternalServerError, 'ServiceUnavailableError'],
    [429, OpenAI.RateLimitError, 'TooManyRequestsError'],
  ])('error-before %i reaches the SDK as the right error class', async (status, cls, type) => {
    sim.faults.add({ kind: 'error-before', status });
    const err = await client.chat.completions.create({ model: 'm1', messages, stream: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(cls);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ type, code: status, param: null });
    // One-shot: the next request is fine.
    await expect(client.chat.completions.create({ model: 'm1', messages })).resolves.toMatchObject({ object: 'chat.completion' });
    expect(sim.stats).toMatchObject({ requests: 2, failed: 1, completed: 1 });
  });

  it('error-before can carry headers, a message, a count, and match a model', async () => {
    sim.faults.add({ kind: 'error-before', status: 429, message: 'slow down', headers: { 'retry-after': '7' }, count: 2, model: 'm2' });
    expect((await client.chat.completions.create({ model: 'm1', messages })).object).toBe('chat.completion');
    for (let i = 0; i < 2; i++) {
      const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm2', messages });
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('7');
      expect(await res.json()).toEqual({ error: { message: 'slow down', type: 'TooManyRequestsError', param: null, code: 429 } });
    }
    expect((await postJson(`${sim.url}/v1/chat/completions`, { model: 'm2', messages })).status).toBe(200);
    expect(sim.faults.size).toBe(0);
  });

  it('error-after sends a vLLM error frame mid-stream and the SDK stream throws', async () => {
    sim.faults.add({ kind: 'error-after', afterTokens: 2 });
    const stream = await client.chat.completions.create({ model: 'm1', messages, stream: true });
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ type: 'InternalServerError', code: 500 });
    expect(got).toEqual(['', ' lorem', ' ipsum']);
    expect(sim.stats).toMatchObject({ failed: 1, completed: 0, generationTokens: 2 });
  });

  it('error-after frames are byte-exact (Python json.dumps), followed by [DONE] unless done: false', async () => {
    sim.faults.add({ kind: 'error-after', afterTokens: 1, status: 400, message: 'boom', type: 'BadRequestError' });
    let text = await (await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages, stream: true })).text();
    let data = sseData(text);
    expect(data).toHaveLength(4);
    expect(data[2]).toBe('{"error": {"message": "boom", "type": "BadRequestError", "param": null, "code": 400}}');
    expect(data[3]).toBe('[DONE]');

    sim.faults.add({ kind: 'error-after', afterTokens: 0, done: false });
    text = await (await postJson(`${sim.url}/v1/completions`, { model: 'm1', prompt: 'x', stream: true })).text();
    data = sseData(text);
    expect(data).toEqual(['{"error": {"message": "Internal Server Error", "type": "InternalServerError", "param": null, "code": 500}}']);

    sim.faults.add({ kind: 'error-after', afterTokens: 3 });
    const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: { message: 'Internal Server Error', type: 'InternalServerError', param: null, code: 500 } });
  });

  it('drop kills the connection mid-stream and the SDK stream throws', async () => {
    sim.faults.add({ kind: 'drop', afterTokens: 2 });
    const stream = await client.chat.completions.create({ model: 'm1', messages, stream: true });
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    // undici's "terminated" TypeError (from another realm than jest's Error).
    expect(String(err)).toMatch(/terminated/);
    expect(got).toEqual(['', ' lorem', ' ipsum']);
    expect(sim.stats).toMatchObject({ dropped: 1, completed: 0 });
  });

  it('drop with afterTokens 0 closes before any header', async () => {
    sim.faults.add({ kind: 'drop', afterTokens: 0, path: '/v1/embeddings' });
    const err = await client.embeddings.create({ model: 'm1', input: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(sim.stats.dropped).toBe(1);
  });

  it('slow-start delays the headers and counts the request as waiting', async () => {
    sim.faults.add({ kind: 'slow-start', delayMs: 150 });
    let headersAt = 0;
    const pending = postJson(`${sim.url}/v1/chat/completions`, { model: 'm2', messages, stream: true }).then((r) => {
      headersAt = Date.now();
      return r.text();
    });
    await until(() => sim.stats.waiting === 1, 'the request to wait');
    const metrics = await (await fetch(`${sim.url}/metrics`)).text();
    expect(metrics).toMatch(/^vllm:num_requests_waiting\{model_name="m2",engine="0"\} 1\.0$/m);
    expect(headersAt).toBe(0);
    const text = await pending;
    expect(sseData(text).at(-1)).toBe('[DONE]');
    expect(sim.stats).toMatchObject({ waiting: 0, running: 0, completed: 1 });
  });

  it('hang never answers; the client abort is counted', async () => {
    sim.faults.add({ kind: 'hang' });
    const ac = new AbortController();
    const pending = client.chat.completions.create({ model: 'm1', messages }, { signal: ac.signal }).catch((e: unknown) => e);
    await until(() => sim.stats.running === 1, 'the request to hang');
    ac.abort();
    expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);
    await until(() => sim.stats.aborted === 1, 'the abort to reach the sim');
    expect(sim.stats).toMatchObject({ running: 0, completed: 0 });
  });

  it('faults can target plain endpoints by path (a failing /health)', async () => {
    sim.faults.add({ kind: 'error-before', status: 503, path: '/health', count: 'always' });
    expect((await fetch(`${sim.url}/health`)).status).toBe(503);
    expect((await fetch(`${sim.url}/health`)).status).toBe(503);
    // Inference is unaffected.
    expect((await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages })).status).toBe(200);
    sim.faults.clear();
    expect((await fetch(`${sim.url}/health`)).status).toBe(200);
  });

  it('is driven over HTTP: POST/GET/DELETE /sim/faults and GET /sim/stats', async () => {
    let res = await postJson(`${sim.url}/sim/faults`, [
      { kind: 'error-before', status: 502 },
      { kind: 'slow-start', delayMs: 1, count: 2 },
    ]);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ queued: 2 });
    expect(((await (await fetch(`${sim.url}/sim/faults`)).json()) as { faults: unknown[] }).faults).toHaveLength(2);
    expect((await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages })).status).toBe(502);

    res = await postJson(`${sim.url}/sim/faults`, { kind: 'explode' });
    expect(res.status).toBe(400);
    res = await postJson(`${sim.url}/sim/faults`, { kind: 'drop' });
    expect(res.status).toBe(400);

    res = await fetch(`${sim.url}/sim/faults`, { method: 'DELETE' });
    expect(await res.json()).toEqual({ cleared: 1 });
    expect(sim.faults.size).toBe(0);

    const stats = (await (await fetch(`${sim.url}/sim/stats`)).json()) as Record<string, number>;
    expect(stats).toMatchObject({ requests: 1, failed: 1, running: 0 });
  });
});

describe('vllm-sim aborts and timing', () => {
  let sim: SimServer;
  beforeAll(async () => {
    sim = await startSim({ models: ['m1'], ttftMs: 20, itlMs: 20, outputTokens: 200 });
  });
  afterAll(() => sim.close());

  it('stops generating as soon as the client disconnects mid-stream', async () => {
    const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'm1', messages: [{ role: 'user', content: 'go' }], stream: true },
      { signal: ac.signal },
    );
    let n = 0;
    for await (const _ of stream) {
      if (++n === 3) ac.abort();
    }
    await until(() => sim.stats.aborted === 1, 'the abort');
    const tokens = sim.stats.generationTokens;
    expect(tokens).toBeLessThan(10);
    await new Promise((r) => setTimeout(r, 100));
    expect(sim.stats.generationTokens).toBe(tokens);
    expect(sim.stats).toMatchObject({ running: 0, completed: 0 });
  });

  it('sends headers before the first token, then tokens one event at a time', async () => {
    const res = await postJson(`${sim.url}/v1/chat/completions`, {
      model: 'm1', messages: [{ role: 'user', content: 'go' }], stream: true, max_tokens: 3,
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = res.body!.getReader();
    const reads: string[] = [];
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      reads.push(decoder.decode(value));
    }
    // Role chunk travels with the first token; then the two other tokens; the last carries [DONE].
    expect(reads.length).toBeGreaterThanOrEqual(3);
    expect(reads[0]).toMatch(/"delta":\{"role":"assistant","content":""\}.*\n\ndata: .*"delta":\{"content":" lorem"\}/s);
    expect(reads.join('')).toMatch(/data: \[DONE\]\n\n$/);
  });
});
