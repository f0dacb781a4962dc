import { postJson, sseJson } from '../../../test/support/sim-sse';
import { BLOCK_SIZE, chatPromptTokenList, PrefixCache, textPromptTokenList } from './prefix-cache';
import { startSim, type SimServer } from './sim-server';
import { chatPromptTokens, textPromptTokens } from './sim-tokens';

const words = (n: number, from = 0): string => Array.from({ length: n }, (_, i) => `w${from + i}`).join(' ');

describe('PrefixCache', () => {
  it('reports whole leading blocks seen before, never the last token', () => {
    const c = new PrefixCache();
    const a = Array.from({ length: 40 }, (_, i) => `t${i}`);
    expect(c.admit('m', a)).toBe(0);
    expect(c.admit('m', a)).toBe(32);
    // Same first block, different second: only the first block is shared.
    const b = [...a.slice(0, 16), 'x', ...a.slice(17)];
    expect(c.admit('m', b)).toBe(16);
    // Another model has its own cache.
    expect(c.admit('other', a)).toBe(0);
    // A prompt of exactly 32 tokens reuses at most 16 (its last token is always computed).
    const exact = a.slice(0, 32);
    expect(c.admit('m', exact)).toBe(16);
    expect(c.admit('m', a.slice(0, 15))).toBe(0);
    c.clear();
    expect(c.admit('m', a)).toBe(0);
    expect(BLOCK_SIZE).toBe(16);
  });

  it('renders prompts into as many tokens as usage counts', () => {
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: [{ type: 'text', text: 'one two three' }] },
      { role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '{"a": 1}' } }] },
    ];
    expect(chatPromptTokenList(messages, ['f', 'g'])).toHaveLength(chatPromptTokens(messages, 2));
    expect(textPromptTokenList('a b  c')).toHaveLength(textPromptTokens('a b  c'));
    expect(textPromptTokenList([5, 6, 7])).toEqual([5, 6, 7]);
  });
});

describe('vllm-sim prefix caching', () => {
  let sim: SimServer;
  beforeAll(async () => {
    sim = await startSim({ models: ['m1'], outputTokens: 3, prefixCaching: true });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.reset());

  // 3 + (4 + 40) = 47 prompt tokens: two full blocks can be reused.
  const messages = [{ role: 'user', content: words(40) }];

  it('reports cached_tokens on a repeated chat prompt, unary and streamed', async () => {
    const first = (await (await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages })).json()) as { usage: unknown };
    expect(first.usage).toEqual({ prompt_tokens: 47, total_tokens: 50, completion_tokens: 3, prompt_tokens_details: null });
    const again = (await (await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages })).json()) as { usage: unknown };
    expect(again.usage).toEqual({ prompt_tokens: 47, total_tokens: 50, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 32 } });

    // A follow-up turn shares the first blocks of the conversation.
    const longer = [...messages, { role: 'assistant', content: 'ok' }, { role: 'user', content: words(20, 100) }];
    const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages: longer, stream: true, stream_options: { include_usage: true } });
    const last = sseJson<{ usage: { prompt_tokens_details?: { cached_tokens: number } } }>(await res.text()).at(-1)!;
    // The earlier prompt's third block was partial (never cached): blocks 1-2 match.
    expect(last.usage.prompt_tokens_details).toEqual({ cached_tokens: 32 });
  });

  it('is off for a prompt whose prefix was never seen, and reset() forgets', async () => {
    await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages });
    sim.reset();
    const res = await postJson(`${sim.url}/v1/chat/completions`, { model: 'm1', messages, stream: true, stream_options: { include_usage: true } });
    const last = sseJson<{ usage: Record<string, unknown> }>(await res.text()).at(-1)!;
    expect(last.usage).toEqual({ prompt_tokens: 47, total_tokens: 50, completion_tokens: 3 });
  });

  it('caches completions prompts per prompt', async () => {
    const prompt = words(20);
    await postJson(`${sim.url}/v1/completions`, { model: 'm1', prompt, max_tokens: 1 });
    const res = (await (await postJson(`${sim.url}/v1/completions`, { model: 'm1', prompt: [prompt, 'short'], max_tokens: 1 })).json()) as {
      usage: unknown;
    };
    expect(res.usage).toEqual({ prompt_tokens: 21 + 2, total_tokens: 25, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 16 } });
  });

  it('reports cached input on responses and messages', async () => {
    const input = words(40);
    await postJson(`${sim.url}/v1/responses`, { model: 'm1', input });
    const r = (await (await postJson(`${sim.url}/v1/responses`, { model: 'm1', input })).json()) as { usage: { input_tokens_details: unknown } };
    expect(r.usage.input_tokens_details).toMatchObject({ cached_tokens: 32 });

    const m = { model: 'm1', max_tokens: 5, messages: [{ role: 'user', content: input }] };
    const cold = (await (await postJson(`${sim.url}/v1/messages`, m)).json()) as { usage: Record<string, number> };
    // Same rendered chat as the response's input: already cached. Anthropic's contract (as vLLM reports it):
    // input_tokens are the uncached part, the whole prompt is input + cache reads + cache writes.
    expect(cold.usage).toEqual({ input_tokens: 15, output_tokens: 3, cache_creation_input_tokens: 0, cache_read_input_tokens: 32 });
    const res = await postJson(`${sim.url}/v1/messages`, { ...m, stream: true });
    const events = (await res.text())
      .split('\n\n')
      .filter((e) => e !== '')
      .map((e) => JSON.parse(e.slice(e.indexOf('\ndata: ') + 7)) as { type: string; message?: { usage: unknown }; usage?: unknown });
    expect(events[0]!.message!.usage).toEqual({ input_tokens: 15, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 32 });
    expect(events.find((e) => e.type === 'message_delta')!.usage).toEqual({ input_tokens: 15, output_tokens: 3, cache_creation_input_tokens: 0, cache_read_input_tokens: 32 });
  });
});

describe('vllm-sim without prefix caching (the default)', () => {
  it('never reports cached tokens', async () => {
    const sim = await startSim({ models: ['m1'], outputTokens: 3 });
    try {
      const body = { model: 'm1', messages: [{ role: 'user', content: words(40) }] };
      await postJson(`${sim.url}/v1/chat/completions`, body);
      const again = (await (await postJson(`${sim.url}/v1/chat/completions`, body)).json()) as { usage: { prompt_tokens_details: unknown } };
      expect(again.usage.prompt_tokens_details).toBeNull();
    } finally {
      await sim.close();
    }
  });
});
