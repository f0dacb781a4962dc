import { checkMessagesRequest } from './anthropic-adapter';
import { messagesToChat, MessagesStreamContinuation, pythonJsonDumps } from './anthropic-continuation';
import { AnthropicSseRelay } from './anthropic-sse-relay';
import type { StreamRelay } from './protocol-adapter';
import STREAMS from './continuation-streams.fixtures.json';

// Recorded from vllm-sim (vLLM's framing): an uninterrupted /v1/messages stream of 6 tokens; the same request on an
// engine that died after 3 (one delta edited to carry escaped quotes); the continuation asked of another engine's
// /v1/chat/completions (the request as vLLM converts it, the delivered text continued, max_tokens 3); and a tool
// call under way when its engine died.
const { messagesWhole: WHOLE, messagesFirst: FIRST, messagesSecond: SECOND, messagesToolUse: TOOL_USE } = STREAMS;
const HALF = 'event: content_block_delta\ndata: {"type":"content_block_del'; // cut when the engine went

type Ev = { type: string; index?: number; delta?: { type?: string; text?: string; stop_reason?: string }; content_block?: { type: string }; message?: { id: string }; usage?: Record<string, number>; error?: { type: string; message: string } };

const BODY = { model: 'm', max_tokens: 6, system: 'Be brief.', messages: [{ role: 'user', content: [{ type: 'text', text: 'tell me a story' }] }], stream: true };

function feed(relay: StreamRelay, text: string, size: number, complete = true): string {
  const parts: Buffer[] = [];
  const write = (b: Buffer) => parts.push(Buffer.from(b));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) relay.push(bytes.subarray(i, Math.min(bytes.length, i + size)), write);
  if (complete) relay.end(write);
  else relay.dropRest();
  return Buffer.concat(parts).toString();
}

function events(text: string): Ev[] {
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => {
      const [name, data] = e.split('\ndata: ');
      const ev = JSON.parse(data) as Ev;
      expect(name).toBe(`event: ${ev.type}`);
      return ev;
    });
}

const textOf = (evs: Ev[]) => evs.filter((e) => e.delta?.type === 'text_delta').map((e) => e.delta!.text).join('');

