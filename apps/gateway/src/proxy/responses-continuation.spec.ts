import type { CheckedRequest } from './openai-request';
import type { StreamRelay } from './protocol-adapter';
import { type ContinuedResponsesRequest, ResponsesStreamContinuation } from './responses-continuation';
import { completeResponse, type ResponseEcho } from './responses-object';
import { ResponsesSseRelay } from './responses-sse-relay';
import type { ResponsesTranscript } from './responses-transcript';
import STREAMS from './continuation-streams.fixtures.json';
import RECORDED from './responses-sse-relay.fixtures.json';

// Recorded from vllm-sim's /v1/responses (vLLM's framing): an uninterrupted stream of 6 tokens; the same request on
// an engine that died after 3 (one delta edited to carry escaped quotes); the continuation on another engine, asked
// with the delivered text as an in_progress assistant message and max_output_tokens 3.
const { responsesWhole: WHOLE, responsesFirst: FIRST, responsesSecond: SECOND } = STREAMS;
const HALF = 'event: response.output_text.delta\ndata: {"content_index":0,"del'; // cut when the engine went

type Ev = { type: string; sequence_number: number; item_id?: string; output_index?: number; delta?: string; text?: string; part?: { text: string }; item?: { id: string; content: Array<{ text: string }> }; response?: Record<string, any> };

const input = [{ type: 'message', role: 'user', content: 'tell me a story' }];
const echo = (req: CheckedRequest): ResponseEcho => ({ model: req.model, previousResponseId: null, store: true, body: req.body });

