import type { ChildProcess } from 'node:child_process';
import Anthropic from '@anthropic-ai/sdk';
import { loadConfig } from '@spot/config';
import { PrismaService, UsageEventsRepository } from '@spot/db';
import { costNanos } from '@spot/tiers';
import OpenAI from 'openai';
import { type SimServer, startSim } from '../../apps/vllm-sim/src/sim-server';
import { simProcess } from '../support/sim-process';
import { type GatewayProcess, seedOrgKey, spawnGateway } from '../support/gateway-process';

const MODEL = 'contp-model';
const UPSTREAM = 'org/contp-model';
const TOKENS = 40;
const SPOT_PRICE = { input_per_mtok: 0.05, output_per_mtok: 0.1 };
const OD_PRICE = { input_per_mtok: 0.2, output_per_mtok: 0.4 };

function tiers(spot: string, od: string): string {
  const tier = (name: string, kind: string, url: string, price: typeof SPOT_PRICE) =>
    `  - name: ${name}\n    kind: ${kind}\n    endpoints: [${url}]\n    models:\n      - { id: ${MODEL}, upstream: ${UPSTREAM}, price: { input_per_mtok: ${price.input_per_mtok}, output_per_mtok: ${price.output_per_mtok} } }\n`;
  return `tiers:\n${tier('spot', 'spot', spot, SPOT_PRICE)}${tier('od', 'on-demand', od, OD_PRICE)}`;
}

async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A fetch that notes each request's x-request-id under the marker its body carries (each stream has its own). */
function recordingFetch(ids: Map<string, string>): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    const body = typeof init?.body === 'string' ? init.body : '';
    const marker = /marker-(\d+)/.exec(body)?.[0];
    const id = res.headers.get('x-request-id');
    if (marker !== undefined && id !== null) ids.set(marker, id);
    return res;
  };
}

/** The text of a Response's message items (the wire's own, not the SDK's `output_text` convenience). */
function outputText(r: OpenAI.Responses.Response): string {
  return r.output.flatMap((item) => (item.type === 'message' ? item.content.map((c) => (c.type === 'output_text' ? c.text : '')) : [])).join('');
}

interface SeenResponse {
  events: OpenAI.Responses.ResponseStreamEvent[];
  text: string;
  deltas: number;
  final: OpenAI.Responses.Response | null;
  error: string | null;
}

interface SeenMessage {
  events: Anthropic.MessageStreamEvent[];
  text: string;
  deltas: number;
  final: Anthropic.Message | null;
  error: string | null;
}

/**
 * Responses and Messages streams that survive their engine (issue 12): a spot engine SIGKILLed while six streams of
 * each are mid-flight, through a real gateway process and the official SDKs (`openai`'s responses.stream and
 * responses.create with stream: true, `@anthropic-ai/sdk`'s messages.stream). Each client sees one stream: the text
 * an uninterrupted engine would have produced (vllm-sim continues a delivered prefix exactly), one response id and
 * one item (one message id and one text block), sequence numbers without a gap, one terminal event whose usage
 * counts the input once and every output token; the stored Response is the one the client read; Postgres holds one
 * usage row per segment, the prompt once at the spot price, each output token at its tier's price.
 */
