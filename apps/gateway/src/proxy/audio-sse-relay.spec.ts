import { AudioSseRelay } from './audio-sse-relay';

// Recorded from vllm-sim (vLLM's speech_to_text.py framing): a transcription streamed with stream_include_usage, as the
// gateway always asks, and one that failed midway (vLLM's error frame, then [DONE]).
const TRANSCRIPTION =
  'data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"whisper","choices":[{"delta":{"content":" lorem"}}]}\n\n' +
  'data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"whisper","choices":[{"delta":{"content":" ipsum \\"x\\""}}]}\n\n' +
  'data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"whisper","choices":[{"delta":{"content":" dolor"},"finish_reason":"stop","stop_reason":null}]}\n\n' +
  'data: {"id":"transcribe-1","object":"transcription.chunk","created":1,"model":"whisper","choices":[],"usage":{"prompt_tokens":6,"total_tokens":9,"completion_tokens":3}}\n\n' +
  'data: [DONE]\n\n';
const FAILED =
  'data: {"id":"transcribe-2","object":"transcription.chunk","created":1,"model":"whisper","choices":[{"delta":{"content":" lorem"}}]}\n\n' +
  'data: {"error":{"message":"Internal Server Error","type":"InternalServerError","param":null,"code":500}}\n\n' +
  'data: [DONE]\n\n';

const OPENAI_EVENTS =
  'data: {"type":"transcript.text.delta","delta":" lorem"}\n\n' +
  'data: {"type":"transcript.text.delta","delta":" ipsum \\"x\\""}\n\n' +
  'data: {"type":"transcript.text.delta","delta":" dolor"}\n\n' +
  'data: {"type":"transcript.text.done","text":" lorem ipsum \\"x\\" dolor","usage":{"type":"tokens","input_tokens":6,"output_tokens":3,"total_tokens":9}}\n\n';

function relay(text: string, size = Infinity): { out: string; relay: AudioSseRelay } {
  const r = new AudioSseRelay();
  const parts: Buffer[] = [];
  const write = (b: Buffer) => parts.push(Buffer.from(b));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) r.push(bytes.subarray(i, Math.min(bytes.length, i + size)), write);
  r.end(write);
  return { out: Buffer.concat(parts).toString(), relay: r };
}

describe('AudioSseRelay on recorded vLLM transcription streams', () => {
  it("turns vLLM's chunks into OpenAI's transcript events, the done event carrying the whole text and the usage", () => {
    const { out, relay: r } = relay(TRANSCRIPTION);
    expect(out).toBe(OPENAI_EVENTS);
    expect(r.usage).toEqual({ prompt: 6, completion: 3, cached: 0 });
    expect(r.sawDone).toBe(true);
    expect(r.contentEvents).toBe(3);
    expect(r.errorFrames).toBe(0);
    expect(r.transcript).toBe(' lorem ipsum "x" dolor');
  });

  it('gives the same bytes whatever the engine reads were cut into (events split across reads)', () => {
    for (const size of [1, 7, 64, 100, 333]) expect(relay(TRANSCRIPTION, size).out).toBe(OPENAI_EVENTS);
  });

  it("rewrites an error frame into OpenAI's envelope and sends no done event after it", () => {
    const { out, relay: r } = relay(FAILED, 13);
    const frames = out.split('\n\n').filter((f) => f !== '');
    expect(frames).toHaveLength(2);
    expect(JSON.parse(frames[0].slice(6))).toEqual({ type: 'transcript.text.delta', delta: ' lorem' });
    expect(JSON.parse(frames[1].slice(6))).toEqual({ error: expect.objectContaining({ message: 'Internal Server Error', type: 'server_error' }) });
    expect(r).toMatchObject({ sawDone: true, errorFrames: 1, errorFrameStatus: 500, contentEvents: 1 });
  });

  it('a stream cut before [DONE] never ends in a done event (the exchange ends it with an error frame)', () => {
    const cut = TRANSCRIPTION.slice(0, TRANSCRIPTION.indexOf('data: [DONE]') - 5);
    const { out, relay: r } = relay(cut, 50);
    expect(out).not.toContain('transcript.text.done');
    expect(out.match(/transcript\.text\.delta/g)).toHaveLength(3);
    expect(r.sawDone).toBe(false);
    expect(r.usage).toBeNull();
  });
});
