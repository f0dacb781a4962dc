import OpenAI from 'openai';
import { postJson } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

type Chunk = {
  id: string;
  object: string;
  choices: { index: number; delta: { role?: string; content?: string }; finish_reason: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
};

describe('vllm-sim through the openai SDK', () => {
  let sim: SimServer;
  let client: OpenAI;

  beforeAll(async () => {
    sim = await startSim({ models: ['m1', 'm2'], outputTokens: 5 });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  const messages = [{ role: 'user' as const, content: 'say something nice' }];

  it('answers a non-streamed chat completion with exact usage', async () => {
    const res = await client.chat.completions.create({ model: 'm2', messages });
    expect(res.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe('m2');
    expect(Math.abs(res.created - Date.now() / 1000)).toBeLessThan(5);
    expect(res.choices).toHaveLength(1);
    const choice = res.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content).toBe(' lorem ipsum dolor sit amet');
    expect(choice.finish_reason).toBe('stop');
    expect(choice.logprobs).toBeNull();
    // 3 + (4 + 3 words) for one message.
    expect(res.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, prompt_tokens_details: null });
    expect(sim.stats).toMatchObject({ requests: 1, completed: 1, running: 0, aborted: 0 });
  });

  it('honours n, max_tokens and max_completion_tokens', async () => {
    const res = await client.chat.completions.create({ model: 'm1', messages, n: 3, max_tokens: 2 });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(res.choices.every((c) => c.finish_reason === 'length')).toBe(true);
    expect(new Set(res.choices.map((c) => c.message.content)).size).toBe(3);
    expect(res.usage?.completion_tokens).toBe(6);

    const capped = await client.chat.completions.create({ model: 'm1', messages, max_completion_tokens: 4, max_tokens: 1 });
    expect(capped.usage?.completion_tokens).toBe(4);
    expect(capped.choices[0]!.finish_reason).toBe('length');
  });

  it('streams with include_usage: usage equals the content deltas, in a final choices-less chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'm1', messages, n: 2, stream: true, stream_options: { include_usage: true },
    });
    const chunks: Chunk[] = [];
    for await (const c of stream) chunks.push(c as Chunk);
    const contentDeltas = chunks.flatMap((c) => c.choices).filter((c) => c.delta.content);
    expect(contentDeltas).toHaveLength(10);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 });
    expect(chunks.slice(0, -1).every((c) => !('usage' in c))).toBe(true);
    const finishes = chunks.flatMap((c) => c.choices).filter((c) => c.finish_reason !== null);
    expect(finishes.map((c) => [c.index, c.finish_reason])).toEqual([[0, 'stop'], [1, 'stop']]);
  });

  it('streams without include_usage: no chunk has a usage key', async () => {
    const stream = await client.chat.completions.create({ model: 'm1', messages, stream: true });
    const chunks: Chunk[] = [];
    for await (const c of stream) chunks.push(c as Chunk);
    expect(chunks.some((c) => 'usage' in c)).toBe(false);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.slice(1).map((c) => c.choices[0]!.delta.content).join('')).toBe(' lorem ipsum dolor sit amet');
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it('answers tools with a tool call the SDK stream helper assembles', async () => {
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string' }, days: { type: 'integer' }, metric: { type: 'boolean' } },
            required: ['city'],
          },
        },
      },
      { type: 'function' as const, function: { name: 'other', parameters: { type: 'object', properties: {} } } },
    ];
    const stream = client.chat.completions.stream({ model: 'm1', messages, tools, stream_options: { include_usage: true } });
    const final = await stream.finalChatCompletion();
    const choice = final.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.tool_calls).toHaveLength(1);
    const call = choice.message.tool_calls![0]!;
    expect(call.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
    expect(call.type).toBe('function');
    if (call.type !== 'function') throw new Error('expected a function call');
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'value', days: 1, metric: true });
    expect(final.usage?.completion_tokens).toBeGreaterThan(1);

    const named = await client.chat.completions.create({
      model: 'm1', messages, tools, tool_choice: { type: 'function', function: { name: 'other' } },
    });
    expect(named.choices[0]!.message.content).toBeNull();
    expect(named.choices[0]!.finish_reason).toBe('tool_calls');
    const namedCall = named.choices[0]!.message.tool_calls![0]!;
    expect(namedCall.type === 'function' && namedCall.function).toEqual({ name: 'other', arguments: '{}' });

    const none = await client.chat.completions.create({ model: 'm1', messages, tools, tool_choice: 'none' });
    expect(none.choices[0]!.message.tool_calls).toEqual([]);
    expect(none.choices[0]!.finish_reason).toBe('stop');
  });

  it('runs a tool loop with runTools: a tool call, then words once the tool answered', async () => {
    const seen: unknown[] = [];
    const runner = client.chat.completions.runTools({
      model: 'm1',
      messages,
      tools: [
        {
          type: 'function',
          function: {
            name: 'lookup',
            description: 'Looks something up.',
            parameters: { type: 'object', properties: { q: { type: 'string' } } },
            parse: (s: string) => JSON.parse(s) as { q: string },
            function: (args: { q: string }) => {
              seen.push(args);
              return 'found';
            },
          },
        },
      ],
    });
    await expect(runner.finalContent()).resolves.toBe(' lorem ipsum dolor sit amet');
    expect(seen).toEqual([{ q: 'value' }]);
    const forwarded = sim.received.at(-1)!.body as { messages: { role: string; content?: string }[] };
    expect(forwarded.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(forwarded.messages[2]!.content).toBe('found');
  });

  it('makes response_format content valid JSON', async () => {
    const obj = await client.chat.completions.create({ model: 'm1', messages, response_format: { type: 'json_object' } });
    expect(JSON.parse(obj.choices[0]!.message.content!)).toEqual({ result: expect.any(String) });

    const schema = {
      type: 'object',
      properties: {
        name: { type: 'string' },
        age: { type: 'integer', minimum: 18 },
        tags: { type: 'array', items: { type: 'string' } },
        kind: { enum: ['a', 'b'] },
        address: { $ref: '#/$defs/address' },
      },
      $defs: { address: { type: 'object', properties: { zip: { type: 'string' } } } },
    };
    const res = await client.chat.completions.create({
      model: 'm1', messages, stream: true,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema } },
    });
    let text = '';
    for await (const c of res) text += c.choices[0]?.delta.content ?? '';
    expect(JSON.parse(text)).toEqual({ name: 'value', age: 18, tags: ['value'], kind: 'a', address: { zip: 'value' } });
  });

  it('serves /v1/completions, streamed and not', async () => {
    const res = await client.completions.create({ model: 'm1', prompt: ['one two three', 'four'], n: 2, max_tokens: 3 });
    expect(res.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
    expect(res.object).toBe('text_completion');
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(res.choices[0]!.text).toBe(' lorem ipsum dolor');
    expect(res.choices[0]!.finish_reason).toBe('length');
    expect(res.usage).toMatchObject({ prompt_tokens: 4 + 2, completion_tokens: 12, total_tokens: 18 });

    const stream = await client.completions.create({
      model: 'm1', prompt: 'hello', stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 2, completion_tokens: 5, total_tokens: 7 });
    const body = chunks.slice(0, -1);
    expect(body.every((c) => c.object === 'text_completion' && c.usage === null)).toBe(true);
    expect(body.map((c) => c.choices[0]!.text).join('')).toBe(' lorem ipsum dolor sit amet');
    expect(body.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('serves deterministic embeddings, base64 (SDK default) and float', async () => {
    const res = await client.embeddings.create({ model: 'm1', input: ['hello world', 'bye'] });
    expect(res.object).toBe('list');
    expect(res.model).toBe('m1');
    expect(res.data.map((d) => [d.object, d.index, d.embedding.length])).toEqual([['embedding', 0, 16], ['embedding', 1, 16]]);
    expect(res.usage).toMatchObject({ prompt_tokens: 3 + 2, total_tokens: 5 });
    const norm = Math.hypot(...res.data[0]!.embedding);
    expect(norm).toBeCloseTo(1, 5);
    expect((sim.received.at(-1)!.body as { encoding_format: string }).encoding_format).toBe('base64');

    const floats = await client.embeddings.create({ model: 'm1', input: 'hello world', encoding_format: 'float' });
    expect(floats.data[0]!.embedding).toEqual(res.data[0]!.embedding);
    expect(res.data[1]!.embedding).not.toEqual(res.data[0]!.embedding);

    const tokens = await client.embeddings.create({ model: 'm1', input: [[1, 2, 3]], encoding_format: 'float' });
    expect(tokens.usage.prompt_tokens).toBe(3);
  });

  it('lists the models like vLLM', async () => {
    const list = [];
    for await (const m of client.models.list()) list.push(m);
    expect(list.map((m) => m.id)).toEqual(['m1', 'm2']);
    expect(list[0]).toMatchObject({ object: 'model', owned_by: 'vllm', root: 'm1', parent: null, max_model_len: 8192 });
    expect((list[0] as unknown as { permission: unknown[] }).permission[0]).toMatchObject({ object: 'model_permission' });
  });

  it('answers an unknown model with vLLM 404 NotFoundError', async () => {
    const err = await client.chat.completions.create({ model: 'nope', messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).error).toEqual({
      message: 'The model `nope` does not exist.', type: 'NotFoundError', param: null, code: 404,
    });
    const raw = await postJson(`${sim.url}/v1/chat/completions`, { model: 'nope', messages });
    expect(raw.status).toBe(404);
    expect(await raw.json()).toEqual({
      error: { message: 'The model `nope` does not exist.', type: 'NotFoundError', param: null, code: 404 },
    });
  });

  it('rejects bad requests with 400 in vLLM shape', async () => {
    const cases: [unknown, RegExp][] = [
      [{ model: 'm1' }, /messages/],
      [{ model: 'm1', messages, stream_options: { include_usage: true } }, /Stream options can only be defined when `stream=True`/],
      [{ model: 'm1', messages, max_tokens: 0 }, /max_tokens/],
      [{ model: 'm1', messages, max_tokens: 9000 }, /maximum context length is 8192/],
    ];
    for (const [body, message] of cases) {
      const res = await postJson(`${sim.url}/v1/chat/completions`, body);
      expect(res.status).toBe(400);
      const json = (await res.json()) as { error: { message: string; type: string; code: number; param: null } };
      expect(json.error.message).toMatch(message);
      expect(json.error.code).toBe(400);
      expect(['Bad Request', 'BadRequestError']).toContain(json.error.type);
      expect(json.error.param).toBeNull();
    }
    const bad = await fetch(`${sim.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/JSON decode error/);
    const err = await client.chat.completions.create({ model: 'm1', messages, max_tokens: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('records what it received, honours X-Request-Id, and serves /health, /version, /metrics', async () => {
    await client.chat.completions.create({ model: 'm1', messages }, { headers: { 'x-request-id': 'abc123' } }).then((r) => {
      expect(r.id).toBe('chatcmpl-abc123');
    });
    const rec = sim.received.at(-1)!;
    expect(rec.path).toBe('/v1/chat/completions');
    expect(rec.method).toBe('POST');
    expect(rec.body).toEqual({ model: 'm1', messages });
    expect(rec.headers.authorization).toBe('Bearer x');

    const health = await fetch(`${sim.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('');
    expect(await (await fetch(`${sim.url}/version`)).json()).toEqual({ version: '0.11.0' });

    const scrape = async (): Promise<string> => {
      const res = await fetch(`${sim.url}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      return res.text();
    };
    const sample = (text: string, name: string, model: string): number =>
      Number(new RegExp(`^${name}\\{model_name="${model}",engine="0"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    const before = await scrape();
    expect(before).toContain('# TYPE vllm:num_requests_running gauge');
    expect(before).toContain('# TYPE vllm:prompt_tokens_total counter');
    expect(before).toMatch(/^vllm:num_requests_running\{model_name="m1",engine="0"\} 0\.0$/m);
    expect(before).toMatch(/^vllm:num_requests_waiting\{model_name="m2",engine="0"\} 0\.0$/m);
    await client.chat.completions.create({ model: 'm2', messages });
    const after = await scrape();
    expect(sample(after, 'vllm:prompt_tokens_total', 'm2') - sample(before, 'vllm:prompt_tokens_total', 'm2')).toBe(10);
    expect(sample(after, 'vllm:generation_tokens_total', 'm2') - sample(before, 'vllm:generation_tokens_total', 'm2')).toBe(5);
    expect(sim.received).toHaveLength(2);
  });

  it('keeps only the last 100 received requests', async () => {
    for (let i = 0; i < 105; i++) await postJson(`${sim.url}/v1/completions`, { model: 'm1', prompt: `p${i}`, max_tokens: 1 });
    expect(sim.received).toHaveLength(100);
    expect((sim.received[0]!.body as { prompt: string }).prompt).toBe('p5');
  });

  it('supports vLLM sleep mode: /sleep, /is_sleeping, /wake_up', async () => {
    expect((await fetch(`${sim.url}/sleep?level=1`, { method: 'POST' })).status).toBe(200);
    expect(await (await fetch(`${sim.url}/is_sleeping`)).json()).toEqual({ is_sleeping: true });
    const asleep = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages });
    expect(asleep.status).toBe(503);
    expect(((await asleep.json()) as { error: { type: string } }).error.type).toBe('ServiceUnavailableError');
    expect((await fetch(`${sim.url}/wake_up`, { method: 'POST' })).status).toBe(200);
    expect(sim.sleeping).toBe(false);
    expect((await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages })).status).toBe(200);
  });

  it('speaks the older flat error shape when asked', async () => {
    const flat = await startSim({ models: ['m1'], errorShape: 'flat' });
    try {
      const res = await postJson(`${flat.url}/v1/chat/completions`, { model: 'zz', messages });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({
        object: 'error', message: 'The model `zz` does not exist.', type: 'NotFoundError', param: null, code: 404,
      });
      const c = new OpenAI({ baseURL: `${flat.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const err = await c.chat.completions.create({ model: 'zz', messages }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    } finally {
      await flat.close();
    }
  });
});
