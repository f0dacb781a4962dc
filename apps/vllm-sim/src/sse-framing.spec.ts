import { postJson, sseData, sseJson } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

/** Byte-level checks of the SSE a vLLM client (or our gateway) parses. */
describe('vllm-sim SSE framing', () => {
  let sim: SimServer;
  const messages = [{ role: 'user', content: 'one two' }];

  beforeAll(async () => {
    sim = await startSim({ models: ['m1'], outputTokens: 3 });
  });
  afterAll(() => sim.close());

  const chat = async (body: Record<string, unknown>, id = 'req1'): Promise<{ res: Response; text: string }> => {
    const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages, stream: true, ...body }, {
      headers: { 'x-request-id': id },
    });
    return { res, text: await res.text() };
  };

  it('writes the exact chunk bytes vLLM writes', async () => {
    const { res, text } = await chat({});
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const created = /"created":(\d+)/.exec(text)![1];
    const head = `{"id":"chatcmpl-req1","object":"chat.completion.chunk","created":${created},"model":"m1","choices":[{"index":0,`;
    expect(text).toBe(
      `data: ${head}"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n` +
        `data: ${head}"delta":{"content":" lorem"},"logprobs":null,"finish_reason":null}]}\n\n` +
        `data: ${head}"delta":{"content":" ipsum"},"logprobs":null,"finish_reason":null}]}\n\n` +
        `data: ${head}"delta":{"content":" dolor"},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}\n\n` +
        'data: [DONE]\n\n',
    );
  });

  it('leaves content chunks byte-identical whether or not include_usage is asked', async () => {
    const norm = (t: string): string[] => sseData(t.replace(/"created":\d+/g, '"created":0'));
    const plain = norm((await chat({})).text);
    const withUsage = norm((await chat({ stream_options: { include_usage: true } })).text);
    expect(withUsage.slice(0, plain.length - 1)).toEqual(plain.slice(0, -1));
    expect(withUsage).toHaveLength(plain.length + 1);
    expect(withUsage.at(-2)).toBe(
      '{"id":"chatcmpl-req1","object":"chat.completion.chunk","created":0,"model":"m1","choices":[],' +
        '"usage":{"prompt_tokens":9,"total_tokens":12,"completion_tokens":3}}',
    );
    expect(withUsage.at(-1)).toBe('[DONE]');
  });

  it('puts running usage in every chunk with continuous_usage_stats', async () => {
    const { text } = await chat({ n: 2, stream_options: { include_usage: true, continuous_usage_stats: true } });
    type C = { choices: { index: number }[]; usage: { completion_tokens: number; prompt_tokens: number; total_tokens: number } };
    const chunks = sseJson<C>(text);
    expect(chunks.every((c) => c.usage && c.usage.prompt_tokens === 9)).toBe(true);
    const perChoice = (i: number): number[] =>
      chunks.filter((c) => c.choices[0]?.index === i).map((c) => c.usage.completion_tokens);
    expect(perChoice(0)).toEqual([0, 1, 2, 3]);
    expect(perChoice(1)).toEqual([0, 1, 2, 3]);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 6, total_tokens: 15 } });
    // Role chunks for every choice come first, then tokens interleave per step.
    expect(chunks.slice(0, 4).map((c) => c.choices[0]!.index)).toEqual([0, 1, 0, 1]);
  });

  it('streams tool calls in vLLM delta shape', async () => {
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string' } } } } }];
    const chunks = sseJson<{ choices: { delta: Record<string, unknown>; finish_reason: string | null }[] }>((await chat({ tools })).text);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const first = chunks[1]!.choices[0]!.delta as { tool_calls: Record<string, unknown>[] };
    expect(first).toEqual({
      tool_calls: [{ id: expect.stringMatching(/^chatcmpl-tool-[0-9a-f]{32}$/), type: 'function', index: 0, function: { name: 'f', arguments: '' } }],
    });
    const rest = chunks.slice(2).map((c) => c.choices[0]!.delta as { tool_calls: { index: number; function: { arguments: string } }[] });
    expect(rest.every((d) => Object.keys(d).join() === 'tool_calls' && Object.keys(d.tool_calls[0]!).join() === 'index,function')).toBe(true);
    expect(rest.map((d) => d.tool_calls[0]!.function.arguments).join('')).toBe('{"a": "value"}');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });

  it('streams completions with "usage":null in every chunk and no role chunk', async () => {
    const res = await postJson(`${sim.url}/v1/completions`, { model: 'm1', prompt: 'x', stream: true, max_tokens: 2 });
    const data = sseData(await res.text());
    expect(data).toHaveLength(3);
    expect(data[0]).toMatch(
      /^\{"id":"cmpl-[0-9a-f]{32}","object":"text_completion","created":\d+,"model":"m1","choices":\[\{"index":0,"text":" lorem","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null\}\],"usage":null\}$/,
    );
    expect(JSON.parse(data[1]!)).toMatchObject({ choices: [{ text: ' ipsum', finish_reason: 'length' }], usage: null });
    expect(data[2]).toBe('[DONE]');
  });

  it('rejects stream_options without stream in vLLM validation shape', async () => {
    const res = await postJson(`${sim.url}/v1/completions`, { model: 'm1', prompt: 'x', stream_options: { include_usage: true } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['error']);
    expect(Object.keys(body.error)).toEqual(['message', 'type', 'param', 'code']);
    expect(body.error).toMatchObject({ type: 'Bad Request', code: 400, param: null });
  });

  it('answers unknown routes like FastAPI', async () => {
    const res = await fetch(`${sim.url}/v1/nothing`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: 'Not Found' });
  });
});
