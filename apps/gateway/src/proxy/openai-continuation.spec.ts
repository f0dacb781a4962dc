import type { CheckedRequest } from './openai-request';
import { OpenAIStreamContinuation, splicedUsage } from './openai-continuation';
import { OpenAISseRelay } from './openai-sse-relay';
import type { StreamRelay } from './protocol-adapter';
import { StreamTranscript, TextField } from './stream-transcript';

const chunk = (id: string, created: number, model: string, delta: string, finish: string | null = null) =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":"${model}","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]}\n\n`;

// Recorded shapes of vLLM's chat stream (vllm-sim): segment 0 lost after three tokens (the connection reset)...
const FIRST =
  chunk('chatcmpl-a', 100, 'org/m', '{"role":"assistant","content":""}') +
  chunk('chatcmpl-a', 100, 'org/m', '{"content":" lorem"}') +
  chunk('chatcmpl-a', 100, 'org/m', '{"content":" ipsum \\"q\\""}') +
  chunk('chatcmpl-a', 100, 'org/m', '{"content":" dolor"}') +
  'data: {"id":"chatcmpl-a","object":"chat.c'; // a half event when the engine went
// ...and the continuation on another engine (another id, created and model name), asked for usage
const SECOND =
  chunk('chatcmpl-b', 200, 'other/m', '{"role":"assistant","content":""}') +
  chunk('chatcmpl-b', 200, 'other/m', '{"content":" sit"}') +
  chunk('chatcmpl-b', 200, 'other/m', '{"content":" amet"}', 'stop') +
  'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":200,"model":"other/m","choices":[],"usage":{"prompt_tokens":14,"total_tokens":16,"completion_tokens":2,"prompt_tokens_details":null}}\n\n' +
  'data: [DONE]\n\n';

const COMPLETIONS_FIRST =
  'data: {"id":"cmpl-a","object":"text_completion","created":5,"model":"org/m","choices":[{"index":0,"text":" lorem","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}\n\n' +
  'data: {"id":"cmpl-a","object":"text_completion","created":5,"model":"org/m","choices":[{"index":0,"text":" ipsum","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}\n\n';
const COMPLETIONS_SECOND =
  'data: {"id":"cmpl-b","object":"text_completion","created":9,"model":"org/m","choices":[{"index":0,"text":" dolor","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":null}\n\n' +
  'data: {"id":"cmpl-b","object":"text_completion","created":9,"model":"org/m","choices":[],"usage":{"prompt_tokens":8,"total_tokens":9,"completion_tokens":1}}\n\n' +
  'data: [DONE]\n\n';

function req(body: Record<string, unknown>, clientWantsUsage: boolean): CheckedRequest {
  return { body: { stream: true, ...body }, model: 'm', stream: true, clientWantsUsage, choices: typeof body.n === 'number' ? body.n : 1, promptTokensEstimate: 10, completionTokensCap: 100 };
}

/** Feeds `text` to `relay` in reads of `size` bytes; returns what it wrote. */
function feed(relay: StreamRelay, text: string, size: number, complete = true): string {
  const parts: Buffer[] = [];
  const write = (b: Buffer) => parts.push(Buffer.from(b));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) relay.push(bytes.subarray(i, Math.min(bytes.length, i + size)), write);
  if (complete) relay.end(write);
  else relay.dropRest();
  return Buffer.concat(parts).toString();
}

function events(text: string): Array<Record<string, unknown> | '[DONE]'> {
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => (e === 'data: [DONE]' ? '[DONE]' : (JSON.parse(e.slice(6)) as Record<string, unknown>)));
}

describe('stream continuation: splicing a continuation into the client stream (recorded byte streams)', () => {
  const chat = new OpenAIStreamContinuation('chat');
  const completions = new OpenAIStreamContinuation('completions');

  it.each([1, 7, 1000])('chat, reads of %i bytes: one id/created/model, one role delta, one finish, one usage, the text whole', (size) => {
    const r = req({ model: 'm', messages: [{ role: 'user', content: 'tell me' }], max_tokens: 5, stream_options: { include_usage: true } }, true);
    const t = chat.transcript(r)!;
    const first = new OpenAISseRelay(true, t);
    const out1 = feed(first, FIRST, size, false);
    expect(first.sawDone).toBe(false);
    expect(t).toMatchObject({ text: ' lorem ipsum "q" dolor', tokens: 3, honest: true, finished: false });
    // what the next engine is asked: the delivered text as an open assistant message, the cap reduced
    expect(JSON.parse(chat.body(r, 'other/m', t)!)).toEqual({
      model: 'other/m',
      messages: [
        { role: 'user', content: 'tell me' },
        { role: 'assistant', content: ' lorem ipsum "q" dolor' },
      ],
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
      continue_final_message: true,
      add_generation_prompt: false,
    });
    const second = chat.relay(r, t, { priorTokens: 3, prompt: null })!;
    const out2 = feed(second, SECOND, size);
    const all = events(out1 + out2);
    expect(all.at(-1)).toBe('[DONE]');
    expect(all.filter((e) => e === '[DONE]')).toHaveLength(1);
    const chunks = all.filter((e) => e !== '[DONE]') as Array<{ id: string; created: number; model: string; choices: Array<{ delta: { role?: string; content?: string }; finish_reason: string | null }>; usage?: Record<string, unknown> }>;
    expect(new Set(chunks.map((c) => `${c.id} ${c.created} ${c.model}`))).toEqual(new Set(['chatcmpl-a 100 org/m']));
    expect(chunks.flatMap((c) => c.choices).filter((c) => c.delta.role !== undefined)).toHaveLength(1);
    expect(chunks.flatMap((c) => c.choices).map((c) => c.delta.content ?? '').join('')).toBe(' lorem ipsum "q" dolor sit amet');
    expect(chunks.flatMap((c) => c.choices).filter((c) => c.finish_reason !== null).map((c) => c.finish_reason)).toEqual(['stop']);
    // the original prompt once (the continuation's less the 3 delivered tokens it was re-sent), every completion token
    expect(chunks.filter((c) => c.usage !== undefined).map((c) => c.usage)).toEqual([{ prompt_tokens: 11, total_tokens: 16, completion_tokens: 5, prompt_tokens_details: null }]);
    expect(second.usage).toEqual({ prompt: 14, completion: 2, cached: 0 });
    expect(second.sawDone).toBe(true);
    expect(t.text).toBe(' lorem ipsum "q" dolor sit amet');
  });

  it('chat without usage asked: the continuation drops its usage chunk; a known prompt is reported as is', () => {
    const r = req({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, false);
    const t = chat.transcript(r)!;
    feed(new OpenAISseRelay(false, t), FIRST, 64, false);
    const body = JSON.parse(chat.body(r, 'm', t)!) as Record<string, unknown>;
    expect(body.max_tokens).toBeUndefined();
    expect(body.stream_options).toEqual({ include_usage: true }); // always asked of the engine: billed anyway
    const out = feed(chat.relay(r, t, { priorTokens: 3, prompt: null })!, SECOND, 64);
    expect(out).not.toContain('"usage"');
    expect(splicedUsage({ prompt: 14, completion: 2, cached: 0 }, { priorTokens: 3, prompt: 9 })).toEqual({ prompt: 9, completion: 5 });
  });

  it('completions: the prompt plus the delivered text, max_tokens reduced, the chunks rewritten', () => {
    const r = req({ model: 'm', prompt: 'Once upon', max_tokens: 3, stream_options: { include_usage: true } }, true);
    const t = completions.transcript(r)!;
    const out1 = feed(new OpenAISseRelay(true, t), COMPLETIONS_FIRST, 5, false);
    expect(JSON.parse(completions.body(r, 'm', t)!)).toMatchObject({ prompt: 'Once upon lorem ipsum', max_tokens: 1 });
    const out2 = feed(completions.relay(r, t, { priorTokens: 2, prompt: null })!, COMPLETIONS_SECOND, 5);
    const chunks = events(out1 + out2).filter((e) => e !== '[DONE]') as Array<{ id: string; created: number; choices: Array<{ text: string; finish_reason: string | null }>; usage: unknown }>;
    expect(new Set(chunks.map((c) => `${c.id} ${c.created}`))).toEqual(new Set(['cmpl-a 5']));
    expect(chunks.flatMap((c) => c.choices).map((c) => c.text).join('')).toBe(' lorem ipsum dolor');
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: 6, total_tokens: 9, completion_tokens: 3, prompt_tokens_details: null });
  });

  it('nothing left to generate (max_tokens delivered, or the finish delivered): the gateway writes the end itself', () => {
    const r = req({ model: 'm', prompt: 'Once upon', max_tokens: 2, stream_options: { include_usage: true } }, true);
    const t = completions.transcript(r)!;
    feed(new OpenAISseRelay(true, t), COMPLETIONS_FIRST, 1000, false);
    expect(completions.body(r, 'm', t)).toBeNull();
    const end = events(completions.closing(r, t, { prompt: 4, completion: 2 })!.toString());
    expect(end).toEqual([
      { id: 'cmpl-a', object: 'text_completion', created: 5, model: 'org/m', choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }] },
      { id: 'cmpl-a', object: 'text_completion', created: 5, model: 'org/m', choices: [], usage: { prompt_tokens: 4, total_tokens: 6, completion_tokens: 2, prompt_tokens_details: null } },
      '[DONE]',
    ]);
    const c = req({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, false);
    const ct = chat.transcript(c)!;
    feed(new OpenAISseRelay(false, ct), chunk('chatcmpl-z', 1, 'm', '{"role":"assistant","content":""}') + chunk('chatcmpl-z', 1, 'm', '{"content":" a"}', 'stop'), 1000, false);
    expect(ct.finished).toBe(true);
    expect(events(chat.closing(c, ct, { prompt: 3, completion: 1 })!.toString())).toEqual(['[DONE]']);
  });

  it('an engine 5xx error frame is held back while the stream may be continued, and passed on when it is not', () => {
    const r = req({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, false);
    const t = chat.transcript(r)!;
    const text = chunk('c', 1, 'm', '{"content":" x"}') + 'data: {"error":{"message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500}}\n\n' + 'data: [DONE]\n\n';
    const relay = new OpenAISseRelay(false, t);
    const out = feed(relay, text, 9);
    expect(out).toBe(chunk('c', 1, 'm', '{"content":" x"}'));
    expect(relay.held).not.toBeNull();
    expect(relay.sawDone).toBe(true);
    const parts: Buffer[] = [];
    relay.releaseHeld((b) => parts.push(b));
    expect(Buffer.concat(parts).toString()).toMatch(/^data: \{"error":\{"message":"CUDA out of memory".*\n\ndata: \[DONE\]\n\n$/);
    // a relay that keeps no transcript (a stream never continued) passes the frame on at once
    const plain = new OpenAISseRelay(false, null);
    expect(feed(plain, text, 9)).toContain('CUDA out of memory');
    expect(plain.held).toBeNull();
  });

  it('streams that cannot be continued honestly: a tool call under way, n > 1, logprobs, echo, token prompts', () => {
    const r = req({ model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [] }, false);
    const t = chat.transcript(r)!;
    feed(new OpenAISseRelay(false, t), chunk('c', 1, 'm', '{"role":"assistant","content":""}') + chunk('c', 1, 'm', '{"tool_calls":[{"index":0,"function":{"arguments":"{\\"q"}}]}'), 1000, false);
    expect(t.honest).toBe(false);
    const reasoning = chat.transcript(r)!;
    feed(new OpenAISseRelay(false, reasoning), chunk('c', 1, 'm', '{"reasoning_content":"hmm"}'), 1000, false);
    expect(reasoning.honest).toBe(false);
    expect(chat.transcript(req({ model: 'm', messages: [], n: 2 }, false))).toBeNull();
    expect(chat.transcript(req({ model: 'm', messages: [], logprobs: true }, false))).toBeNull();
    expect(chat.transcript(req({ model: 'm', messages: [], top_logprobs: 2 }, false))).toBeNull();
    expect(completions.transcript(req({ model: 'm', prompt: 'x', logprobs: 1 }, false))).toBeNull();
    expect(completions.transcript(req({ model: 'm', prompt: 'x', echo: true }, false))).toBeNull();
    expect(completions.transcript(req({ model: 'm', prompt: [1, 2, 3] }, false))).toBeNull();
    expect(new StreamTranscript(TextField.Delta).honest).toBe(true);
  });

  it("a client that continued a message itself: the delivered text extends that message", () => {
    const r = req({ model: 'm', messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'Sure:' }], continue_final_message: true, add_generation_prompt: false }, false);
    const t = chat.transcript(r)!;
    feed(new OpenAISseRelay(false, t), FIRST, 1000, false);
    expect((JSON.parse(chat.body(r, 'm', t)!) as { messages: unknown[] }).messages).toEqual([
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'Sure: lorem ipsum "q" dolor' },
    ]);
  });
});