describe('gateway: Responses and Messages streams continue on another tier when their spot engine is lost', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const usageRepo = new UsageEventsRepository(prisma);
  let spot: { child: ChildProcess; url: string };
  let od: SimServer;
  let reference: SimServer;
  let gw: GatewayProcess;
  const ids = new Map<string, string>();
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    spot = await simProcess(UPSTREAM, ['--itl-ms', '30', '--output-tokens', String(TOKENS)]);
    od = await startSim({ models: [UPSTREAM], itlMs: 2, outputTokens: TOKENS });
    reference = await startSim({ models: [UPSTREAM], outputTokens: TOKENS });
    const { key } = await seedOrgKey(prisma, { slugPrefix: 'contp' });
    gw = await spawnGateway({ tiersYaml: tiers(spot.url, od.url), env: { USAGE_FLUSH_MS: '20' } });
    openai = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0, fetch: recordingFetch(ids) });
    anthropic = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0, fetch: recordingFetch(ids) });
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

  it('SIGKILL of the spot engine under 6 Responses and 6 Messages streams: every one completes as one uninterrupted stream', async () => {
    // a stored first turn (served before the engine goes): one stream continues it by previous_response_id
    const turn1 = await openai.responses.create({ model: MODEL, input: 'the first turn' });
    const responsesBodies: OpenAI.Responses.ResponseCreateParamsStreaming[] = Array.from({ length: 6 }, (_, i) => ({
      model: MODEL,
      input: [{ type: 'message', role: 'user', content: `a story, marker-${i}` }],
      stream: true,
      ...(i % 3 === 1 ? { max_output_tokens: 30 } : {}),
      ...(i === 4 ? { instructions: 'Be vivid.' } : {}),
      ...(i === 5 ? { previous_response_id: turn1.id } : {}),
    }));
    const messagesBodies: Anthropic.MessageCreateParamsNonStreaming[] = Array.from({ length: 6 }, (_, i) => ({
      model: MODEL,
      max_tokens: i % 3 === 1 ? 30 : 100,
      messages: [{ role: 'user', content: `a story, marker-${100 + i}` }],
      ...(i === 2 ? { system: 'Be vivid.' } : {}),
      ...(i === 4 ? { messages: [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'Hi there.' }, { role: 'user', content: [{ type: 'text', text: `more, marker-${100 + i}` }] }] } : {}),
    }));

    const seenR: SeenResponse[] = responsesBodies.map(() => ({ events: [], text: '', deltas: 0, final: null, error: null }));
    const seenM: SeenMessage[] = messagesBodies.map(() => ({ events: [], text: '', deltas: 0, final: null, error: null }));
    const runsR = responsesBodies.map(async (body, i) => {
      const s = seenR[i];
      try {
        if (i % 2 === 0) {
          // the SDK's stream helper (accumulates the Response from the events)
          const stream = openai.responses.stream(body);
          for await (const ev of stream) {
            s.events.push(ev);
            if (ev.type === 'response.output_text.delta') {
              s.text += ev.delta;
              s.deltas++;
            }
          }
          s.final = await stream.finalResponse();
        } else {
          const stream = await openai.responses.create(body);
          for await (const ev of stream) {
            s.events.push(ev);
            if (ev.type === 'response.output_text.delta') {
              s.text += ev.delta;
              s.deltas++;
            }
            if (ev.type === 'response.completed' || ev.type === 'response.incomplete') s.final = ev.response;
          }
        }
      } catch (e) {
        s.error = (e as Error).message;
      }
    });
    const runsM = messagesBodies.map(async (body, i) => {
      const s = seenM[i];
      try {
        const stream = anthropic.messages.stream(body);
        for await (const ev of stream) {
          s.events.push(ev);
          if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') {
            s.text += ev.delta.text;
            s.deltas++;
          }
        }
        s.final = await stream.finalMessage();
      } catch (e) {
        s.error = (e as Error).message;
      }
    });
    // every stream has delivered a few tokens on spot when its machine vanishes
    const all = [...seenR, ...seenM];
    await until(() => all.every((s) => s.deltas >= 3 || s.error !== null), 'every stream under way');
    expect(all.filter((s) => s.deltas >= TOKENS - 5)).toEqual([]);
    spot.child.kill('SIGKILL');
    await Promise.all([...runsR, ...runsM]);

    expect(all.map((s) => s.error)).toEqual(Array(12).fill(null));
    const refClient = new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x' });
    for (let i = 0; i < responsesBodies.length; i++) {
      const s = seenR[i];
      const { stream: _s, previous_response_id: prev, ...unary } = responsesBodies[i];
      // what one engine would have answered to the input the gateway gave it (a previous turn expanded)
      const engineInput = prev === undefined ? unary.input : [{ type: 'message', role: 'user', content: 'the first turn' }, ...turn1.output, ...(unary.input as unknown[])];
      const ref = await refClient.responses.create({ ...unary, input: engineInput as OpenAI.Responses.ResponseInput, model: UPSTREAM, store: false });
      expect({ i, text: s.text }).toEqual({ i, text: ref.output_text });
      const types = s.events.map((e) => e.type);
      const count = (type: string) => types.filter((t) => t === type).length;
      expect({ i, created: count('response.created'), inProgress: count('response.in_progress'), added: count('response.output_item.added'), parts: count('response.content_part.added'), terminal: count('response.completed') + count('response.incomplete') }).toEqual({ i, created: 1, inProgress: 1, added: 1, parts: 1, terminal: 1 });
      expect(s.events.map((e) => e.sequence_number)).toEqual(s.events.map((_, k) => k));
      const itemIds = new Set(s.events.flatMap((e) => ('item_id' in e ? [e.item_id] : 'item' in e ? [e.item.id] : [])));
      expect(itemIds.size).toBe(1);
      const final = s.final!;
      expect(outputText(final)).toBe(ref.output_text);
      expect(final.status).toBe(ref.status);
      expect(final.id).toBe((s.events[0] as OpenAI.Responses.ResponseCreatedEvent).response.id);
      expect(final.output[0].id).toBe([...itemIds][0]);
      expect(final.usage).toMatchObject({ input_tokens: ref.usage!.input_tokens, output_tokens: ref.usage!.output_tokens, total_tokens: ref.usage!.total_tokens });
      expect(final.previous_response_id).toBe(prev ?? null);
      // the stored Response is the one the client read, whole
      const terminal = s.events.find((e) => e.type === 'response.completed' || e.type === 'response.incomplete') as OpenAI.Responses.ResponseCompletedEvent;
      // (the SDK adds `output_text` to what it retrieves: a convenience of its own, not in the wire's object)
      const { output_text: _t, ...stored } = await openai.responses.retrieve(final.id);
      const { output_text: _u, ...read } = terminal.response;
      expect(JSON.parse(JSON.stringify(stored))).toEqual(JSON.parse(JSON.stringify(read)));

      const rows = await segmentsOf(ids.get(`marker-${i}`)!, 2);
      expect(rows.map((row) => [row.segment, row.tier, row.status])).toEqual([
        [0, 'spot', 200],
        [1, 'od', 200],
      ]);
      expect(rows[0].promptTokens).toBe(ref.usage!.input_tokens);
      expect(rows[1].promptTokens).toBe(0);
      expect(rows[0].completionTokens).toBeGreaterThanOrEqual(3);
      expect(rows[0].completionTokens + rows[1].completionTokens).toBe(ref.usage!.output_tokens);
      for (const row of rows) expect(Number(row.costNanos)).toBe(costNanos(row.tier === 'spot' ? SPOT_PRICE : OD_PRICE, { promptTokens: row.promptTokens, completionTokens: row.completionTokens, cachedTokens: row.cachedTokens }));
    }
    // each continuation asked on-demand's /v1/responses to continue an in_progress assistant message
    const continued = od.received.filter((r) => r.path === '/v1/responses').map((r) => r.body as { input: Array<{ role?: string; status?: string }>; store: boolean });
    expect(continued).toHaveLength(6);
    for (const c of continued) expect([c.input.at(-1)!.role, c.input.at(-1)!.status, c.store]).toEqual(['assistant', 'in_progress', false]);

    const refAnthropic = new Anthropic({ baseURL: reference.url, apiKey: 'x', maxRetries: 0 });
    for (let i = 0; i < messagesBodies.length; i++) {
      const s = seenM[i];
      const ref = await refAnthropic.messages.create({ ...messagesBodies[i], model: UPSTREAM });
      const refText = ref.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
      expect({ i, text: s.text }).toEqual({ i, text: refText });
      const types = s.events.map((e) => e.type);
      const count = (type: string) => types.filter((t) => t === type).length;
      expect({ i, start: count('message_start'), blocks: count('content_block_start'), stops: count('content_block_stop'), deltas: count('message_delta'), end: count('message_stop') }).toEqual({ i, start: 1, blocks: 1, stops: 1, deltas: 1, end: 1 });
      expect(new Set(s.events.flatMap((e) => ('index' in e ? [e.index] : [])))).toEqual(new Set([0]));
      expect(s.final!.content).toEqual([{ type: 'text', text: refText }]);
      expect(s.final!.stop_reason).toBe(ref.stop_reason);
      expect(s.final!.usage).toMatchObject({ input_tokens: ref.usage.input_tokens, output_tokens: ref.usage.output_tokens });

      const rows = await segmentsOf(ids.get(`marker-${100 + i}`)!, 2);
      expect(rows.map((row) => [row.segment, row.tier, row.status])).toEqual([
        [0, 'spot', 200],
        [1, 'od', 200],
      ]);
      expect(rows[0].promptTokens).toBe(ref.usage.input_tokens);
      expect(rows[1].promptTokens).toBe(0);
      expect(rows[0].completionTokens + rows[1].completionTokens).toBe(ref.usage.output_tokens);
      for (const row of rows) expect(Number(row.costNanos)).toBe(costNanos(row.tier === 'spot' ? SPOT_PRICE : OD_PRICE, { promptTokens: row.promptTokens, completionTokens: row.completionTokens, cachedTokens: row.cachedTokens }));
    }
    // each Messages continuation went to on-demand's chat endpoint, the delivered text continued
    const chats = od.received.filter((r) => r.path === '/v1/chat/completions').map((r) => r.body as { messages: Array<{ role: string }>; continue_final_message: boolean; add_generation_prompt: boolean });
    expect(chats).toHaveLength(6);
    for (const c of chats) expect([c.messages.at(-1)!.role, c.continue_final_message, c.add_generation_prompt]).toEqual(['assistant', true, false]);
    expect(od.received.filter((r) => r.path === '/v1/messages')).toHaveLength(0);

    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_stream_continuations_total\{tier="spot",outcome="continued"\} 12\b/);
  });
});

