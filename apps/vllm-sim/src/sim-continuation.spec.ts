import OpenAI from 'openai';
import { postJson, sseJson, until } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

type ChatChunk = { choices: { delta: { content?: string }; finish_reason: string | null }[]; usage?: { completion_tokens: number; prompt_tokens: number } };

describe('vllm-sim continue_final_message (a stream resumed on another engine)', () => {
  let sim: SimServer;
  let client: OpenAI;
  const user = { role: 'user' as const, content: 'tell me a story' };

  beforeAll(async () => {
    sim = await startSim({ models: ['m1'], outputTokens: 8 });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  const whole = ' lorem ipsum dolor sit amet consectetur adipiscing elit';

  it('first part + continuation == one uninterrupted generation, for every cut point', async () => {
    const full = await client.chat.completions.create({ model: 'm1', messages: [user] });
    expect(full.choices[0]!.message.content).toBe(whole);
    const tokens = whole.match(/ \S+/g)!;
    for (let k = 1; k < tokens.length; k++) {
      const prefix = tokens.slice(0, k).join('');
      const rest = await client.chat.completions.create({
        model: 'm1',
        messages: [user, { role: 'assistant', content: prefix }],
        continue_final_message: true,
        add_generation_prompt: false,
      } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(prefix + rest.choices[0]!.message.content).toBe(whole);
      expect(rest.usage!.completion_tokens).toBe(tokens.length - k);
      expect(rest.choices[0]!.finish_reason).toBe('stop');
      // The prefix is part of the prompt, an open message: 3 + (4 + 4 words) + k (the original prompt plus the prefix).
      expect(rest.usage!.prompt_tokens).toBe(3 + 8 + k);
      expect(rest.usage!.prompt_tokens).toBe(full.usage!.prompt_tokens + k);
    }
  });

  it('streams the continuation; max_tokens counts only the new tokens', async () => {
    const res = await postJson(`${sim.url}/v1/chat/completions`, {
      model: 'm1',
      messages: [user, { role: 'assistant', content: ' lorem ipsum dolor' }],
      continue_final_message: true,
      add_generation_prompt: false,
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = sseJson<ChatChunk>(await res.text());
    const text = chunks.flatMap((c) => c.choices).map((c) => c.delta.content ?? '').join('');
    expect(text).toBe(' sit amet');
    expect(chunks.flatMap((c) => c.choices).at(-1)!.finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(2);
    expect(sim.stats.generationTokens).toBe(2);
  });

  it('a prefix that is the whole answer continues with nothing, and still finishes', async () => {
    const body = {
      model: 'm1',
      messages: [user, { role: 'assistant', content: whole }],
      continue_final_message: true,
      add_generation_prompt: false,
    };
    const unary = (await (await postJson(`${sim.url}/v1/chat/completions`, body)).json()) as {
      choices: { message: { content: string }; finish_reason: string }[];
      usage: { completion_tokens: number };
    };
    expect(unary.choices[0]).toMatchObject({ message: { content: '' }, finish_reason: 'stop' });
    expect(unary.usage.completion_tokens).toBe(0);
    const res = await postJson(`${sim.url}/v1/chat/completions`, { ...body, stream: true, stream_options: { include_usage: true } });
    const chunks = sseJson<ChatChunk & { choices: { delta: { role?: string } }[] }>(await res.text());
    expect(chunks.map((c) => c.choices[0]?.delta ?? null)).toEqual([{ role: 'assistant', content: '' }, { content: '' }, null]);
    expect(chunks[1]!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks[2]!.usage!.completion_tokens).toBe(0);
  });

  it('continues JSON content after the whole pieces already delivered', async () => {
    const response_format = {
      type: 'json_schema' as const,
      json_schema: { name: 'p', schema: { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } } } },
    };
    const full = (await client.chat.completions.create({ model: 'm1', messages: [user], response_format })).choices[0]!.message.content!;
    expect(JSON.parse(full)).toEqual({ name: 'value', age: 1 });
    for (const cut of [4, 8, 12]) {
      const rest = await client.chat.completions.create({
        model: 'm1',
        messages: [user, { role: 'assistant', content: full.slice(0, cut) }],
        response_format,
        continue_final_message: true,
        add_generation_prompt: false,
      } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(full.slice(0, cut) + rest.choices[0]!.message.content).toBe(full);
    }
  });

  it('continues whatever the tool setting would have done without the prefix', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
    // After a tool result the answer is words; continuing it keeps it words.
    const messages = [
      user,
      { role: 'assistant' as const, content: null, tool_calls: [{ id: 'c1', type: 'function' as const, function: { name: 'f', arguments: '{}' } }] },
      { role: 'tool' as const, tool_call_id: 'c1', content: 'done' },
    ];
    const first = await client.chat.completions.create({ model: 'm1', messages, tools });
    expect(first.choices[0]!.message.content).toBe(whole);
    const rest = await client.chat.completions.create({
      model: 'm1',
      messages: [...messages, { role: 'assistant', content: ' lorem ipsum' }],
      tools,
      continue_final_message: true,
      add_generation_prompt: false,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(' lorem ipsum' + rest.choices[0]!.message.content).toBe(whole);
  });

  it('rejects continue_final_message with add_generation_prompt true, and without a final assistant message', async () => {
    let res = await postJson(`${sim.url}/v1/chat/completions`, {
      model: 'm1',
      messages: [user, { role: 'assistant', content: ' lorem' }],
      continue_final_message: true,
      add_generation_prompt: true,
    });
    expect(res.status).toBe(400);
    let body = (await res.json()) as { error: { message: string; type: string; code: number } };
    expect(body.error.message).toContain('Cannot set both `continue_final_message` and `add_generation_prompt` to True.');
    expect(body.error).toMatchObject({ type: 'Bad Request', code: 400 });

    // The default add_generation_prompt (true) fails in the HF chat template.
    res = await postJson(`${sim.url}/v1/chat/completions`, {
      model: 'm1',
      messages: [user, { role: 'assistant', content: ' lorem' }],
      continue_final_message: true,
    });
    expect(res.status).toBe(400);
    body = (await res.json()) as { error: { message: string; type: string; code: number } };
    expect(body.error).toMatchObject({ type: 'BadRequestError', code: 400 });
    expect(body.error.message).toMatch(/^continue_final_message and add_generation_prompt are not compatible\./);

    res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages: [user], continue_final_message: true, add_generation_prompt: false });
    expect(res.status).toBe(400);
    body = (await res.json()) as { error: { message: string; type: string; code: number } };
    expect(body.error).toMatchObject({ type: 'BadRequestError', code: 400 });
    expect(body.error.message).toMatch(/continue_final_message.*final message/);
    expect(sim.stats.promptTokens).toBe(0);
  });

  it('continues a completions prompt that ends with the delivered text', async () => {
    const full = await client.completions.create({ model: 'm1', prompt: 'Once upon a time', max_tokens: 8 });
    expect(full.choices[0]!.text).toBe(whole);
    const rest = await client.completions.create({ model: 'm1', prompt: 'Once upon a time lorem ipsum dolor', max_tokens: 8 });
    expect(' lorem ipsum dolor' + rest.choices[0]!.text).toBe(whole);
    expect(rest.usage).toMatchObject({ prompt_tokens: 1 + 7, completion_tokens: 5 });
    const capped = await client.completions.create({ model: 'm1', prompt: 'Once upon a time lorem ipsum dolor', max_tokens: 1 });
    expect(capped.choices[0]).toMatchObject({ text: ' sit', finish_reason: 'length' });
  });

  it('/v1/responses continues a last assistant message item whose status is in_progress (vLLM #32100), for every cut point', async () => {
    const input = [{ type: 'message' as const, role: 'user' as const, content: 'tell me a story' }];
    const full = await client.responses.create({ model: 'm1', input });
    expect(full.output_text).toBe(whole);
    const tokens = whole.match(/ \S+/g)!;
    for (let k = 1; k < tokens.length; k++) {
      const prefix = tokens.slice(0, k).join('');
      const partial = { type: 'message', id: 'msg_x', role: 'assistant', status: 'in_progress', content: [{ type: 'output_text', text: prefix, annotations: [] }] };
      const rest = await client.responses.create({ model: 'm1', input: [...input, partial] as OpenAI.Responses.ResponseInput });
      expect(prefix + rest.output_text).toBe(whole);
      expect(rest.usage).toMatchObject({ input_tokens: full.usage!.input_tokens + k, output_tokens: tokens.length - k });
      expect(rest.status).toBe('completed');
    }
    // the same item completed (status 'completed') is a past turn: a new answer follows it
    const past = { type: 'message', id: 'msg_x', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: ' lorem ipsum', annotations: [] }] };
    const next = await client.responses.create({ model: 'm1', input: [...input, past] as OpenAI.Responses.ResponseInput });
    expect(next.output_text).toBe(whole);
    // streamed, max_output_tokens counting only the new tokens
    const res = await postJson(`${sim.url}/v1/responses`, {
      model: 'm1',
      input: [...input, { role: 'assistant', content: ' lorem ipsum dolor', status: 'in_progress' }],
      max_output_tokens: 2,
      stream: true,
    });
    const events = (await res.text()).split('\n\n').filter(Boolean).map((e) => JSON.parse(e.slice(e.indexOf('\ndata: ') + 7)) as { type: string; delta?: string; response?: OpenAI.Responses.Response });
    expect(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')).toBe(' sit amet');
    expect(events.at(-1)!.response!).toMatchObject({ status: 'incomplete', usage: { output_tokens: 2 } });
  });

  it('/v1/messages does not continue a final assistant message (vLLM opens a new turn after it): no prefill', async () => {
    const res = await postJson(`${sim.url}/v1/messages`, { model: 'm1', max_tokens: 20, messages: [user, { role: 'assistant', content: ' lorem ipsum' }] });
    const msg = (await res.json()) as { content: { text: string }[] };
    expect(msg.content[0]!.text).toBe(whole);
  });
});

describe('vllm-sim engine death mid-stream', () => {
  const messages = [{ role: 'user', content: 'go' }];

  it('a crash fault with afterTokens sends N tokens, then the engine is gone', async () => {
    const sim = await startSim({ models: ['m1'], outputTokens: 6 });
    try {
      sim.faults.add({ kind: 'crash', afterTokens: 3 });
      const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages, stream: true });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      let text = '';
      const err = await (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return undefined;
          text += new TextDecoder().decode(value);
        }
      })().catch((e: unknown) => e);
      expect(String(err)).toMatch(/terminated/);
      const contents = text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => (JSON.parse(e.slice(6)) as ChatChunk).choices[0]!.delta.content);
      expect(contents).toEqual(['', ' lorem', ' ipsum', ' dolor']);
      expect(sim.stats).toMatchObject({ crashes: 1, generationTokens: 3, completed: 0, aborted: 0, running: 0 });
      await expect(fetch(`${sim.url}/health`)).rejects.toThrow();
    } finally {
      await sim.close().catch(() => undefined);
    }
  });

  it('a non-streamed request dies after the time its first N tokens take', async () => {
    const sim = await startSim({ models: ['m1'], outputTokens: 6, ttftMs: 5, itlMs: 5 });
    try {
      sim.faults.add({ kind: 'crash', afterTokens: 2 });
      const err = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages }).catch((e: unknown) => e);
      expect(String(err)).toMatch(/fetch failed|terminated|socket/i);
      expect(sim.stats).toMatchObject({ crashes: 1, generationTokens: 2, completed: 0, aborted: 0 });
    } finally {
      await sim.close().catch(() => undefined);
    }
  });

  it('the crash applies to every inference path, e.g. /v1/messages', async () => {
    let crashed = 0;
    const sim = await startSim({ models: ['m1'], outputTokens: 6, onCrash: () => crashed++ });
    try {
      sim.faults.add({ kind: 'crash', afterTokens: 2, path: '/v1/messages' });
      const pending = postJson(`${sim.url}/v1/messages`, { model: 'm1', max_tokens: 10, messages, stream: true }).then((r) => r.text());
      await until(() => crashed === 1, 'the crash');
      sim.close().catch(() => undefined);
      await pending.catch(() => undefined);
      expect(sim.stats.generationTokens).toBe(2);
    } finally {
      await sim.close().catch(() => undefined);
    }
  });

  it('POST /sim/crash-at kills the engine at a given time, mid-stream', async () => {
    const sim = await startSim({ models: ['m1'], outputTokens: 1000, itlMs: 10 });
    try {
      expect((await postJson(`${sim.url}/sim/crash-at`, { in_ms: -1 })).status).toBe(400);
      const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages, stream: true });
      const answer = await postJson(`${sim.url}/sim/crash-at`, { in_ms: 60 });
      expect(await answer.json()).toEqual({ crash_in_ms: 60 });
      const err = await res.text().catch((e: unknown) => e);
      expect(String(err)).toMatch(/terminated/);
      expect(sim.stats.crashes).toBe(1);
      expect(sim.stats.generationTokens).toBeGreaterThan(0);
      expect(sim.stats.generationTokens).toBeLessThan(1000);
    } finally {
      await sim.close().catch(() => undefined);
    }
  });

  it('reset() cancels a pending crashIn', async () => {
    const sim = await startSim({ models: ['m1'] });
    try {
      sim.crashIn(30);
      sim.reset();
      await new Promise((r) => setTimeout(r, 60));
      expect((await fetch(`${sim.url}/health`)).status).toBe(200);
      expect(sim.stats.crashes).toBe(0);
    } finally {
      await sim.close();
    }
  });
});
