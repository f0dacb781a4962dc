import { clientStatusForUpstream, normalizeUpstreamError } from './upstream-error';

describe('normalizeUpstreamError', () => {
  it('rewrites vLLM current shape (integer code, Python type) into the OpenAI envelope', () => {
    const body = JSON.stringify({ error: { message: 'max_tokens is too large', type: 'BadRequestError', param: null, code: 400 } });
    expect(normalizeUpstreamError(400, body)).toEqual({
      error: { message: 'max_tokens is too large', type: 'invalid_request_error', param: null, code: null },
    });
  });

  it('rewrites vLLM older flat shape', () => {
    const body = JSON.stringify({ object: 'error', message: 'The model `x` does not exist.', type: 'NotFoundError', param: null, code: 404 });
    expect(normalizeUpstreamError(404, body)).toEqual({
      error: { message: 'The model `x` does not exist.', type: 'invalid_request_error', param: null, code: 'model_not_found' },
    });
  });

  it('maps 5xx to server_error and keeps plain-text bodies as the message', () => {
    expect(normalizeUpstreamError(500, 'Internal Server Error')).toEqual({
      error: { message: 'Internal Server Error', type: 'server_error', param: null, code: null },
    });
    expect(normalizeUpstreamError(502, '').error.message).toBe('Upstream error (HTTP 502)');
  });

  it('keeps OpenAI-shaped errors as they are', () => {
    const body = JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } });
    expect(normalizeUpstreamError(429, body).error).toEqual({ message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' });
  });

  it('reads FastAPI detail bodies', () => {
    expect(normalizeUpstreamError(422, JSON.stringify({ detail: [{ loc: ['body'], msg: 'bad' }] })).error.message).toContain('bad');
  });

  it('keeps the engine status except engine auth failures, which are the gateway\'s 502', () => {
    expect(clientStatusForUpstream(500)).toBe(500);
    expect(clientStatusForUpstream(400)).toBe(400);
    expect(clientStatusForUpstream(503)).toBe(503);
    expect(clientStatusForUpstream(401)).toBe(502);
    expect(clientStatusForUpstream(403)).toBe(502);
  });
});