describe('Messages stream continuation: a chat continuation spliced into the client stream as Messages events (recorded byte streams)', () => {
  const cont = new MessagesStreamContinuation();
  const whole = events(WHOLE);
  const wholeText = textOf(whole).replace(' ipsum', ' ipsum "q"');

  it.each([1, 2, 3, 5, 7, 13, 64, 333, 100_000])('reads of %i bytes: one message_start, one block start, one message_delta with the summed usage, one message_stop', (size) => {
    const r = checkMessagesRequest('messages', BODY, 200);
    const t = cont.transcript(r)!;
    const first = new AnthropicSseRelay(t);
    const out1 = feed(first, FIRST + HALF, size, false);
    expect(first.sawDone).toBe(false);
    expect(t).toMatchObject({ text: ' lorem ipsum "q" dolor', tokens: 3, honest: true, finished: false, blockIndex: 0, blockStopped: false });
    expect(t.message!.id).toBe(events(FIRST)[0].message!.id);

    // what the next engine is asked, on its chat endpoint: the request as vLLM converts it, the delivered text continued
    expect(cont.upstreamPath).toBe('/v1/chat/completions');
    expect(JSON.parse(cont.body(r, 'other/m', t)!)).toEqual({
      model: 'other/m',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'tell me a story' },
        { role: 'assistant', content: ' lorem ipsum "q" dolor' },
      ],
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
      continue_final_message: true,
      add_generation_prompt: false,
    });
    const second = cont.relay(r, t, { priorTokens: 3, prompt: null })!;
    const out2 = feed(second, SECOND, size);
    const all = events(out1 + out2);

    // the shape of one uninterrupted stream, the text whole, one block at index 0
    expect(all.map((e) => e.type)).toEqual(whole.map((e) => e.type));
    expect(new Set(all.filter((e) => e.index !== undefined).map((e) => e.index))).toEqual(new Set([0]));
    expect(textOf(all)).toBe(wholeText);
    // the usage the client reads: the original prompt once (the continuation's less the 3 tokens it was re-sent), all output
    const delta = all.find((e) => e.type === 'message_delta')!;
    expect(delta).toEqual(whole.find((e) => e.type === 'message_delta'));
    expect(delta.usage).toEqual({ input_tokens: 17, output_tokens: 6 });
    expect(second.usage).toEqual({ prompt: 20, completion: 3, cached: 0 });
    expect(second.sawDone).toBe(true);
    expect(second.contentEvents).toBe(3);
    expect(t).toMatchObject({ text: wholeText, tokens: 6, finished: true, blockStopped: true, messageDelta: true });
  });

  it('an engine lost before the first token: the continuation opens the text block', () => {
    const r = checkMessagesRequest('messages', BODY, 200);
    const t = cont.transcript(r)!;
    const out1 = feed(new AnthropicSseRelay(t), FIRST.slice(0, FIRST.indexOf('event: content_block_start')), 10, false);
    const body = JSON.parse(cont.body(r, 'm', t)!) as Record<string, unknown>;
    // nothing to continue: a plain chat request
    expect(body.continue_final_message).toBeUndefined();
    expect((body.messages as unknown[]).length).toBe(2);
    expect(body.max_tokens).toBe(6);
    const chunk = (delta: string, finish: string | null = null) => `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]}\n\n`;
    const stream = chunk('{"role":"assistant","content":""}') + chunk('{"content":" a"}') + chunk('{"content":" b"}', 'stop') + 'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":17,"total_tokens":19,"completion_tokens":2}}\n\ndata: [DONE]\n\n';
    const all = events(out1 + feed(cont.relay(r, t, { priorTokens: 0, prompt: null })!, stream, 10));
    expect(all.map((e) => e.type)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(all[1]).toEqual({ type: 'content_block_start', content_block: { type: 'text', text: '' }, index: 0 });
    expect(all[5]).toEqual({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { input_tokens: 17, output_tokens: 2 } });
  });

  it('nothing left to generate (max_tokens delivered, or the block closed): the gateway writes the end itself', () => {
    const r = checkMessagesRequest('messages', { ...BODY, max_tokens: 3 }, 200);
    const t = cont.transcript(r)!;
    feed(new AnthropicSseRelay(t), FIRST, 1000, false);
    expect(cont.body(r, 'm', t)).toBeNull();
    expect(events(cont.closing(r, t, { prompt: 17, completion: 3 })!.toString())).toEqual([
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { input_tokens: 17, output_tokens: 3 } },
      { type: 'message_stop' },
    ]);
    const r2 = checkMessagesRequest('messages', BODY, 200);
    const t2 = cont.transcript(r2)!;
    feed(new AnthropicSseRelay(t2), WHOLE.slice(0, WHOLE.indexOf('event: message_stop')), 1000, false);
    expect(t2).toMatchObject({ finished: true, messageDelta: true });
    expect(events(cont.closing(r2, t2, { prompt: 17, completion: 6 })!.toString())).toEqual([{ type: 'message_stop' }]);
  });

  it('an engine 5xx error event is held back while the stream may be continued; a tool call or thinking is never continued', () => {
    const r = checkMessagesRequest('messages', BODY, 200);
    const t = cont.transcript(r)!;
    const relay = new AnthropicSseRelay(t);
    const error = 'event: error\ndata: {"type":"error","error":{"type":"internal_error","message":"CUDA out of memory"}}\n\n';
    const out = feed(relay, FIRST + error, 9);
    expect(out).toBe(FIRST);
    expect(relay.held).not.toBeNull();
    const parts: Buffer[] = [];
    relay.releaseHeld((b) => parts.push(b));
    expect(JSON.parse(Buffer.concat(parts).toString().split('\ndata: ')[1])).toEqual({ type: 'error', error: { type: 'api_error', message: 'CUDA out of memory' } });
    const plain = new AnthropicSseRelay(null);
    expect(feed(plain, FIRST + error, 9)).toContain('CUDA out of memory');

    const tool = cont.transcript(r)!;
    const toolRelay = new AnthropicSseRelay(tool);
    feed(toolRelay, TOOL_USE + error, 1000);
    expect(tool.honest).toBe(false);
    expect(toolRelay.held).toBeNull(); // passed on: the stream ends as it did
    const thinking = cont.transcript(r)!;
    feed(new AnthropicSseRelay(thinking), FIRST.slice(0, FIRST.indexOf('event: content_block_start')) + 'event: content_block_start\ndata: {"type":"content_block_start","content_block":{"type":"thinking","thinking":""},"index":0}\n\n', 1000, false);
    expect(thinking.honest).toBe(false);
  });

  it("a continuation's chat error frame becomes Anthropic's error event, held while yet another engine may continue", () => {
    const r = checkMessagesRequest('messages', BODY, 200);
    const t = cont.transcript(r)!;
    feed(new AnthropicSseRelay(t), FIRST, 1000, false);
    const second = cont.relay(r, t, { priorTokens: 3, prompt: null })!;
    const frame = 'data: {"error":{"message":"engine exploded","type":"InternalServerError","param":null,"code":500}}\n\ndata: [DONE]\n\n';
    const out = feed(second, SECOND.slice(0, SECOND.indexOf('data: ', 10)) + SECOND.split('\n\n')[1] + '\n\n' + frame, 7);
    expect(events(out).map((e) => e.type)).toEqual(['content_block_delta']);
    expect(second.held).not.toBeNull();
    expect(second.errorFrameStatus).toBe(500);
    expect(t.text).toBe(' lorem ipsum "q" dolor sit');
  });

  it("converts a request as vLLM's Messages endpoint does (system, tools, tool_use inputs as Python's json.dumps, tool results)", () => {
    expect(pythonJsonDumps({ q: 'caf\u00e9', n: [1, 2.5, true, null], o: {} })).toBe('{"q": "caf\\u00e9", "n": [1, 2.5, true, null], "o": {}}');
    const chat = messagesToChat({
      model: 'm',
      system: [
        { type: 'text', text: 'x-anthropic-billing-header: cc=1;' },
        { type: 'text', text: 'You help.' },
      ],
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'look it up', signature: 's' }, { type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'tu_1', name: 'weather', input: { city: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu_1', content: [{ type: 'text', text: 'sunny' }] }] },
        { role: 'user', content: [{ type: 'text', text: 'and' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAA' } }] },
      ],
      tools: [{ name: 'weather', description: 'w', input_schema: { properties: { city: { type: 'string' } } } }],
      tool_choice: { type: 'any' },
      stop_sequences: ['END'],
      temperature: 0.2,
      max_tokens: 5,
    });
    expect(chat).toEqual({
      model: 'm',
      messages: [
        { role: 'system', content: 'You help.' },
        { role: 'user', content: 'weather?' },
        { role: 'assistant', reasoning: 'look it up', content: 'Checking.', tool_calls: [{ id: 'tu_1', type: 'function', function: { name: 'weather', arguments: '{"city": "Paris"}' } }] },
        { role: 'tool', tool_call_id: 'tu_1', content: 'sunny' },
        { role: 'user', content: [{ type: 'text', text: 'and' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAA' } }] },
      ],
      stop: ['END'],
      temperature: 0.2,
      tool_choice: 'required',
      tools: [{ type: 'function', function: { name: 'weather', description: 'w', parameters: { properties: { city: { type: 'string' } }, type: 'object' } } }],
    });
  });
});
