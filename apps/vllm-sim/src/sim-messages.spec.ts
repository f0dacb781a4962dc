import { postJson } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

/** Anthropic's SSE: `event: <type>\ndata: <json>\n\n`, the data's `type` equal to the event name. */
function events(text: string): { type: string; data: Record<string, unknown> }[] {
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((e) => {
      const m = /^event: (\S+)\ndata: (.*)$/.exec(e);
      if (!m) throw new Error(`not an event: ${e}`);
      const data = JSON.parse(m[2]!) as Record<string, unknown>;
      expect(data.type).toBe(m[1]);
      return { type: m[1]!, data };
    });
}

describe('vllm-sim /v1/messages (Anthropic Messages as vLLM serves them)', () => {
  let sim: SimServer;
  const url = (): string => `${sim.url}/v1/messages`;
  const messages = [{ role: 'user', content: 'say something nice' }];

  beforeAll(async () => {
    sim = await startSim({ models: ['m1'], outputTokens: 5 });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  it('answers a Message with text content, stop_reason and usage', async () => {
    const res = await postJson(url(), { model: 'm1', max_tokens: 100, system: 'be kind', messages }, { headers: { 'x-request-id': 'r1' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      // vLLM answers with the chat completion's id, not Anthropic's msg_...
      id: 'chatcmpl-r1',
      type: 'message',
      role: 'assistant',
      content: [{ type: 'text', text: ' lorem ipsum dolor sit amet' }],
      model: 'm1',
      stop_reason: 'end_turn',
      // 3 + (4 + 2) system + (4 + 3) user.
      usage: { input_tokens: 16, output_tokens: 5 },
    });
    expect(sim.stats).toMatchObject({ requests: 1, completed: 1, promptTokens: 16, generationTokens: 5 });
    expect(sim.received.at(-1)!.path).toBe('/v1/messages');
  });

  it('takes system as blocks and stops at max_tokens', async () => {
    const res = await postJson(url(), { model: 'm1', max_tokens: 2, system: [{ type: 'text', text: 'be kind' }], messages });
    const body = (await res.json()) as { stop_reason: string; content: unknown; usage: unknown };
    expect(body.stop_reason).toBe('max_tokens');
    expect(body.content).toEqual([{ type: 'text', text: ' lorem ipsum' }]);
    expect(body.usage).toEqual({ input_tokens: 16, output_tokens: 2 });
  });

  it('streams the event sequence vLLM converts the chat stream into', async () => {
    const res = await postJson(url(), { model: 'm1', max_tokens: 3, messages, stream: true }, { headers: { 'x-request-id': 'r2' } });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const text = await res.text();
    expect(text).toBe(
      'event: message_start\ndata: {"type":"message_start","message":{"id":"chatcmpl-r2","content":[],"model":"m1","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":0}}}\n\n' +
        'event: content_block_start\ndata: {"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}\n\n' +
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" lorem"},"index":0}\n\n' +
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" ipsum"},"index":0}\n\n' +
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" dolor"},"index":0}\n\n' +
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":10,"output_tokens":3}}\n\n' +
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    );
  });

  const tools = [{ name: 'get_weather', description: 'Weather.', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];

  it('answers tool_use blocks when tools are given, and words after the tool result', async () => {
    const res = (await (await postJson(url(), { model: 'm1', max_tokens: 100, messages, tools })).json()) as {
      content: { type: string; id: string; name: string; input: unknown }[];
      stop_reason: string;
    };
    expect(res.stop_reason).toBe('tool_use');
    expect(res.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^chatcmpl-tool-/), name: 'get_weather', input: { city: 'value' } }]);

    const call = res.content[0]!;
    const next = (await (
      await postJson(url(), {
        model: 'm1',
        max_tokens: 100,
        tools,
        messages: [
          ...messages,
          { role: 'assistant', content: [{ type: 'tool_use', id: call.id, name: call.name, input: call.input }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny' }] },
        ],
      })
    ).json()) as { content: unknown; stop_reason: string };
    expect(next).toMatchObject({ stop_reason: 'end_turn', content: [{ type: 'text', text: ' lorem ipsum dolor sit amet' }] });

    const none = (await (await postJson(url(), { model: 'm1', max_tokens: 100, messages, tools, tool_choice: { type: 'none' } })).json()) as {
      stop_reason: string;
    };
    expect(none.stop_reason).toBe('end_turn');
  });

  it('streams a tool call as content_block_start tool_use + input_json_delta', async () => {
    const evs = events(await (await postJson(url(), { model: 'm1', max_tokens: 100, messages, tools, stream: true })).text());
    expect(evs[1]!.data).toEqual({
      type: 'content_block_start',
      content_block: { type: 'tool_use', id: expect.stringMatching(/^chatcmpl-tool-/), name: 'get_weather', input: {} },
      index: 0,
    });
    const json = evs
      .filter((e) => e.type === 'content_block_delta')
      .map((e) => (e.data.delta as { type: string; partial_json: string }).partial_json)
      .join('');
    expect(JSON.parse(json)).toEqual({ city: 'value' });
    expect(evs.at(-2)!.data).toMatchObject({ delta: { stop_reason: 'tool_use' } });
  });

  it('counts tokens like the messages endpoint bills them', async () => {
    const res = await postJson(`${sim.url}/v1/messages/count_tokens`, { model: 'm1', system: 'be kind', messages, tools });
    expect(res.status).toBe(200);
    // 3 + 8 per tool + (4 + 2) + (4 + 3).
    expect(await res.json()).toEqual({ input_tokens: 24, context_management: { original_input_tokens: 24 } });
    expect(sim.stats).toMatchObject({ requests: 1, completed: 1, promptTokens: 0 });
  });

  it('errors: validation in the OpenAI envelope (vLLM global handler), handler errors in Anthropic envelope', async () => {
    const noMax = await postJson(url(), { model: 'm1', messages });
    expect(noMax.status).toBe(400);
    const noMaxBody = (await noMax.json()) as { error: { type: string; message: string; code: number } };
    expect(noMaxBody.error).toMatchObject({ type: 'Bad Request', code: 400 });
    expect(noMaxBody.error.message).toMatch(/'loc': \('body', 'max_tokens'\), 'msg': 'Field required'/);

    const zero = await postJson(url(), { model: 'm1', messages, max_tokens: 0 });
    expect(((await zero.json()) as { error: { message: string } }).error.message).toMatch(/max_tokens must be positive/);

    const unknown = await postJson(url(), { model: 'zz', max_tokens: 5, messages });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ type: 'error', error: { type: 'NotFoundError', message: 'The model `zz` does not exist.' } });

    const long = await postJson(url(), { model: 'm1', max_tokens: 9000, messages });
    expect(long.status).toBe(400);
    expect(((await long.json()) as { type: string; error: { type: string } })).toMatchObject({ type: 'error', error: { type: 'BadRequestError' } });

    sim.faults.add({ kind: 'error-before', status: 529, path: '/v1/messages', message: 'overloaded' });
    const faulted = await postJson(url(), { model: 'm1', max_tokens: 5, messages });
    expect(faulted.status).toBe(529);
    expect(((await faulted.json()) as { error: { message: string } }).error.message).toBe('overloaded');
  });

  it('a mid-stream error becomes an error event, as vLLM converts it', async () => {
    sim.faults.add({ kind: 'error-after', afterTokens: 1, path: '/v1/messages', message: 'boom' });
    const evs = events(await (await postJson(url(), { model: 'm1', max_tokens: 5, messages, stream: true })).text());
    expect(evs.map((e) => e.type)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'error']);
    expect(evs.at(-1)!.data).toEqual({ type: 'error', error: { type: 'internal_error', message: 'boom' } });
  });
});
