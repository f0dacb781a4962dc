import { OpenAISseRelay } from './openai-sse-relay';

// Recorded from vLLM-shaped engines (vllm-sim): a chat stream asked for usage, as the gateway always asks.
const CHAT =
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n' +
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}\n\n' +
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}\n\n' +
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}\n\n' +
  'data: [DONE]\n\n';
// vLLM's completions: "usage":null in every chunk once include_usage is on
const COMPLETIONS =
  'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"a","logprobs":null,"finish_reason":null}],"usage":null}\n\n' +
  'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"b","logprobs":null,"finish_reason":"length"}],"usage":null}\n\n' +
  'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2}}\n\n' +
  'data: [DONE]\n\n';
const ERROR_MIDWAY =
  'data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n' +
  'data: {"error":{"message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500}}\n\n' +
  'data: [DONE]\n\n';

/** Feeds `text` to a fresh relay in reads of `size` bytes; returns what it wrote and the relay. */
function relay(text: string, clientWantsUsage: boolean, size = Infinity): { out: string; relay: OpenAISseRelay } {
  const r = new OpenAISseRelay(clientWantsUsage);
  const parts: Buffer[] = [];
  const write = (b: Buffer) => parts.push(Buffer.from(b));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) r.push(bytes.subarray(i, Math.min(bytes.length, i + size)), write);
  r.end(write);
  return { out: Buffer.concat(parts).toString(), relay: r };
}

describe('OpenAISseRelay on recorded engine streams', () => {
  it('passes a chat stream through byte for byte when the client asked for usage, and reads the usage', () => {
    const { out, relay: r } = relay(CHAT, true);
    expect(out).toBe(CHAT);
    expect(r.usage).toEqual({ prompt: 7, completion: 2, cached: 4 });
    expect(r.sawDone).toBe(true);
    expect(r.contentEvents).toBe(3);
  });

  it('drops the usage chunk the client did not ask for, and still bills it', () => {
    const { out, relay: r } = relay(CHAT, false);
    const events = out.split('\n\n').filter(Boolean);
    expect(events).toHaveLength(4);
    expect(out).not.toContain('"usage"');
    expect(events[3]).toBe('data: [DONE]');
    expect(r.usage).toEqual({ prompt: 7, completion: 2, cached: 4 });
  });

  it('cuts "usage":null out of every chunk when the client did not ask for usage, keeps it when it did', () => {
    const plain = relay(COMPLETIONS, false).out;
    expect(plain).not.toContain('usage');
    for (const e of plain.split('\n\n').filter((x) => x.startsWith('data: {'))) expect(() => JSON.parse(e.slice(6))).not.toThrow();
    expect(relay(COMPLETIONS, true).out).toBe(COMPLETIONS);
  });

  it('rewrites an error frame into the envelope and keeps its status', () => {
    const { out, relay: r } = relay(ERROR_MIDWAY, true);
    const events = out.split('\n\n').filter(Boolean);
    expect(JSON.parse(events[1].slice(6))).toEqual({ error: { message: 'CUDA out of memory', type: 'server_error', param: null, code: null } });
    expect(r.errorFrameStatus).toBe(500);
    expect(r.errorFrames).toBe(1);
  });

  it('gives the same bytes and counts however the engine\'s reads are cut', () => {
    for (const [text, wants] of [
      [CHAT, false],
      [COMPLETIONS, false],
      [ERROR_MIDWAY, true],
    ] as const) {
      const whole = relay(text, wants);
      for (const size of [1, 2, 3, 7, 64, 200]) {
        const cut = relay(text, wants, size);
        expect(cut.out).toBe(whole.out);
        expect([cut.relay.usage, cut.relay.contentEvents, cut.relay.sawDone]).toEqual([whole.relay.usage, whole.relay.contentEvents, whole.relay.sawDone]);
      }
    }
  });

  it('passes an unterminated last event on as it is, and knows the stream did not end cleanly', () => {
    const { out, relay: r } = relay('data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choi', true);
    expect(out).toBe('data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choi');
    expect(r.sawDone).toBe(false);
  });
});
