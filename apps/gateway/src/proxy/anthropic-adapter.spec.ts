import { ApiError, anthropicErrorType, invalidApiKey, modelNotFound, serverOverloaded } from '@spot/contract';
import { anthropicCredential } from '../auth/credential';
import { ANTHROPIC_ADAPTERS, checkMessagesRequest, usageFromAnthropic } from './anthropic-adapter';

const messages = [{ role: 'user', content: 'hi' }];
const { messages: adapter, count_tokens: counting } = ANTHROPIC_ADAPTERS;

function rejection(fn: () => unknown): { status: number; body: unknown } {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return { status: err.status, body: JSON.parse(adapter.renderError(err)) };
    throw err;
  }
  throw new Error('no rejection');
}

describe('the Anthropic Messages adapter', () => {
  it("checks the request as Anthropic does, with its 400 invalid_request_error", () => {
    const cases: [unknown, string][] = [
      [[], 'The request body must be a JSON object.'],
      [{ max_tokens: 5, messages }, 'model: Field required'],
      [{ model: 7, max_tokens: 5, messages }, 'model: Input should be a valid string'],
      [{ model: 'm', messages }, 'max_tokens: Field required'],
      [{ model: 'm', max_tokens: 1.5, messages }, 'max_tokens: Input should be a valid integer'],
      [{ model: 'm', max_tokens: 0, messages }, 'max_tokens: Input should be greater than or equal to 1'],
      [{ model: 'm', max_tokens: 5 }, 'messages: Field required'],
      [{ model: 'm', max_tokens: 5, messages: 'hi' }, 'messages: Input should be a valid list'],
      [{ model: 'm', max_tokens: 5, messages: [] }, 'messages: at least one message is required'],
      [{ model: 'm', max_tokens: 5, messages, stream: 'yes' }, 'stream: Input should be a valid boolean'],
    ];
    for (const [body, message] of cases) {
      expect(rejection(() => adapter.check(body, 10))).toEqual({ status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message } } });
    }
  });

  it('reads model, stream and the token bounds; count_tokens needs no max_tokens and reserves nothing', () => {
    expect(checkMessagesRequest('messages', { model: 'm', max_tokens: 64, messages, stream: true }, 400)).toMatchObject({
      model: 'm',
      stream: true,
      choices: 0,
      promptTokensEstimate: 100,
      completionTokensCap: 64,
    });
    expect(counting.check({ model: 'm', messages, stream: true }, 400)).toMatchObject({ stream: false, promptTokensEstimate: 0, completionTokensCap: 0 });
    expect(counting.usageFromBody('{"input_tokens":24,"context_management":{"original_input_tokens":24}}')).toEqual({ prompt: 0, completion: 0, cached: 0 });
  });

  it('sends the engine the body with its model name, to its Messages paths', () => {
    const req = adapter.check({ model: 'm', max_tokens: 5, messages }, 10);
    expect(JSON.parse(adapter.upstreamBody(req, 'org/M-8B'))).toEqual({ model: 'org/M-8B', max_tokens: 5, messages });
    expect(adapter.upstreamPath).toBe('/v1/messages');
    expect(counting.upstreamPath).toBe('/v1/messages/count_tokens');
    expect(adapter.api).toBe('messages');
    expect(counting.api).toBe('messages');
  });

  it("reads a Message's usage from the tail of its body: the prompt is input + cache reads + cache writes", () => {
    const body = '{"id":"chatcmpl-1","type":"message","content":[{"type":"text","text":"usage"}],"usage":{"input_tokens":44,"output_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":256}}';
    expect(adapter.usageFromBody(body)).toEqual({ prompt: 300, completion: 4, cached: 256 });
    // cache writes are input at the ordinary price; an engine without cache fields reports its whole prompt
    expect(usageFromAnthropic({ input_tokens: 10, cache_creation_input_tokens: 290, output_tokens: 1 })).toEqual({ prompt: 300, completion: 1, cached: 0 });
    expect(usageFromAnthropic({ input_tokens: 300, output_tokens: 1 })).toEqual({ prompt: 300, completion: 1, cached: 0 });
    expect(adapter.usageFromBody('{"usage":{"prompt_tokens":3}}')).toBeNull();
  });

  it("maps our errors to Anthropic's types by status, keeping the message", () => {
    const table: [number, string][] = [
      [400, 'invalid_request_error'],
      [401, 'authentication_error'],
      [402, 'billing_error'],
      [403, 'permission_error'],
      [404, 'not_found_error'],
      [408, 'invalid_request_error'],
      [413, 'request_too_large'],
      [415, 'invalid_request_error'],
      [429, 'rate_limit_error'],
      [500, 'api_error'],
      [502, 'api_error'],
      [503, 'overloaded_error'],
      [504, 'timeout_error'],
      [529, 'overloaded_error'],
    ];
    for (const [status, type] of table) expect([status, anthropicErrorType(status)]).toEqual([status, type]);
    expect(JSON.parse(adapter.renderError(invalidApiKey('Incorrect API key provided: sk-x.')))).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: 'Incorrect API key provided: sk-x.' },
    });
    expect(JSON.parse(adapter.renderError(modelNotFound('nope'))).error.type).toBe('not_found_error');
    expect(JSON.parse(adapter.renderError(serverOverloaded())).error.type).toBe('overloaded_error');
    expect(JSON.parse(adapter.errorBody(502, 'unreachable', 'upstream_unavailable'))).toEqual({ type: 'error', error: { type: 'api_error', message: 'unreachable' } });
  });

  it("rewrites the engine's errors (Anthropic's envelope with vLLM's types, OpenAI's, plain text) into Anthropic's", () => {
    expect(JSON.parse(adapter.engineError(404, '{"type":"error","error":{"type":"NotFoundError","message":"The model `x` does not exist."}}'))).toEqual({
      type: 'error',
      error: { type: 'not_found_error', message: 'The model `x` does not exist.' },
    });
    expect(JSON.parse(adapter.engineError(400, '{"error":{"message":"max_tokens too large","type":"BadRequestError","param":null,"code":400}}'))).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens too large' },
    });
    expect(JSON.parse(adapter.engineError(529, '{"type":"error","error":{"type":"overloaded_error","message":"overloaded"}}')).error.type).toBe('overloaded_error');
    expect(JSON.parse(adapter.engineError(500, 'Internal Server Error'))).toEqual({ type: 'error', error: { type: 'api_error', message: 'Internal Server Error' } });
    expect(adapter.midstreamErrorFrame('cut').toString()).toBe('event: error\ndata: {"type":"error","error":{"type":"api_error","message":"cut"}}\n\n');
  });

  it('takes the key from x-api-key, else from Authorization: Bearer, else answers 401', () => {
    expect(anthropicCredential({ 'x-api-key': ' sk-a ' })).toBe('sk-a');
    expect(anthropicCredential({ 'x-api-key': 'sk-a', authorization: 'Bearer sk-b' })).toBe('sk-a');
    expect(anthropicCredential({ authorization: 'Bearer sk-b' })).toBe('sk-b');
    expect(rejection(() => anthropicCredential({}))).toMatchObject({ status: 401, body: { error: { type: 'authentication_error' } } });
    expect(rejection(() => anthropicCredential({ authorization: 'Basic x' }))).toMatchObject({ status: 401 });
    expect(adapter.credential({ 'x-api-key': 'sk-c' })).toBe('sk-c');
  });
});
