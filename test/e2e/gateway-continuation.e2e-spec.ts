import type { ChildProcess } from 'node:child_process';
import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import { costNanos } from '@spot/tiers';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { simProcess } from '../support/sim-process';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';
import { sseData } from '../support/sim-sse';

const MODEL = 'cont-model';
const UPSTREAM = 'org/cont-model';
const TOKENS = 40;
const SPOT_PRICE = { input_per_mtok: 0.05, output_per_mtok: 0.1 };
const OD_PRICE = { input_per_mtok: 0.2, output_per_mtok: 0.4 };

function tiers(spot: string[], od: string[]): string {
  const tier = (name: string, kind: string, urls: string[], price: typeof SPOT_PRICE) =>
    `  - name: ${name}\n    kind: ${kind}\n    endpoints: [${urls.join(', ')}]\n    models:\n      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: ${price.input_per_mtok}, output_per_mtok: ${price.output_per_mtok} } }\n`;
  return `tiers:\n${tier('spot', 'spot', spot, SPOT_PRICE)}${tier('od', 'on-demand', od, OD_PRICE)}`;
}

interface Seen {
  text: string;
  finishes: string[];
  usage: OpenAI.CompletionUsage[];
  ids: Set<string>;
  created: Set<number>;
  models: Set<string>;
  deltas: number;
  roles: number;
  error: string | null;
  requestId: string | null;
}

const newSeen = (): Seen => ({ text: '', finishes: [], usage: [], ids: new Set(), created: new Set(), models: new Set(), deltas: 0, roles: 0, error: null, requestId: null });

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Streams that survive their engine: a spot engine SIGKILLed while 20 streams are mid-flight, through a real
 * gateway process and the official SDK. Each client sees one stream whose text is what one uninterrupted engine
 * would have produced (vllm-sim is deterministic and continues a delivered prefix exactly), one finish_reason, one
 * usage chunk; Postgres holds one row per segment, the prompt once, each completion token at its tier's price.
 */
