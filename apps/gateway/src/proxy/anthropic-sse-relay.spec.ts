import { AnthropicSseRelay } from './anthropic-sse-relay';

// Recorded from vllm-sim's /v1/messages (vLLM's message_stream_converter): a stream of three tokens.
const STREAM =
  'event: message_start\ndata: {"type":"message_start","message":{"id":"chatcmpl-r2","content":[],"model":"m1","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":0}}}\n\n' +
  'event: content_block_start\ndata: {"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}\n\n' +
  'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" lorem"},"index":0}\n\n' +
  'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" ipsum"},"index":0}\n\n' +
  'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" dolor"},"index":0}\n\n' +
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":10,"output_tokens":3}}\n\n' +
  'event: message_stop\ndata: {"type":"message_stop"}\n\n';
// with the sim's prefix caching (vLLM's usage since it reports cache reads: input_tokens are the uncached part);
// Anthropic's own message_delta may carry output only
const CACHED =
  'event: message_start\ndata: {"type":"message_start","message":{"id":"chatcmpl-c","content":[],"model":"m1","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":44,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":256}}}\n\n' +
  'event: content_block_start\ndata: {"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}\n\n' +
  'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" a"},"index":0}\n\n' +
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}\n\n' +
  'event: message_stop\ndata: {"type":"message_stop"}\n\n';
// vLLM's converter after the engine failed mid-generation: an error event of its own type, then the end
const ERROR_MIDWAY =
  STREAM.split('event: content_block_delta')[0] +
  'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":" lorem"},"index":0}\n\n' +
  'event: error\ndata: {"type":"error","error":{"type":"internal_error","message":"boom"}}\n\n';

/** Feeds `text` to a fresh relay in reads of `size` bytes; returns what it wrote and the relay. */
function relay(text: string, size = Infinity): { out: string; relay: AnthropicSseRelay } {
  const r = new AnthropicSseRelay();
  const parts: Buffer[] = [];
  const write = (b: Buffer) => parts.push(Buffer.from(b));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) r.push(bytes.subarray(i, Math.min(bytes.length, i + size)), write);
  r.end(write);
  return { out: Buffer.concat(parts).toString(), relay: r };
}

describe('AnthropicSseRelay on recorded engine streams', () => {
  it('passes a Messages stream through byte for byte and reads usage from message_start and message_delta', () => {
    const { out, relay: r } = relay(STREAM);
    expect(out).toBe(STREAM);
    expect(r.usage).toEqual({ prompt: 10, completion: 3, cached: 0 });
    expect(r.sawDone).toBe(true);
    expect(r.contentEvents).toBe(3);
    expect(r.errorFrames).toBe(0);
  });

  it('gives the same bytes and usage whatever the reads (events split anywhere, even inside a name)', () => {
    for (const size of [1, 7, 19, 64]) {
      const { out, relay: r } = relay(CACHED, size);
      expect(out).toBe(CACHED);
      expect(r.usage).toEqual({ prompt: 300, completion: 1, cached: 256 });
      expect(r.contentEvents).toBe(1);
      expect(r.sawDone).toBe(true);
    }
  });

  it("bills the whole prompt as Anthropic counts it: input + cache reads + cache writes, message_delta's counts winning", () => {
    const withWrites = CACHED.replace('"usage":{"output_tokens":1}', '"usage":{"input_tokens":40,"cache_creation_input_tokens":4,"cache_read_input_tokens":256,"output_tokens":1}');
    expect(relay(withWrites).relay.usage).toEqual({ prompt: 300, completion: 1, cached: 256 });
    // cache writes only in message_start: kept
    const startWrites = CACHED.replace('"input_tokens":44,"output_tokens":0,"cache_creation_input_tokens":0', '"input_tokens":14,"output_tokens":0,"cache_creation_input_tokens":30');
    expect(relay(startWrites).relay.usage).toEqual({ prompt: 300, completion: 1, cached: 256 });
  });

  it('reports no usage before message_delta: a stream cut there is billed from its content events', () => {
    const cut = STREAM.slice(0, STREAM.indexOf('event: content_block_stop'));
    const { out, relay: r } = relay(cut, 50);
    expect(out).toBe(cut);
    expect(r.usage).toBeNull();
    expect(r.sawDone).toBe(false);
    expect(r.contentEvents).toBe(3);
  });

  it("rewrites vLLM's error event into Anthropic's envelope and takes it as the stream's end", () => {
    const { out, relay: r } = relay(ERROR_MIDWAY, 33);
    expect(out.startsWith(ERROR_MIDWAY.slice(0, ERROR_MIDWAY.indexOf('event: error')))).toBe(true);
    expect(out.endsWith('event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n')).toBe(true);
    expect(r.errorFrames).toBe(1);
    expect(r.errorFrameStatus).toBe(500);
    expect(r.sawDone).toBe(true);
    expect(r.usage).toBeNull();
    expect(r.contentEvents).toBe(1);
  });

  it('keeps an Anthropic error type and counts the status it stands for', () => {
    const { out, relay: r } = relay('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n');
    expect(out).toBe('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n');
    expect(r.errorFrameStatus).toBe(529);
  });

  it('passes ping events and an unterminated last event through as they are', () => {
    const text = 'event: ping\ndata: {"type": "ping"}\n\nevent: message_stop\ndata: {"type":"mess';
    const { out, relay: r } = relay(text, 5);
    expect(out).toBe(text);
    expect(r.sawDone).toBe(false);
  });
});