/** A tool call or reasoning under way is not continued: the stream ends with the protocol's error event, as before. */
describe('gateway: Responses and Messages streams that cannot be continued honestly end as before', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  let spot: SimServer;
  let od: SimServer;
  let gw: GatewayProcess;
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    spot = await startSim({ models: [UPSTREAM], itlMs: 5, outputTokens: 12 });
    od = await startSim({ models: [UPSTREAM], itlMs: 5, outputTokens: 12 });
    const { key } = await seedOrgKey(prisma, { slugPrefix: 'contp2' });
    gw = await spawnGateway({ tiersYaml: tiers(spot.url, od.url), env: { USAGE_FLUSH_MS: '20' } });
    openai = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.stop();
    await Promise.all([spot, od].map((s) => s?.close().catch(() => undefined)));
    await prisma.$disconnect();
  });

  it('a function call (Responses) or tool_use (Messages) under way ends with an error event; a text stream with one is continued', async () => {
    const fail = (path: string) => spot.faults.add({ kind: 'error-after', afterTokens: 3, status: 500, message: 'engine exploded', path });
    fail('/v1/responses');
    const tools = [{ type: 'function' as const, name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } }, strict: false }];
    const call = await (async () => {
      try {
        for await (const _ev of openai.responses.stream({ model: MODEL, input: 'look it up', tools, tool_choice: 'required' })) {
          // read to the end
        }
        return null;
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(call).toMatch(/engine exploded/);

    fail('/v1/messages');
    const toolUse = await (async () => {
      try {
        await anthropic.messages
          .stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'look it up' }], tools: [{ name: 'lookup', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }], tool_choice: { type: 'any' } })
          .finalMessage();
        return null;
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(toolUse).toMatch(/engine exploded/);
    expect(od.received).toHaveLength(0);

    // the same error frame under a text stream is held back and the stream continued on the other tier
    fail('/v1/messages');
    const msg = await anthropic.messages.stream({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'words please' }] }).finalMessage();
    expect(msg.content[0]).toMatchObject({ type: 'text' });
    expect(msg.usage.output_tokens).toBe(12);
    expect(od.received.map((r) => r.path)).toEqual(['/v1/chat/completions']);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_stream_continuations_total\{tier="spot",outcome="unsupported"\} 2\b/);
  });
});
