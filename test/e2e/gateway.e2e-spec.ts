import OpenAI from 'openai';
import { CHAT_MODEL, CHAT_UPSTREAM, EMBED_MODEL, type GatewayStack, OTHER_MODEL, startGatewayStack } from '../support/gateway-stack';

const messages = [{ role: 'user' as const, content: 'Tell me about spot GPUs in a few words' }];

async function until<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
}

function lastReceived(s: GatewayStack) {
  return s.sim.received[s.sim.received.length - 1];
}

describe('gateway: the OpenAI contract through the official SDK', () => {
  let s: GatewayStack;

  beforeAll(async () => {
    s = await startGatewayStack();
  });
  afterAll(async () => {
    await s?.close();
  });
  afterEach(() => {
    s.sim.faults.clear();
  });

  describe('chat completions', () => {
    it('answers a non-streamed request and records exactly the usage the client was told', async () => {
      const { data, request_id } = await s.client.chat.completions.create({ model: CHAT_MODEL, messages }).withResponse();
      expect(request_id).toMatch(/^req_[0-9a-f]{32}$/);
      expect(data.object).toBe('chat.completion');
      expect(data.choices[0].message.content?.length).toBeGreaterThan(0);
      expect(data.usage!.completion_tokens).toBeGreaterThan(0);
      // the engine was asked for its own name of the model
      expect(lastReceived(s).body).toMatchObject({ model: CHAT_UPSTREAM });
      const row = await s.usageRow(request_id!);
      expect(row).toMatchObject({
        orgId: s.orgId,
        keyId: s.keyId,
        model: CHAT_MODEL,
        tier: 'test-spot',
        promptTokens: data.usage!.prompt_tokens,
        completionTokens: data.usage!.completion_tokens,
        status: 200,
        estimated: false,
      });
    });

    it('streams without usage when the client did not ask, yet bills the usage the engine reported', async () => {
      const { data: stream, request_id: requestId } = await s.client.chat.completions.create({ model: CHAT_MODEL, messages, stream: true }).withResponse();
      let text = '';
      let deltas = 0;
      for await (const chunk of stream) {
        expect(chunk).not.toHaveProperty('usage');
        expect(chunk.choices.length).toBe(1);
        const piece = chunk.choices[0].delta.content;
        if (piece) {
          text += piece;
          deltas++;
        }
      }
      expect(text.length).toBeGreaterThan(0);
      // the gateway asked the engine for usage anyway
      expect(lastReceived(s).body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
      const row = await s.usageRow(requestId!);
      expect(row).toMatchObject({ completionTokens: deltas, status: 200, estimated: false });
      expect(row!.promptTokens).toBeGreaterThan(0);
      expect(row!.ttftMs).not.toBeNull();
    });

    it('streams the usage chunk when asked, and the bill matches it', async () => {
      const { data: stream, request_id } = await s.client.chat.completions
        .create({ model: CHAT_MODEL, messages, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      const usages: OpenAI.CompletionUsage[] = [];
      let deltas = 0;
      for await (const chunk of stream) {
        if (chunk.usage) {
          expect(chunk.choices).toEqual([]);
          usages.push(chunk.usage);
        } else if (chunk.choices[0]?.delta.content) deltas++;
      }
      expect(usages).toHaveLength(1);
      expect(usages[0].completion_tokens).toBe(deltas);
      const row = await s.usageRow(request_id!);
      expect(row).toMatchObject({ promptTokens: usages[0].prompt_tokens, completionTokens: usages[0].completion_tokens, estimated: false });
    });

    it('relays the engine bytes of a stream untouched and ends with [DONE]', async () => {
      const res = await fetch(`${s.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: CHAT_MODEL, messages, stream: true }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(res.headers.get('x-request-id')).toMatch(/^req_/);
      const text = await res.text();
      const events = text.split('\n\n').filter(Boolean);
      expect(events[events.length - 1]).toBe('data: [DONE]');
      for (const e of events.slice(0, -1)) {
        expect(e.startsWith('data: {')).toBe(true);
        const chunk = JSON.parse(e.slice(6));
        expect(chunk.object).toBe('chat.completion.chunk');
        expect(chunk).not.toHaveProperty('usage');
      }
      expect(JSON.parse(events[0].slice(6)).choices[0].delta.role).toBe('assistant');
    });

    it('passes tools through and the SDK stream helper assembles the tool call', async () => {
      const tools: OpenAI.ChatCompletionTool[] = [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather for a city',
            parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'number' } }, required: ['city'] },
          },
        },
      ];
      const runner = s.client.chat.completions.stream({ model: CHAT_MODEL, messages, tools, tool_choice: 'auto', parallel_tool_calls: false });
      const final = await runner.finalChatCompletion();
      const call = final.choices[0].message.tool_calls?.[0];
      expect(call?.type).toBe('function');
      expect(call && 'function' in call ? call.function.name : '').toBe('get_weather');
      expect(JSON.parse(call && 'function' in call ? call.function.arguments : '{}')).toHaveProperty('city');
      expect(final.choices[0].finish_reason).toBe('tool_calls');
      expect(lastReceived(s).body).toMatchObject({ tools, tool_choice: 'auto', parallel_tool_calls: false });
    });

    it('passes response_format, n, logprobs and unknown fields through untouched', async () => {
      const body = {
        model: CHAT_MODEL,
        messages,
        response_format: { type: 'json_object' as const },
        n: 2,
        logprobs: false,
        top_p: 0.9,
        seed: 7,
        guided_decoding_backend: 'xgrammar',
        vendor_extension: { nested: [1, 2, { a: null }] },
      };
      const res = await s.client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(res.choices).toHaveLength(2);
      expect(() => JSON.parse(res.choices[0].message.content!)).not.toThrow();
      expect(lastReceived(s).body).toEqual({ ...body, model: CHAT_UPSTREAM });
    });
  });

  describe('completions and embeddings', () => {
    it('serves legacy completions, streamed and not', async () => {
      const plain = await s.client.completions.create({ model: OTHER_MODEL, prompt: 'Say hi', max_tokens: 5 });
      expect(plain.choices[0].text.length).toBeGreaterThan(0);
      expect(plain.usage!.completion_tokens).toBeLessThanOrEqual(5);
      const { data: stream, request_id } = await s.client.completions.create({ model: OTHER_MODEL, prompt: 'Say hi', max_tokens: 5, stream: true }).withResponse();
      let text = '';
      for await (const c of stream) text += c.choices[0]?.text ?? '';
      expect(text.length).toBeGreaterThan(0);
      const row = await s.usageRow(request_id!);
      expect(row).toMatchObject({ model: OTHER_MODEL, completionTokens: 5, estimated: false });
    });

    it('streamed chunks carry no usage key unless the client asked for usage (the engine sends "usage":null in each)', async () => {
      const events = async (body: Record<string, unknown>): Promise<Record<string, unknown>[]> => {
        const res = await fetch(`${s.baseURL}/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: OTHER_MODEL, prompt: 'Say hi', max_tokens: 6, stream: true, ...body }),
        });
        expect(res.status).toBe(200);
        const text = await res.text();
        const frames = text.split('\n\n').filter(Boolean);
        expect(frames[frames.length - 1]).toBe('data: [DONE]');
        return frames.slice(0, -1).map((f) => JSON.parse(f.slice(6)) as Record<string, unknown>);
      };
      // vLLM's completion chunks say "usage":null once include_usage is on, which the gateway always asks for
      s.sim.received.length = 0;
      const plain = await events({});
      expect(lastReceived(s).body).toMatchObject({ stream_options: { include_usage: true } });
      expect(plain.length).toBe(6);
      for (const chunk of plain) {
        expect(chunk).not.toHaveProperty('usage');
        expect(chunk.object).toBe('text_completion');
      }
      expect(plain.map((c) => (c.choices as Array<{ text: string }>)[0].text).join('').length).toBeGreaterThan(0);
      // asked for: OpenAI's shape, usage null on every chunk and the totals in a last choices-less chunk
      const asked = await events({ stream_options: { include_usage: true } });
      expect(asked.slice(0, -1).every((c) => c.usage === null)).toBe(true);
      expect(asked[asked.length - 1]).toMatchObject({ choices: [], usage: { completion_tokens: 6 } });
    });

    it('passes embeddings through (base64 as the SDK asks) and bills their prompt tokens', async () => {
      const { data, request_id } = await s.client.embeddings.create({ model: EMBED_MODEL, input: ['one two three', 'four'] }).withResponse();
      expect(data.data).toHaveLength(2);
      expect(data.data[0].embedding.length).toBeGreaterThan(0);
      expect(typeof data.data[0].embedding[0]).toBe('number');
      const row = await s.usageRow(request_id!);
      expect(row).toMatchObject({ model: EMBED_MODEL, promptTokens: data.usage.prompt_tokens, completionTokens: 0 });
    });
  });

  describe('models', () => {
    it('lists only the models a key may use, in the OpenAI list shape', async () => {
      const all = await s.client.models.list();
      expect(all.data.map((m) => m.id).sort()).toEqual([CHAT_MODEL, EMBED_MODEL, OTHER_MODEL].sort());
      expect(all.data[0]).toMatchObject({ object: 'model', owned_by: 'spotinference' });
      const narrow = await s.newKey({ models: [OTHER_MODEL] });
      const client = new OpenAI({ baseURL: s.baseURL, apiKey: narrow.key, maxRetries: 0 });
      expect((await client.models.list()).data.map((m) => m.id)).toEqual([OTHER_MODEL]);
      expect((await client.models.retrieve(OTHER_MODEL)).id).toBe(OTHER_MODEL);
      await expect(client.models.retrieve(CHAT_MODEL)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    });
  });

  describe('errors, each in the OpenAI envelope', () => {
    async function raw(path: string, init: RequestInit & { key?: string | null } = {}) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (init.key !== null) headers.authorization = `Bearer ${init.key ?? s.key}`;
      const res = await fetch(`${s.url}${path}`, { method: 'POST', ...init, headers: { ...headers, ...(init.headers as Record<string, string>) } });
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(typeof body.error.type).toBe('string');
      expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
      return { status: res.status, error: body.error, headers: res.headers };
    }

    it('401 invalid_api_key for a missing, malformed, unknown, revoked or expired key', async () => {
      const missing = await raw('/v1/chat/completions', { key: null, body: JSON.stringify({ model: CHAT_MODEL, messages }) });
      expect(missing).toMatchObject({ status: 401, error: { code: 'invalid_api_key', type: 'invalid_request_error' } });
      const bogus = new OpenAI({ baseURL: s.baseURL, apiKey: 'sk-spot-AAAAAAAAAAAA-' + 'B'.repeat(40), maxRetries: 0 });
      await expect(bogus.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
      const malformed = new OpenAI({ baseURL: s.baseURL, apiKey: 'sk-proj-123', maxRetries: 0 });
      await expect(malformed.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      const expired = await s.newKey({ expiresAt: new Date(Date.now() - 1000) });
      const expiredClient = new OpenAI({ baseURL: s.baseURL, apiKey: expired.key, maxRetries: 0 });
      await expect(expiredClient.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    });

    it('404 model_not_found for an unknown model and for a model the key may not use', async () => {
      await expect(s.client.chat.completions.create({ model: 'no-such-model', messages })).rejects.toMatchObject({
        status: 404,
        code: 'model_not_found',
        param: 'model',
      });
      const narrow = await s.newKey({ models: [OTHER_MODEL] });
      const client = new OpenAI({ baseURL: s.baseURL, apiKey: narrow.key, maxRetries: 0 });
      await expect(client.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    });

    it('400 for bad JSON, a missing messages field and stream_options without stream; 413 for an oversized body', async () => {
      expect(await raw('/v1/chat/completions', { body: '{"model": "x",' })).toMatchObject({ status: 400, error: { type: 'invalid_request_error' } });
      await expect(s.client.chat.completions.create({ model: CHAT_MODEL } as never)).rejects.toMatchObject({
        status: 400,
        param: 'messages',
      });
      await expect(
        s.client.chat.completions.create({ model: CHAT_MODEL, messages, stream_options: { include_usage: true } } as never),
      ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
      const huge = JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x'.repeat(s.config.GATEWAY_BODY_LIMIT) }] });
      expect(await raw('/v1/chat/completions', { body: huge })).toMatchObject({ status: 413, error: { code: 'request_too_large' } });
    });

    it('415 for a body that is not JSON, on the fast path and on the Fastify route alike', async () => {
      for (const path of ['/v1/chat/completions', '/v1/chat/completions?via=fast-path', '/v1/chat/complet%69ons']) {
        const res = await raw(path, { body: 'model=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
        expect(res).toMatchObject({ status: 415, error: { type: 'invalid_request_error' } });
      }
    });

    it('serves a proxied route Fastify matches but the fast path does not (a percent-escaped path)', async () => {
      const res = await fetch(`${s.baseURL}/chat/complet%69ons?trace=1`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: CHAT_MODEL, messages }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
      expect(((await res.json()) as { object: string }).object).toBe('chat.completion');
      const bad = await raw('/v1/chat/complet%69ons?trace=1', { body: '{"model":' });
      expect(bad.status).toBe(400);
      const query = await raw('/v1/chat/completions?trace=1', { body: '{"model":' });
      expect(query.status).toBe(400);
    });

    it('404 in the envelope for unknown routes', async () => {
      expect(await raw('/v1/nope', { body: '{}' })).toMatchObject({ status: 404, error: { message: 'Invalid URL (POST /v1/nope)' } });
    });

    it("rewrites vLLM's errors (integer code, Python type) into OpenAI's, with the engine's status", async () => {
      s.sim.faults.add({ kind: 'error-before', status: 400, message: "'max_tokens' is too large" });
      const bad = await raw('/v1/chat/completions', { body: JSON.stringify({ model: CHAT_MODEL, messages }) });
      expect(bad).toMatchObject({ status: 400, error: { message: "'max_tokens' is too large", type: 'invalid_request_error', code: null } });
      s.sim.faults.add({ kind: 'error-before', status: 500 });
      await expect(s.client.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toBeInstanceOf(OpenAI.InternalServerError);
    });
  });

  describe('failures mid-stream', () => {
    it('passes an engine error frame through in the envelope: the SDK stream throws', async () => {
      s.sim.faults.add({ kind: 'error-after', afterTokens: 2, message: 'engine exploded' });
      const stream = await s.client.chat.completions.create({ model: CHAT_MODEL, messages, stream: true });
      const seen: string[] = [];
      await expect(
        (async () => {
          for await (const c of stream) seen.push(c.choices[0]?.delta.content ?? '');
        })(),
      ).rejects.toThrow(/engine exploded/);
      expect(seen.length).toBeGreaterThan(0);
    });

    it('a dropped engine connection is an error for the client, never a clean end, and the partial stream is billed', async () => {
      s.sim.faults.add({ kind: 'drop', afterTokens: 3 });
      const { data: stream, request_id } = await s.client.chat.completions.create({ model: CHAT_MODEL, messages, stream: true }).withResponse();
      let deltas = 0;
      await expect(
        (async () => {
          for await (const c of stream) if (c.choices[0]?.delta.content) deltas++;
        })(),
      ).rejects.toThrow();
      expect(deltas).toBe(3);
      const row = await s.usageRow(request_id!);
      expect(row).toMatchObject({ estimated: true, completionTokens: 3, status: 502 });
    });

    it('a client abort mid-stream aborts the engine request at once and bills what was delivered', async () => {
      const slow = await startGatewayStack({}, { itlMs: 30, outputTokens: 200 });
      try {
        const controller = new AbortController();
        const { data: stream, request_id } = await slow.client.chat.completions
          .create({ model: CHAT_MODEL, messages, stream: true }, { signal: controller.signal })
          .withResponse();
        let deltas = 0;
        // the SDK ends the iteration quietly (or throws, by version) once its signal aborts
        await (async () => {
          for await (const c of stream) {
            if (c.choices[0]?.delta.content && ++deltas === 3) controller.abort();
          }
        })().catch(() => undefined);
        expect(deltas).toBeLessThan(10);
        const stats = await until(() => ({ ...slow.sim.stats }), (st) => st.aborted >= 1, 2000);
        expect(stats.aborted).toBe(1);
        const row = await slow.usageRow(request_id!);
        expect(row).toMatchObject({ estimated: true, status: 499 });
        expect(row!.completionTokens).toBeGreaterThanOrEqual(3);
        expect(row!.completionTokens).toBeLessThan(200);
      } finally {
        await slow.close();
      }
    });

    it('an unreachable engine is a 502 envelope, not a hang', async () => {
      const dead = await startGatewayStack();
      await dead.sim.close();
      try {
        await expect(dead.client.chat.completions.create({ model: CHAT_MODEL, messages })).rejects.toMatchObject({
          status: 502,
          code: 'upstream_unavailable',
        });
      } finally {
        await dead.app.close();
      }
    });
  });

  describe('operations endpoints', () => {
    it('healthz, readyz and metrics', async () => {
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      const ready = await fetch(`${s.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', redis: 'ready' });
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(metrics).toMatch(/gateway_requests_total\{route="chat",status="200"\} \d+/);
      expect(metrics).toContain('gateway_request_duration_seconds_bucket');
      expect(metrics).toContain('gateway_time_to_first_byte_seconds_bucket');
      expect(metrics).toMatch(/gateway_upstream_errors_total\{tier="test-spot",kind="midstream"\} \d+/);
    });

    it('tells the gateway\'s own time on every proxied response: x-spot-overhead-ms and Server-Timing', async () => {
      s.sim.faults.add({ kind: 'slow-start', delayMs: 60, count: 2 });
      for (const stream of [false, true]) {
        const started = performance.now();
        const res = await fetch(`${s.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: CHAT_MODEL, messages, stream }),
        });
        const headAt = performance.now() - started;
        await res.text();
        expect(res.status).toBe(200);
        const overhead = Number(res.headers.get('x-spot-overhead-ms'));
        expect(res.headers.get('x-spot-overhead-ms')).toMatch(/^\d+\.\d\d$/);
        const timing = res.headers.get('server-timing') ?? '';
        const m = /^gateway;dur=([\d.]+);desc="spotinference", upstream;dur=([\d.]+)$/.exec(timing);
        expect(m).not.toBeNull();
        expect(Number(m![1])).toBe(overhead);
        // the engine's 60 ms before its first byte is the engine's, not ours; both fit in what the client waited
        expect(Number(m![2])).toBeGreaterThanOrEqual(55);
        expect(overhead).toBeGreaterThan(0);
        expect(overhead + Number(m![2])).toBeLessThanOrEqual(headAt + 1);
      }
    });

    it('gives every response its own x-request-id', async () => {
      const ids = new Set<string>();
      for (const path of ['/healthz', '/v1/models', '/v1/nope', '/metrics']) {
        const res = await fetch(`${s.url}${path}`);
        ids.add(res.headers.get('x-request-id') ?? '');
        await res.arrayBuffer();
      }
      expect(ids.size).toBe(4);
      for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{32}$/);
    });
  });
});