function req(body: Record<string, unknown> = {}): ContinuedResponsesRequest {
  const b = { model: 'm', input, max_output_tokens: 6, stream: true, ...body };
  return { body: b, model: 'm', stream: true, clientWantsUsage: false, choices: 1, promptTokensEstimate: 10, completionTokensCap: 6, engineInput: input };
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

const textOf = (evs: Ev[]) => evs.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');

describe('Responses stream continuation: splicing a continuation into the client stream (recorded byte streams)', () => {
  const cont = new ResponsesStreamContinuation(echo);
  const complete = (r: CheckedRequest) => (response: Record<string, unknown>) => completeResponse(response, echo(r));
  const whole = events(WHOLE);
  const wholeText = textOf(whole).replace(' ipsum', ' ipsum "q"');

  it.each([1, 2, 3, 5, 7, 13, 64, 333, 100_000])('reads of %i bytes: one response id, one of each opening event, the item ids and sequence numbers of one stream, the text whole', (size) => {
    const r = req();
    const t = cont.transcript(r)!;
    const first = new ResponsesSseRelay(complete(r), t);
    const out1 = feed(first, FIRST + HALF, size, false);
    expect(first.sawDone).toBe(false);
    const firstEvents = events(FIRST);
    const itemId = firstEvents[2].item!.id;
    expect(t).toMatchObject({ text: ' lorem ipsum "q" dolor', tokens: 3, honest: true, finished: false, itemId, sequence: 6, partAdded: true, inProgress: true, textDone: false });
    expect(t.response!.id).toBe(firstEvents[0].response!.id);

    // what the next engine is asked: the engine input, the delivered text as an in_progress assistant message, the cap reduced
    expect(JSON.parse(cont.body(r, 'other/m', t)!)).toEqual({
      model: 'other/m',
      input: [...input, { type: 'message', id: itemId, role: 'assistant', status: 'in_progress', content: [{ type: 'output_text', text: ' lorem ipsum "q" dolor', annotations: [] }] }],
      max_output_tokens: 3,
      stream: true,
      store: false,
    });
    const second = cont.relay(r, t, { priorTokens: 3, prompt: null })!;
    const out2 = feed(second, SECOND, size);
    const all = events(out1 + out2);

    // the shape of one uninterrupted stream: the same events in the same order, numbered 0.. without a gap
    expect(all.map((e) => e.type)).toEqual(whole.map((e) => e.type));
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(new Set(all.filter((e) => e.item_id !== undefined).map((e) => e.item_id))).toEqual(new Set([itemId]));
    expect(new Set(all.filter((e) => e.output_index !== undefined).map((e) => e.output_index))).toEqual(new Set([0]));
    expect(new Set(all.filter((e) => e.response !== undefined).map((e) => e.response!.id))).toEqual(new Set([firstEvents[0].response!.id]));
    expect(textOf(all)).toBe(wholeText);
    const byType = (type: string) => all.find((e) => e.type === type)!;
    expect(byType('response.output_text.done').text).toBe(wholeText);
    expect(byType('response.content_part.done').part!.text).toBe(wholeText);
    expect(byType('response.output_item.done').item).toMatchObject({ id: itemId, content: [{ text: wholeText }], status: 'completed' });

    // one terminal Response: the first segment's id and created_at, the whole text, usage counting the input once
    const done = byType('response.completed').response!;
    const wholeDone = whole.at(-1)!.response!;
    expect(done).toMatchObject({ id: t.response!.id, created_at: firstEvents[0].response!.created_at, model: 'm', status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, store: true });
    expect(done.output).toEqual([{ ...wholeDone.output[0], id: itemId, content: [{ ...wholeDone.output[0].content[0], text: wholeText }] }]);
    expect(done.usage).toEqual(wholeDone.usage);
    expect(done.completed_at).toBeNull(); // OpenAI sets it once completed, and this one is incomplete
    // what the client read is what a stored Response keeps
    expect(second.final).toEqual(done);
    // billing: the engine's own report (the exchange splits it by segment)
    expect(second.usage).toEqual({ prompt: 14, completion: 3, cached: 0 });
    expect(second.sawDone).toBe(true);
    expect(second.contentEvents).toBe(3);
    expect(t).toMatchObject({ text: wholeText, tokens: 6, finished: true, sequence: whole.length - 1 });
  });

  it('a continuation lost in turn is continued again: still one stream (the sequence numbers and ids carry on)', () => {
    const r = req({ max_output_tokens: 20 });
    const t = cont.transcript(r)!;
    const out1 = feed(new ResponsesSseRelay(complete(r), t), FIRST, 64, false);
    const cutAt = SECOND.indexOf('event: response.output_text.delta', SECOND.indexOf('event: response.output_text.delta') + 1);
    const second = cont.relay(r, t, { priorTokens: 3, prompt: null })!;
    const out2 = feed(second, SECOND.slice(0, cutAt) + HALF, 64, false);
    expect(second.sawDone).toBe(false);
    expect(t).toMatchObject({ text: ' lorem ipsum "q" dolor sit', tokens: 4, sequence: 7 });
    expect(JSON.parse(cont.body(r, 'm', t)!)).toMatchObject({ max_output_tokens: 16 });
    // (the third engine's recording is the second's: the splice, not the words, is under test here)
    const third = cont.relay(r, t, { priorTokens: 4, prompt: 11 })!;
    const all = events(out1 + out2 + feed(third, SECOND, 64));
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(all.filter((e) => e.type === 'response.created' || e.type === 'response.output_item.added' || e.type === 'response.completed')).toHaveLength(3);
    expect(new Set(all.filter((e) => e.item_id !== undefined).map((e) => e.item_id))).toEqual(new Set([t.itemId]));
    expect(all.at(-1)!.response!.usage).toMatchObject({ input_tokens: 11, output_tokens: 7 });
    expect(all.at(-1)!.response!.output[0].content[0].text).toBe(' lorem ipsum "q" dolor sit sit amet consectetur');
  });

  it('an engine lost before the item was added: the continuation opens it, as the client\'s', () => {
    const r = req();
    const t = cont.transcript(r)!;
    const head = FIRST.slice(0, FIRST.indexOf('event: response.output_item.added'));
    const out1 = feed(new ResponsesSseRelay(complete(r), t), head, 50, false);
    expect(t).toMatchObject({ itemId: null, text: '', sequence: 1 });
    // nothing delivered: the engine input as it was (no partial message), the cap whole
    expect(JSON.parse(cont.body(r, 'm', t)!)).toMatchObject({ input, max_output_tokens: 6 });
    const out2 = feed(cont.relay(r, t, { priorTokens: 0, prompt: null })!, WHOLE, 50);
    const all = events(out1 + out2);
    expect(all.map((e) => e.type)).toEqual(whole.map((e) => e.type));
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(new Set(all.filter((e) => e.item_id !== undefined).map((e) => e.item_id))).toEqual(new Set([whole[2].item!.id]));
    expect(all.at(-1)!.response!.id).toBe(events(FIRST)[0].response!.id);
  });

  it('nothing left to generate: max_output_tokens delivered, or the text done when the engine went: the gateway writes the end', () => {
    const r = req({ max_output_tokens: 3 });
    const t = cont.transcript(r)!;
    feed(new ResponsesSseRelay(complete(r), t), FIRST, 1000, false);
    expect(cont.body(r, 'm', t)).toBeNull();
    const end = events(cont.closing(r, t, { prompt: 11, completion: 3 })!.toString());
    expect(end.map((e) => [e.type, e.sequence_number])).toEqual([
      ['response.output_text.done', 7],
      ['response.content_part.done', 8],
      ['response.output_item.done', 9],
      ['response.incomplete', 10],
    ]);
    const response = end.at(-1)!.response!;
    expect(response).toMatchObject({ id: t.response!.id, status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, model: 'm', usage: { input_tokens: 11, output_tokens: 3, total_tokens: 14 } });
    expect(response.output[0]).toMatchObject({ id: t.itemId, type: 'message', content: [{ type: 'output_text', text: ' lorem ipsum "q" dolor' }] });
    expect(t.final).toEqual(response); // what the keeper stores

    // the text done and its part closed, then the engine went: only the item's end and the Response are missing
    const r2 = req();
    const t2 = cont.transcript(r2)!;
    const upToPart = WHOLE.slice(0, WHOLE.indexOf('event: response.output_item.done'));
    feed(new ResponsesSseRelay(complete(r2), t2), upToPart, 1000, false);
    expect(t2).toMatchObject({ finished: true, textDone: true, partDone: true, itemDone: false });
    const end2 = events(cont.closing(r2, t2, { prompt: 11, completion: 6 })!.toString());
    expect(end2.map((e) => e.type)).toEqual(['response.output_item.done', 'response.incomplete']);
    expect(end2.map((e) => e.sequence_number)).toEqual([12, 13]);
  });

  it('an engine 5xx error event is held back while the stream may be continued, and passed on when it is not', () => {
    const { errorMidway: ERROR_MIDWAY } = RECORDED;
    const r = req({ max_output_tokens: undefined });
    const t = cont.transcript(r)!;
    const relay = new ResponsesSseRelay(complete(r), t);
    const out = feed(relay, ERROR_MIDWAY, 9);
    expect(out).not.toContain('event: error');
    expect(relay.held).not.toBeNull();
    expect(relay.sawDone).toBe(true);
    const parts: Buffer[] = [];
    relay.releaseHeld((b) => parts.push(b));
    expect(Buffer.concat(parts).toString()).toMatch(/^event: error\ndata: \{"type":"error","code":"server_error"/);
    // a relay that keeps no transcript passes the error on at once
    const plain = new ResponsesSseRelay(complete(r), null);
    expect(feed(plain, ERROR_MIDWAY, 9)).toContain('event: error');
    expect(plain.held).toBeNull();
  });

  it('streams that cannot be continued honestly: a function call, reasoning, a second item, logprobs', () => {
    const r = req({ tools: [{ type: 'function', name: 'f', parameters: {} }] });
    const call = cont.transcript(r)!;
    const calling = RECORDED.functionCall;
    feed(new ResponsesSseRelay(complete(r), call), calling.slice(0, calling.indexOf('event: response.function_call_arguments.done')), 1000, false);
    expect(call.honest).toBe(false);
    const reasoning = cont.transcript(r)!;
    const reasoningDelta = 'event: response.reasoning_text.delta\ndata: {"content_index":0,"delta":"hmm","item_id":"r","output_index":0,"sequence_number":3,"type":"response.reasoning_text.delta"}\n\n';
    feed(new ResponsesSseRelay(complete(r), reasoning), FIRST.slice(0, FIRST.indexOf('event: response.output_item.added')) + reasoningDelta, 1000, false);
    expect(reasoning.honest).toBe(false);
    const second = cont.transcript(r)!;
    const secondItem = 'event: response.output_item.added\ndata: {"item":{"id":"fc","type":"function_call","arguments":"","name":"f","call_id":"c","status":"in_progress"},"output_index":1,"sequence_number":7,"type":"response.output_item.added"}\n\n';
    feed(new ResponsesSseRelay(complete(r), second), FIRST + secondItem, 1000, false);
    expect(second.honest).toBe(false);
    expect(cont.transcript(req({ top_logprobs: 2 }))).toBeNull();
    expect(cont.transcript(req({ include: ['message.output_text.logprobs'] }))).toBeNull();
    expect((cont.transcript(req()) as ResponsesTranscript).honest).toBe(true);
  });

  it('a previous turn already expanded: the continuation carries the engine input, not the client\'s own', () => {
    const earlier = [{ type: 'message', role: 'user', content: 'hi' }, { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'hello' }] }];
    const r: ContinuedResponsesRequest = { ...req({ previous_response_id: 'resp_prev' }), engineInput: [...earlier, ...input] };
    const t = cont.transcript(r)!;
    feed(new ResponsesSseRelay(complete(r), t), FIRST, 1000, false);
    const body = JSON.parse(cont.body(r, 'm', t)!) as { input: unknown[]; previous_response_id?: string };
    expect(body.previous_response_id).toBeUndefined();
    expect(body.input.slice(0, 3)).toEqual([...earlier, ...input]);
    expect(body.input).toHaveLength(4);
  });
});
