import OpenAI from 'openai';
import { postJson } from '../../../test/support/sim-sse';
import { startSim, type SimServer } from './sim-server';

/** `event: <type>\ndata: <json>\n\n` events, checking the framing (and that no `[DONE]` follows). */
function sseEvents(text: string): { event: string; data: Record<string, unknown> }[] {
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((e) => {
      const m = /^event: (\S+)\ndata: (.*)$/.exec(e);
      if (!m) throw new Error(`not an event: ${e}`);
      const data = JSON.parse(m[2]!) as Record<string, unknown>;
      expect(data.type).toBe(m[1]);
      return { event: m[1]!, data };
    });
}

describe('vllm-sim /v1/responses', () => {
  let sim: SimServer;
  let client: OpenAI;

  beforeAll(async () => {
    sim = await startSim({ models: ['m1', 'm2'], outputTokens: 5 });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  it('answers a string input with a Response object and exact usage', async () => {
    const res = await client.responses.create({ model: 'm2', input: 'say something nice', store: false });
    expect(res.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(res.object).toBe('response');
    expect(res.status).toBe('completed');
    expect(res.model).toBe('m2');
    expect(res.output_text).toBe(' lorem ipsum dolor sit amet');
    expect(res.output).toHaveLength(1);
    expect(res.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed', id: expect.stringMatching(/^msg_/) });
    // The chat prompt of one user message: 3 + (4 + 3).
    expect(res.usage).toEqual({
      input_tokens: 10,
      input_tokens_details: { cached_tokens: 0, input_tokens_per_turn: [], cached_tokens_per_turn: [] },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 0, tool_output_tokens: 0, output_tokens_per_turn: [], tool_output_tokens_per_turn: [] },
      total_tokens: 15,
    });
    expect(sim.stats).toMatchObject({ requests: 1, completed: 1, promptTokens: 10, generationTokens: 5 });
    expect(sim.received.at(-1)).toMatchObject({ path: '/v1/responses', body: { store: false } });
  });

  it('takes instructions and an array of items, and stops at max_output_tokens as incomplete', async () => {
    const res = await client.responses.create({
      model: 'm1',
      instructions: 'be brief',
      input: [
        { role: 'user', content: 'one two' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'three', annotations: [] }] },
        { role: 'user', content: [{ type: 'input_text', text: 'four five six' }] },
      ],
      max_output_tokens: 2,
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(res.status).toBe('incomplete');
    expect(res.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(res.output_text).toBe(' lorem ipsum');
    expect(res.usage?.input_tokens).toBe(3 + (4 + 2) + (4 + 2) + (4 + 1) + (4 + 3));
  });

  it('streams the OpenAI event sequence with sequence numbers, and the SDK assembles it', async () => {
    const raw = await postJson(`${sim.url}/v1/responses`, { model: 'm1', input: 'hi', stream: true });
    expect(raw.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const events = sseEvents(await raw.text());
    expect(events.map((e) => e.event)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array(5).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[0]!.data.response).toMatchObject({ status: 'in_progress', output: [], usage: null });
    const deltas = events.filter((e) => e.event === 'response.output_text.delta').map((e) => e.data.delta);
    expect(deltas.join('')).toBe(' lorem ipsum dolor sit amet');
    const itemId = (events[2]!.data.item as { id: string }).id;
    // vLLM's streaming processor names items with a bare uuid; the full response has its own msg_ ids.
    expect(itemId).toMatch(/^[0-9a-f]{32}$/);
    expect(((events.at(-1)!.data.response as { output: { id: string }[] }).output[0]!.id)).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(events.slice(3, -1).every((e) => e.data.item_id === undefined || e.data.item_id === itemId)).toBe(true);
    const done = events.at(-1)!.data.response as { id: string; status: string; usage: { output_tokens: number } };
    expect(done).toMatchObject({ id: (events[0]!.data.response as { id: string }).id, status: 'completed', usage: { output_tokens: 5 } });

    const stream = client.responses.stream({ model: 'm1', input: 'hi' });
    let text = '';
    stream.on('response.output_text.delta', (e) => (text += e.delta));
    const final = await stream.finalResponse();
    expect(text).toBe(' lorem ipsum dolor sit amet');
    expect(final.output_text).toBe(text);
  });

  const tools = [
    {
      type: 'function' as const,
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      strict: false,
    },
  ];

  it('answers with a function_call item when tools are given, and in words after its output', async () => {
    const res = await client.responses.create({ model: 'm1', input: 'weather?', tools });
    const call = res.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed' });
    // vLLM's make_tool_call_id, as in chat.
    expect(call.call_id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
    expect(call.id).toMatch(/^fc_[0-9a-f]{32}$/);
    expect(JSON.parse(call.arguments)).toEqual({ city: 'value' });

    const next = await client.responses.create({
      model: 'm1',
      tools,
      input: [
        { role: 'user', content: 'weather?' },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny' },
      ],
    });
    expect(next.output_text).toBe(' lorem ipsum dolor sit amet');

    const none = await client.responses.create({ model: 'm1', input: 'weather?', tools, tool_choice: 'none' });
    expect(none.output[0]!.type).toBe('message');
  });

  it('streams a function call as argument deltas', async () => {
    const raw = await postJson(`${sim.url}/v1/responses`, { model: 'm1', input: 'weather?', tools, stream: true });
    const events = sseEvents(await raw.text());
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[2]!.data.item).toMatchObject({
      type: 'function_call', arguments: '', name: 'get_weather', status: 'in_progress', call_id: expect.stringMatching(/^call_[0-9a-f]{32}$/),
    });
    const args = events.filter((e) => e.event === 'response.function_call_arguments.delta').map((e) => e.data.delta).join('');
    expect(JSON.parse(args)).toEqual({ city: 'value' });
    expect(events.find((e) => e.event === 'response.function_call_arguments.done')!.data).toMatchObject({ arguments: args, name: 'get_weather' });
    expect(events.at(-1)!.event).toBe('response.completed');
  });

  it('honours text.format json_schema with JSON output, and echoes text', async () => {
    const text = { format: { type: 'json_schema' as const, name: 'p', schema: { type: 'object', properties: { name: { type: 'string' } } } } };
    const res = await client.responses.create({ model: 'm1', input: 'x', text });
    expect(JSON.parse(res.output_text)).toEqual({ name: 'value' });
    expect(res.text).toEqual(text);
  });

  it('answers an unknown previous_response_id with 404 and bad requests with 400, in vLLM shape', async () => {
    const err = await client.responses.create({ model: 'm1', input: 'x', previous_response_id: 'resp_nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).error).toEqual({
      message: "Response with id 'resp_nope' not found.",
      type: 'invalid_request_error',
      param: 'response_id',
      code: 404,
    });
    const missing = await postJson(`${sim.url}/v1/responses`, { model: 'm1' });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { message: string; type: string } }).error).toMatchObject({
      type: 'Bad Request',
      message: expect.stringMatching(/'loc': \('body', 'input'\), 'msg': 'Field required'/),
    });
    const unknown = await postJson(`${sim.url}/v1/responses`, { model: 'zz', input: 'x' });
    expect(unknown.status).toBe(404);
    const long = await postJson(`${sim.url}/v1/responses`, { model: 'm1', input: 'w '.repeat(9000) });
    expect(long.status).toBe(400);
    expect(await long.json()).toEqual({
      error: {
        message: 'The engine prompt length 9007 exceeds the max_model_len 8192. Please reduce prompt.',
        type: 'invalid_request_error',
        param: 'input',
        code: 400,
      },
    });
    const background = await postJson(`${sim.url}/v1/responses`, { model: 'm1', input: 'x', background: true });
    expect(background.status).toBe(400);
    expect(((await background.json()) as { error: { param: string } }).error.param).toBe('background');
  });

  it('ends a stream cut by error-after with an error event', async () => {
    sim.faults.add({ kind: 'error-after', afterTokens: 2, path: '/v1/responses', message: 'boom' });
    const events = sseEvents(await (await postJson(`${sim.url}/v1/responses`, { model: 'm1', input: 'hi', stream: true })).text());
    expect(events.at(-1)).toEqual({
      event: 'error',
      data: { code: 'InternalServerError', message: 'boom', param: null, sequence_number: 6, type: 'error' },
    });
    expect(events.filter((e) => e.event === 'response.output_text.delta')).toHaveLength(2);
    expect(sim.stats).toMatchObject({ failed: 1, generationTokens: 2 });
  });
});
