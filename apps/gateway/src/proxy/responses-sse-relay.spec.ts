import { ResponsesSseRelay } from './responses-sse-relay';
import RECORDED from './responses-sse-relay.fixtures.json';

// Recorded from vllm-sim's /v1/responses (vLLM's framing: `event:` + `data:`, no [DONE]); the text stream was
// the second identical request, so its prompt was partly cached.
const { text: TEXT, functionCall: FUNCTION_CALL, errorMidway: ERROR_MIDWAY } = RECORDED;

function relay(bytes: string, size = Infinity): { out: string; relay: ResponsesSseRelay } {
  const r = new ResponsesSseRelay();
  const parts: Buffer[] = [];
  const write = (b: Buffer) => parts.push(Buffer.from(b));
  const buf = Buffer.from(bytes);
  for (let i = 0; i < buf.length; i += size) r.push(buf.subarray(i, Math.min(buf.length, i + size)), write);
  r.end(write);
  return { out: Buffer.concat(parts).toString(), relay: r };
}

function completedOf(stream: string): { response: Record<string, unknown> & { usage: Record<string, any> } } {
  const ev = stream.split('\n\n').find((e) => e.startsWith('event: response.completed\n'))!;
  return JSON.parse(ev.split('\ndata: ')[1]);
}

describe('ResponsesSseRelay on recorded engine streams', () => {
  it('passes a text stream through byte for byte, takes usage (cached included) from response.completed and ends cleanly there', () => {
    const { out, relay: r } = relay(TEXT);
    expect(out).toBe(TEXT);
    const { usage } = completedOf(TEXT).response;
    expect(usage.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    expect(r.usage).toEqual({ prompt: usage.input_tokens, completion: usage.output_tokens, cached: usage.input_tokens_details.cached_tokens });
    expect(r.sawDone).toBe(true);
    expect(r.errorFrames).toBe(0);
    expect(r.contentEvents).toBe(TEXT.split('event: response.output_text.delta\n').length - 1);
    expect(r.contentEvents).toBe(usage.output_tokens);
    // the final Response is what a stored Response keeps
    expect(r.final).toEqual(completedOf(TEXT).response);
  });

  it('gives the same result whatever the engine read sizes (events cut across reads)', () => {
    const whole = relay(TEXT).relay;
    for (const size of [1, 7, 64, 333]) {
      const { out, relay: r } = relay(TEXT, size);
      expect(out).toBe(TEXT);
      expect(r.usage).toEqual(whole.usage);
      expect(r.contentEvents).toBe(whole.contentEvents);
      expect(r.sawDone).toBe(true);
    }
  });

  it('counts function-call argument deltas as content and keeps the function_call item of response.completed', () => {
    const { out, relay: r } = relay(FUNCTION_CALL, 50);
    expect(out).toBe(FUNCTION_CALL);
    expect(r.contentEvents).toBe(FUNCTION_CALL.split('event: response.function_call_arguments.delta\n').length - 1);
    expect(r.contentEvents).toBeGreaterThan(0);
    expect((r.final!.output as Array<{ type: string }>)[0].type).toBe('function_call');
    expect(r.sawDone).toBe(true);
  });

  it("a stream that ends before a terminal event is not a clean end (the exchange cuts it), and is billed from the deltas", () => {
    const cut = TEXT.slice(0, TEXT.indexOf('event: response.output_text.done'));
    const { out, relay: r } = relay(cut);
    expect(out).toBe(cut);
    expect(r.sawDone).toBe(false);
    expect(r.usage).toBeNull();
    expect(r.contentEvents).toBeGreaterThan(0);
  });

  it("rewrites an engine's error event into OpenAI's shape (snake_case code, the sequence number kept) and ends there", () => {
    const { out, relay: r } = relay(ERROR_MIDWAY, 40);
    const events = out.split('\n\n').filter(Boolean);
    const last = events[events.length - 1];
    expect(last.startsWith('event: error\ndata: ')).toBe(true);
    const err = JSON.parse(last.split('\ndata: ')[1]);
    const original = JSON.parse(ERROR_MIDWAY.split('\n\n').filter(Boolean).pop()!.split('\ndata: ')[1]);
    expect(original.code).toBe('InternalServerError');
    expect(err).toEqual({ type: 'error', code: 'server_error', message: original.message, param: null, sequence_number: original.sequence_number });
    expect(r.errorFrames).toBe(1);
    expect(r.errorFrameStatus).toBe(500);
    expect(r.sawDone).toBe(true);
    // everything before the error went through untouched
    expect(out.slice(0, out.indexOf('event: error'))).toBe(ERROR_MIDWAY.slice(0, ERROR_MIDWAY.indexOf('event: error')));
  });

  it("rewrites vLLM's generic `data: {\"error\":{...}}` frame into an error event", () => {
    const frame = 'data: {"error":{"message":"CUDA out of memory","type":"InternalServerError","param":null,"code":503}}\n\n';
    const { out, relay: r } = relay(TEXT.slice(0, TEXT.indexOf('event: response.output_text.delta')) + frame);
    const err = JSON.parse(out.split('\n\n').filter(Boolean).pop()!.split('\ndata: ')[1]);
    expect(err).toMatchObject({ type: 'error', code: 'server_error', message: 'CUDA out of memory', sequence_number: 4 });
    expect(r.errorFrameStatus).toBe(503);
  });
});

describe('ResponsesSseRelay with a completer (what the gateway answers)', () => {
  function completing(bytes: string, size: number): { out: string; relay: ResponsesSseRelay; seen: string[] } {
    const seen: string[] = [];
    const r = new ResponsesSseRelay((response) => {
      seen.push(String(response.status));
      response.model = 'llama-test';
      response.previous_response_id = 'resp_prev';
    });
    const parts: Buffer[] = [];
    const write = (b: Buffer) => parts.push(Buffer.from(b));
    const buf = Buffer.from(bytes);
    for (let i = 0; i < buf.length; i += size) r.push(buf.subarray(i, Math.min(buf.length, i + size)), write);
    r.end(write);
    return { out: Buffer.concat(parts).toString(), relay: r, seen };
  }

  it('re-serialises only the events that carry the Response, completed; deltas pass byte for byte; usage and the final object follow', () => {
    const plain = relay(TEXT).relay;
    for (const size of [1, 13, 4096]) {
      const { out, relay: r, seen } = completing(TEXT, size);
      expect(seen).toEqual(['in_progress', 'in_progress', 'completed']);
      const inEvents = TEXT.split('\n\n');
      const outEvents = out.split('\n\n');
      expect(outEvents).toHaveLength(inEvents.length);
      for (let i = 0; i < inEvents.length; i++) {
        if (/^event: response\.(created|in_progress|completed)\n/.test(inEvents[i])) {
          const [head, data] = outEvents[i].split('\ndata: ');
          expect(head).toBe(inEvents[i].split('\n')[0]);
          const payload = JSON.parse(data) as { response: Record<string, unknown>; sequence_number: number };
          expect(payload.response).toMatchObject({ model: 'llama-test', previous_response_id: 'resp_prev' });
          expect(payload.sequence_number).toBe((JSON.parse(inEvents[i].split('\ndata: ')[1]) as { sequence_number: number }).sequence_number);
        } else expect(outEvents[i]).toBe(inEvents[i]);
      }
      expect(r.usage).toEqual(plain.usage);
      expect(r.contentEvents).toBe(plain.contentEvents);
      expect(r.sawDone).toBe(true);
      expect(r.final).toMatchObject({ status: 'completed', model: 'llama-test', previous_response_id: 'resp_prev' });
    }
  });
});