describe('gateway: a stream continues on another tier when its spot engine is lost mid-flight', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const usageRepo = new UsageEventsRepository(prisma);
  let spot: { child: ChildProcess; url: string };
  let od: SimServer;
  let reference: SimServer;
  let gw: GatewayProcess;
  let client: OpenAI;
  let key: string;

  beforeAll(async () => {
    // 40 tokens 60 ms apart: under load a client may read far behind its engine, and a stream whose engine had
    // sent its end before the kill is closed by the gateway (one segment), not continued
    spot = await simProcess(UPSTREAM, ['--itl-ms', '60', '--output-tokens', String(TOKENS)]);
    od = await startSim({ models: [UPSTREAM], itlMs: 2, outputTokens: TOKENS });
    reference = await startSim({ models: [UPSTREAM], outputTokens: TOKENS });
    ({ key } = await seedOrgKey(prisma, { slugPrefix: 'cont' }));
    gw = await spawnGateway({ tiersYaml: tiers([spot.url], [od.url]), env: { USAGE_FLUSH_MS: '20' } });
    client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  });
  afterAll(async () => {
    spot?.child.kill('SIGKILL');
    await gw?.stop();
    await Promise.all([od, reference].map((s) => s?.close().catch(() => undefined)));
    await prisma.$disconnect();
  });

  const segmentsOf = async (requestId: string, n: number) => {
    let rows = await usageRepo.findSegments(requestId);
    for (let i = 0; i < 300 && rows.length < n; i++) {
      await new Promise((r) => setTimeout(r, 20));
      rows = await usageRepo.findSegments(requestId);
    }
    return rows;
  };

  it('SIGKILL of the spot engine under 20 streams: all complete as one uninterrupted stream, billed by segment', async () => {
    type Req = { kind: 'chat' | 'completions' | 'raw'; body: Record<string, unknown> };
    const reqs: Req[] = Array.from({ length: 20 }, (_, i) => {
      const usage = i % 2 === 0 ? { stream_options: { include_usage: true } } : {};
      const cap = i % 3 === 0 ? { max_tokens: 30 } : {};
      if (i % 5 === 4) return { kind: 'completions', body: { model: MODEL, prompt: `Once upon a time ${i}`, max_tokens: TOKENS, stream: true, ...usage } };
      const kind = i % 10 === 7 ? 'raw' : 'chat';
      return { kind, body: { model: MODEL, messages: [{ role: 'user', content: `tell me story number ${i}` }], stream: true, ...usage, ...cap } };
    });
    const seen = reqs.map(newSeen);
    const runs = reqs.map(async (r, i) => {
      const s = seen[i];
      try {
        if (r.kind === 'raw') {
          // the bytes themselves: one [DONE], one role delta
          const res = await fetch(`${gw.baseURL}/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(r.body),
          });
          s.requestId = res.headers.get('x-request-id');
          const reader = res.body!.getReader();
          let raw = '';
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            const text = Buffer.from(value).toString('utf8');
            raw += text;
            s.deltas += (text.match(/"content":"[^"]/g) ?? []).length;
          }
          const data = sseData(raw);
          expect(data.filter((d) => d === '[DONE]')).toHaveLength(1);
          expect(data.at(-1)).toBe('[DONE]');
          for (const d of data.slice(0, -1)) {
            const c = JSON.parse(d) as OpenAI.ChatCompletionChunk;
            s.ids.add(c.id);
            s.created.add(c.created);
            s.models.add(c.model);
            for (const ch of c.choices) {
              s.text += ch.delta.content ?? '';
              if (ch.delta.role) s.roles++;
              if (ch.finish_reason) s.finishes.push(ch.finish_reason);
            }
            if (c.usage) s.usage.push(c.usage);
          }
          return;
        }
        if (r.kind === 'chat') {
          const { data, request_id } = await client.chat.completions.create(r.body as unknown as OpenAI.ChatCompletionCreateParamsStreaming).withResponse();
          s.requestId = request_id;
          for await (const c of data) {
            s.ids.add(c.id);
            s.created.add(c.created);
            s.models.add(c.model);
            for (const ch of c.choices) {
              if (ch.delta.content) s.deltas++;
              s.text += ch.delta.content ?? '';
              if (ch.delta.role) s.roles++;
              if (ch.finish_reason) s.finishes.push(ch.finish_reason);
            }
            if (c.usage) s.usage.push(c.usage);
          }
          return;
        }
        const { data, request_id } = await client.completions.create(r.body as unknown as OpenAI.CompletionCreateParamsStreaming).withResponse();
        s.requestId = request_id;
        for await (const c of data) {
          s.ids.add(c.id);
          s.created.add(c.created);
          s.models.add(c.model);
          for (const ch of c.choices) {
            if (ch.text) s.deltas++;
            s.text += ch.text;
            if (ch.finish_reason) s.finishes.push(ch.finish_reason);
          }
          if (c.usage) s.usage.push(c.usage);
        }
      } catch (e) {
        s.error = (e as Error).message;
      }
    });
    // every stream has delivered a few tokens on spot when its machine vanishes
    await until(() => seen.every((s) => s.deltas >= 3 || s.error !== null), 'every stream under way');
    expect(seen.filter((s) => s.deltas >= TOKENS - 5)).toEqual([]);
    spot.child.kill('SIGKILL');
    await Promise.all(runs);

    expect(seen.map((s) => s.error)).toEqual(Array(20).fill(null));
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i];
      const s = seen[i];
      const { stream: _s, stream_options: _o, ...unary } = r.body;
      const ref =
        r.kind === 'completions'
          ? await (async () => {
              const c = await new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x' }).completions.create({ ...(unary as unknown as OpenAI.CompletionCreateParamsNonStreaming), model: UPSTREAM });
              return { text: c.choices[0].text, finish: c.choices[0].finish_reason, usage: c.usage! };
            })()
          : await (async () => {
              const c = await new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x' }).chat.completions.create({ ...(unary as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming), model: UPSTREAM });
              return { text: c.choices[0].message.content!, finish: c.choices[0].finish_reason, usage: c.usage! };
            })();
      expect({ i, text: s.text }).toEqual({ i, text: ref.text });
      expect(s.finishes).toEqual([ref.finish]);
      expect([s.ids.size, s.created.size, s.models.size]).toEqual([1, 1, 1]);
      if (r.kind !== 'completions') expect(s.roles).toBe(1);
      if ((r.body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) {
        expect(s.usage).toHaveLength(1);
        expect(s.usage[0]).toMatchObject({ prompt_tokens: ref.usage.prompt_tokens, completion_tokens: ref.usage.completion_tokens, total_tokens: ref.usage.total_tokens });
      } else expect(s.usage).toEqual([]);

      // Postgres: the prompt once (segment 0, spot), every completion token at the tier that generated it
      const rows = await segmentsOf(s.requestId!, 2);
      expect(rows.map((row) => row.segment)).toEqual([0, 1]);
      expect(rows.map((row) => row.tier)).toEqual(['spot', 'od']);
      expect(rows[0].promptTokens).toBe(ref.usage.prompt_tokens);
      expect(rows[1].promptTokens).toBe(0);
      expect(rows[1].cachedTokens).toBe(0);
      expect(rows[0].completionTokens).toBeGreaterThanOrEqual(3);
      expect(rows[0].completionTokens + rows[1].completionTokens).toBe(ref.usage.completion_tokens);
      expect(rows.map((row) => row.status)).toEqual([200, 200]);
      for (const row of rows) {
        const price = row.tier === 'spot' ? SPOT_PRICE : OD_PRICE;
        expect(Number(row.costNanos)).toBe(costNanos(price, { promptTokens: row.promptTokens, completionTokens: row.completionTokens, cachedTokens: row.cachedTokens }));
      }
    }
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_stream_continuations_total\{tier="spot",outcome="continued"\} 20\b/);
  });
});

/**
 * The other ways an engine fails a stream under way (a stall past STREAM_STALL_MS, an error frame), and the
 * streams that are not continued honestly (a tool call under way, n > 1, logprobs): those end as before.
 */
describe('gateway: stalls and error frames are continued; tool calls, n > 1 and logprobs are cut as before', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const usageRepo = new UsageEventsRepository(prisma);
  let spot: SimServer;
  let od: SimServer;
  let gw: GatewayProcess;
  let client: OpenAI;
  const messages = [{ role: 'user' as const, content: 'hello there' }];
  const whole = async (): Promise<string> => {
    const ref = await startSim({ models: [UPSTREAM], outputTokens: 12 });
    try {
      const c = await new OpenAI({ baseURL: `${ref.url}/v1`, apiKey: 'x' }).chat.completions.create({ model: UPSTREAM, messages });
      return c.choices[0].message.content!;
    } finally {
      await ref.close();
    }
  };

  beforeAll(async () => {
    spot = await startSim({ models: [UPSTREAM], itlMs: 5, outputTokens: 12 });
    od = await startSim({ models: [UPSTREAM], itlMs: 5, outputTokens: 12 });
    const { key } = await seedOrgKey(prisma, { slugPrefix: 'cont2' });
    gw = await spawnGateway({ tiersYaml: tiers([spot.url], [od.url]), env: { USAGE_FLUSH_MS: '20', STREAM_STALL_MS: '400' } });
    client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.stop();
    await Promise.all([spot, od].map((s) => s?.close().catch(() => undefined)));
    await prisma.$disconnect();
  });
  beforeEach(() => {
    spot.reset();
    od.reset();
  });

  const read = async (params: OpenAI.ChatCompletionCreateParamsStreaming): Promise<{ text: string; finishes: number; error: string | null; requestId: string | null }> => {
    let text = '';
    let finishes = 0;
    let requestId: string | null = null;
    try {
      const { data, request_id } = await client.chat.completions.create(params).withResponse();
      requestId = request_id;
      for await (const c of data) {
        for (const ch of c.choices) {
          text += ch.delta.content ?? '';
          if (ch.finish_reason) finishes++;
        }
      }
      return { text, finishes, error: null, requestId };
    } catch (e) {
      return { text, finishes, error: (e as Error).message, requestId };
    }
  };

  it('a stream whose engine stalls past STREAM_STALL_MS goes on on the other tier', async () => {
    spot.faults.add({ kind: 'stall', afterTokens: 4 });
    const got = await read({ model: MODEL, messages, stream: true });
    expect(got).toMatchObject({ text: await whole(), finishes: 1, error: null });
    expect(spot.stats.aborted).toBe(1); // the stalled engine request was aborted
    const cont = od.received.at(-1)!.body as { messages: Array<{ role: string; content: string }>; continue_final_message: boolean; add_generation_prompt: boolean };
    expect(cont.messages.at(-1)).toEqual({ role: 'assistant', content: (await whole()).split(' ').slice(0, 5).join(' ') });
    expect(cont).toMatchObject({ continue_final_message: true, add_generation_prompt: false });
    // the rows are written by the gateway's usage flush, after the stream's end
    let rows = await usageRepo.findSegments(got.requestId!);
    for (let i = 0; i < 300 && rows.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 20));
      rows = await usageRepo.findSegments(got.requestId!);
    }
    expect(rows.map((r) => [r.segment, r.tier, r.completionTokens])).toEqual([
      [0, 'spot', 4],
      [1, 'od', 8],
    ]);
  });

  it("an engine's 5xx error frame mid-stream is held back and the stream continued", async () => {
    spot.faults.add({ kind: 'error-after', afterTokens: 5, status: 500, message: 'engine exploded' });
    const got = await read({ model: MODEL, messages, stream: true, max_tokens: 10 });
    expect(got).toMatchObject({ text: (await whole()).split(' ').slice(0, 11).join(' '), finishes: 1, error: null });
    expect((od.received.at(-1)!.body as { max_tokens: number }).max_tokens).toBe(5);
  });

  it('a tool call under way, n > 1 and logprobs streams end with an error frame, as before', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }];
    const cases: OpenAI.ChatCompletionCreateParamsStreaming[] = [
      { model: MODEL, messages, stream: true, tools, tool_choice: 'required' },
      { model: MODEL, messages, stream: true, n: 2 },
      { model: MODEL, messages, stream: true, logprobs: true },
    ];
    for (const params of cases) {
      spot.reset();
      od.reset();
      // an error frame (the engine stays in rotation for the next case); a continuable stream would be continued
      spot.faults.add({ kind: 'error-after', afterTokens: 3, status: 500, message: 'engine exploded' });
      const got = await read(params);
      expect(got.error).toMatch(/engine exploded/);
      expect(od.received).toHaveLength(0);
      // its one row: a 5xx with the tokens it delivered (what the console's tiers page counts as a stream lost)
      let rows = await usageRepo.findSegments(got.requestId!);
      for (let i = 0; i < 300 && rows.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        rows = await usageRepo.findSegments(got.requestId!);
      }
      expect(rows.map((r) => [r.segment, r.tier, r.status])).toEqual([[0, 'spot', 500]]);
      expect(rows[0].completionTokens).toBeGreaterThan(0);
    }
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_stream_continuations_total\{tier="spot",outcome="unsupported"\} 3\b/);
    expect(metrics).toMatch(/gateway_stream_continuations_total\{tier="spot",outcome="continued"\} 2\b/);
  });
});

/**
 * A preemption notice's deadline (issue 12): streams still running on the noticed replica when it comes are
 * continued on another tier before the machine goes, and nothing new is sent to the replica after the notice.
 */
describe('gateway: at a preemption deadline, streams still on the replica are continued elsewhere', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const usageRepo = new UsageEventsRepository(prisma);
  const ADMIN = 'cont-admin-token';
  let spot: SimServer;
  let od: SimServer;
  let reference: SimServer;
  let gw: GatewayProcess;
  let client: OpenAI;

  beforeAll(async () => {
    spot = await startSim({ models: [UPSTREAM], itlMs: 40, outputTokens: TOKENS });
    od = await startSim({ models: [UPSTREAM], itlMs: 2, outputTokens: TOKENS });
    reference = await startSim({ models: [UPSTREAM], outputTokens: TOKENS });
    const { key } = await seedOrgKey(prisma, { slugPrefix: 'cont3' });
    gw = await spawnGateway({ tiersYaml: tiers([spot.url], [od.url]), env: { USAGE_FLUSH_MS: '20', ADMIN_TOKEN: ADMIN } });
    client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.stop();
    await Promise.all([spot, od, reference].map((s) => s?.close().catch(() => undefined)));
    await prisma.$disconnect();
  });

  it('six streams under way at the deadline complete as one stream each, their tail generated and billed on on-demand', async () => {
    const seen = Array.from({ length: 6 }, newSeen);
    const bodies = seen.map((_, i) => ({ model: MODEL, messages: [{ role: 'user' as const, content: `a story for deadline ${i}` }], stream: true as const }));
    const runs = seen.map(async (s, i) => {
      try {
        const { data, request_id } = await client.chat.completions.create(bodies[i]).withResponse();
        s.requestId = request_id;
        for await (const c of data) {
          s.ids.add(c.id);
          for (const ch of c.choices) {
            if (ch.delta.content) s.deltas++;
            s.text += ch.delta.content ?? '';
            if (ch.finish_reason) s.finishes.push(ch.finish_reason);
          }
        }
      } catch (e) {
        s.error = (e as Error).message;
      }
    });
    await until(() => seen.every((s) => s.deltas >= 3 || s.error !== null), 'every stream under way on spot');
    const res = await fetch(`${gw.url}/admin/tiers/spot/preempt`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ deadline_s: 0.3 }),
    });
    expect(res.status).toBe(200);
    const spotRequests = spot.received.length;
    // a request after the notice goes to on-demand, not to the replica going away
    const after = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'after the notice' }] });
    expect(after.choices[0].message.content).toBeTruthy();
    await Promise.all(runs);

    expect(seen.map((s) => s.error)).toEqual(Array(6).fill(null));
    expect(spot.received.length).toBe(spotRequests);
    expect(spot.stats.aborted).toBe(6); // the deadline took every stream off the replica
    for (let i = 0; i < seen.length; i++) {
      const { stream: _s, ...unary } = bodies[i];
      const ref = await new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x' }).chat.completions.create({ ...unary, model: UPSTREAM });
      expect({ i, text: seen[i].text }).toEqual({ i, text: ref.choices[0].message.content });
      expect(seen[i].finishes).toEqual([ref.choices[0].finish_reason]);
      expect(seen[i].ids.size).toBe(1);
      let rows = await usageRepo.findSegments(seen[i].requestId!);
      for (let k = 0; k < 300 && rows.length < 2; k++) {
        await new Promise((r) => setTimeout(r, 20));
        rows = await usageRepo.findSegments(seen[i].requestId!);
      }
      expect(rows.map((r) => [r.segment, r.tier])).toEqual([
        [0, 'spot'],
        [1, 'od'],
      ]);
      expect(rows[0].promptTokens).toBe(ref.usage!.prompt_tokens);
      expect(rows[1].promptTokens).toBe(0);
      expect(rows[0].completionTokens + rows[1].completionTokens).toBe(ref.usage!.completion_tokens);
    }
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_preemption_deadlines_total\{tier="spot"\} 1\b/);
    expect(metrics).toMatch(/gateway_stream_continuations_total\{tier="spot",outcome="continued"\} 6\b/);
  });
});
