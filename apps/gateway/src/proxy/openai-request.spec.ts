import { ApiError } from '@spot/contract';
import { checkRequest, upstreamBody } from './openai-request';

function error(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an ApiError');
}

describe('checkRequest', () => {
  const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

  it('accepts a minimal chat request and reads its flags', () => {
    const r = checkRequest('chat', { ...chat, stream: true, stream_options: { include_usage: true }, n: 2, max_tokens: 10 }, 400);
    expect(r).toMatchObject({ model: 'm', stream: true, clientWantsUsage: true, choices: 2, completionTokensCap: 20, promptTokensEstimate: 100 });
  });

  it('rejects what OpenAI rejects, naming the parameter', () => {
    expect(error(() => checkRequest('chat', { model: 'm' }, 100))).toMatchObject({ status: 400, param: 'messages', code: 'missing_required_parameter' });
    expect(error(() => checkRequest('chat', { messages: [] }, 100))).toMatchObject({ status: 400, param: 'model' });
    expect(error(() => checkRequest('chat', { ...chat, messages: [] }, 100))).toMatchObject({ status: 400, param: 'messages' });
    expect(error(() => checkRequest('chat', { ...chat, stream_options: { include_usage: true } }, 100))).toMatchObject({
      status: 400,
      param: 'stream_options',
    });
    expect(error(() => checkRequest('chat', [chat], 100))).toMatchObject({ status: 400, type: 'invalid_request_error' });
    expect(error(() => checkRequest('completions', { model: 'm' }, 100))).toMatchObject({ param: 'prompt' });
    expect(error(() => checkRequest('embeddings', { model: 'm' }, 100))).toMatchObject({ param: 'input' });
    expect(error(() => checkRequest('chat', { ...chat, stream: 'yes' }, 100))).toMatchObject({ param: 'stream' });
  });
});

describe('upstreamBody', () => {
  it('maps the model and passes every other field through untouched', () => {
    const body = {
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
      tool_choice: 'auto',
      parallel_tool_calls: false,
      response_format: { type: 'json_object' },
      logprobs: true,
      top_logprobs: 2,
      n: 2,
      some_vendor_field: { x: 1 },
    };
    const sent = JSON.parse(upstreamBody(checkRequest('chat', body, 100), 'org/M'));
    expect(sent).toEqual({ ...body, model: 'org/M' });
  });

  it('always asks the engine for usage on streams, without per-chunk usage unless the client asked', () => {
    const plain = JSON.parse(upstreamBody(checkRequest('chat', { model: 'm', messages: [1], stream: true }, 100), 'm'));
    expect(plain.stream_options).toEqual({ include_usage: true });
    const withUsage = JSON.parse(
      upstreamBody(checkRequest('chat', { model: 'm', messages: [1], stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }, 100), 'm'),
    );
    expect(withUsage.stream_options).toEqual({ include_usage: true, continuous_usage_stats: true });
    const off = JSON.parse(
      upstreamBody(checkRequest('chat', { model: 'm', messages: [1], stream: true, stream_options: { include_usage: false, continuous_usage_stats: true } }, 100), 'm'),
    );
    expect(off.stream_options).toEqual({ include_usage: true });
  });
});
