import { splicedUsage } from './openai-continuation';
import type { CheckedRequest } from './openai-request';
import type { RelayWrite, Splice, StreamContinuation, StreamRelay } from './protocol-adapter';
import { completeResponse, type ResponseEcho } from './responses-object';
import { responsesErrorEvent, usageFromResponse } from './responses-sse-relay';
import { ResponsesTranscript } from './responses-transcript';
import { eventEnd } from './sse-frames';
import { SseRelayBase } from './sse-relay-base';

const EVENT = 'event: ';
const DATA = 'data: ';
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** What the continuation needs of a checked Responses request (see `ResponsesRequest`). */
export interface ContinuedResponsesRequest extends CheckedRequest {
  /** The input the engine got (a previous turn already expanded by the adapter's prepare). */
  readonly engineInput: unknown[];
}

type Payload = Record<string, unknown>;

function event(type: string, payload: Payload): Buffer {
  return Buffer.from(`${EVENT}${type}\n${DATA}${JSON.stringify(payload)}\n\n`);
}

/** vLLM's ResponseUsage for what the client of a spliced stream received: the prompt once, every output token. */
function usageObject(u: { prompt: number; completion: number }, engine: Payload | null): Payload {
  const inDetails = engine?.input_tokens_details;
  const outDetails = engine?.output_tokens_details;
  return {
    input_tokens: u.prompt,
    // the cached share of a prompt first served by a lost engine is not known (nor billed as cached)
    input_tokens_details: { ...(inDetails !== null && typeof inDetails === 'object' ? inDetails : {}), cached_tokens: 0 },
    output_tokens: u.completion,
    output_tokens_details: outDetails !== null && typeof outDetails === 'object' ? outDetails : { reasoning_tokens: 0 },
    total_tokens: u.prompt + u.completion,
  };
}

/** The output_text part of a message item with the whole text (its other fields as the engine wrote them). */
function wholePart(part: unknown, text: string): Payload {
  const p = part !== null && typeof part === 'object' ? (part as Payload) : {};
  return { annotations: [], ...p, type: 'output_text', text };
}

/**
 * The relay of a continuation's Responses stream, spliced into the client's: every event is parsed and written
 * again as the client's stream goes on. The events that open what the client already has (`response.created`,
 * `response.in_progress`, the message item's `output_item.added` and `content_part.added`) are dropped; every
 * other event carries the client's item id and the next sequence number; the closing events of the item
 * (`output_text.done`, `content_part.done`, `output_item.done`) and the terminal Response carry the whole text,
 * and the Response the first segment's id and creation time, with usage that counts the original input once and
 * every output token the client received. The text is added to the transcript (a further continuation starts
 * after it). Continuations are rare: parsing here costs the hot path nothing.
 */
export class ResponsesContinuationRelay extends SseRelayBase {
  /** The terminal Response as the client received it (what a stored Response keeps), or null so far. */
  final: Record<string, unknown> | null = null;
  /** The sequence number of the last event written (for an error event of ours). */
  lastSequence: number;
  /** The continuation engine's id for the message item (its events are renamed to the client's). */
  private engineItemId: string | null = null;

  constructor(
    private readonly t: ResponsesTranscript,
    private readonly splice: Splice,
    private readonly complete: (response: Payload) => void,
  ) {
    super();
    this.lastSequence = t.sequence;
  }

  push(chunk: Buffer, out: RelayWrite): void {
    const buf = this.joined(chunk);
    let start = 0;
    let sep: number;
    while ((sep = eventEnd(buf, start)) !== -1) {
      this.event(buf.toString('utf8', start, sep), this.held === null ? out : this.hold);
      if (this.held === null) this.t.sequence = this.lastSequence;
      start = sep + 2;
    }
    this.keepRest(buf, start);
  }

  private event(text: string, write: RelayWrite): void {
    let type: string | null = null;
    let data = text;
    if (text.startsWith(EVENT)) {
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      type = text.slice(EVENT.length, nl);
      data = text.slice(nl + 1);
    }
    if (!data.startsWith(DATA)) {
      if (type === null) write(Buffer.from(`${text}\n\n`)); // a comment
      return;
    }
    let payload: Payload | null = null;
    try {
      const v: unknown = JSON.parse(data.slice(DATA.length));
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) payload = v as Payload;
    } catch {
      // not JSON: an error event below keeps the raw text as its message; anything else is dropped
    }
    if (type === 'error' || (type === null && payload !== null && (payload.error !== undefined || payload.object === 'error'))) {
      this.error(payload, data.slice(DATA.length), write);
      return;
    }
    if (this.held !== null || payload === null || type === null) return; // nothing after a held error is delivered
    if (this.opening(type, payload)) return;
    const t = this.t;
    if (payload.item_id === this.engineItemId && this.engineItemId !== null) payload.item_id = t.itemId;
    switch (type) {
      case 'response.output_text.delta':
        this.contentEvents++;
        // the message item's text (a later item's, after which the stream is never continued, is not its)
        if (payload.output_index === 0 && typeof payload.delta === 'string') t.add(payload.delta);
        break;
      case 'response.function_call_arguments.delta':
      case 'response.reasoning_text.delta':
        this.contentEvents++;
        t.honest = false;
        break;
      case 'response.output_text.done':
        if (payload.output_index === 0) {
          payload.text = t.text;
          t.textDone = true;
          t.finished = true;
        }
        break;
      case 'response.content_part.done':
        if (payload.output_index === 0) {
          payload.part = wholePart(payload.part, t.text);
          t.partDone = true;
        }
        break;
      case 'response.output_item.done':
        if (payload.output_index === 0) {
          payload.item = this.wholeItem(payload.item);
          t.itemDone = true;
        }
        break;
      default:
        if (TERMINAL.has(type)) this.terminal(type, payload);
    }
    payload.sequence_number = ++this.lastSequence;
    write(event(type, payload));
  }

  /**
   * The events that open what the client already has are dropped (true); one it has not read yet (the engine was
   * lost before it) goes on, as the client's.
   */
  private opening(type: string, payload: Payload): boolean {
    const t = this.t;
    switch (type) {
      case 'response.created':
      case 'response.queued':
        if (t.response !== null) return true;
        this.stamp(payload.response);
        if (type === 'response.created') t.response = payload.response as Payload;
        return false;
      case 'response.in_progress':
        if (t.inProgress) return true;
        this.stamp(payload.response);
        t.inProgress = true;
        return false;
      case 'response.output_item.added': {
        if (payload.output_index !== 0) {
          t.honest = false; // a second item (a function call after the text): relayed, never continued
          return false;
        }
        const item = payload.item as { id?: unknown } | null;
        this.engineItemId = typeof item?.id === 'string' ? item.id : null;
        if (t.itemId !== null) return true;
        t.itemAdded(item, 0);
        return false;
      }
      case 'response.content_part.added':
        if (payload.output_index !== 0) return false;
        if (t.partAdded) return true;
        t.partOpened(payload.part, payload.content_index);
        payload.item_id = t.itemId;
        return false;
      default:
        return false;
    }
  }

  /** A Response object of the continuation, as the client's: the first segment's id and creation time, completed. */
  private stamp(response: unknown): void {
    if (response === null || typeof response !== 'object') return;
    const r = response as Payload;
    const first = this.t.response;
    if (first !== null) {
      r.id = first.id;
      r.created_at = first.created_at;
    }
    this.complete(r);
  }

  /** The message item with the client's id and the whole text. */
  private wholeItem(item: unknown): Payload {
    const it = item !== null && typeof item === 'object' ? (item as Payload) : {};
    const content = Array.isArray(it.content) ? (it.content as unknown[]) : [];
    const text = this.t.text;
    return { ...it, id: this.t.itemId, content: content.length === 0 ? [wholePart(null, text)] : [wholePart(content[0], text), ...content.slice(1)] };
  }

  /** The terminal Response: the client's id, the message item whole, usage spliced; it is what the client keeps. */
  private terminal(type: string, payload: Payload): void {
    this.sawDone = true;
    if (type === 'response.failed') this.errorFrameStatus = 500;
    const r = payload.response;
    if (r === null || typeof r !== 'object') return;
    const response = r as Payload;
    const engineUsage = usageFromResponse(response.usage);
    if (engineUsage !== null) {
      this.usage = engineUsage;
      response.usage = usageObject(splicedUsage(engineUsage, this.splice), response.usage as Payload);
    }
    if (Array.isArray(response.output)) {
      const output = response.output as unknown[];
      const first = output[0] as { type?: unknown } | undefined;
      if (first?.type === 'message') output[0] = this.wholeItem(first);
      else if (this.t.itemId !== null) output.unshift(this.wholeItem(null));
    }
    this.stamp(response);
    this.final = response;
  }

  private error(payload: Payload | null, raw: string, write: RelayWrite): void {
    const inner = (payload?.error !== null && typeof payload?.error === 'object' ? payload.error : payload) as Payload | null;
    let status = 500;
    const rawCode = inner?.code;
    if (typeof rawCode === 'number' && rawCode >= 400 && rawCode < 600) status = rawCode;
    const named = typeof rawCode === 'string' && rawCode.includes('_') ? rawCode : null;
    const code = named ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    const message = typeof inner?.message === 'string' ? inner.message : raw;
    const param = typeof inner?.param === 'string' ? inner.param : null;
    this.sawDone = true;
    this.errorFrames++;
    this.errorFrameStatus = status;
    const frame = responsesErrorEvent(code, message, param, this.lastSequence + 1);
    if (this.t.honest && status >= 500 && this.held === null) {
      // the stream may go on on yet another engine: held for the exchange's decision
      this.held = [];
      this.hold(frame);
      return;
    }
    this.lastSequence++;
    write(frame);
  }
}

/** The item, the part and the terminal events the gateway writes when it ends a continued stream itself. */
function closingEvents(t: ResponsesTranscript, req: ContinuedResponsesRequest, usage: { prompt: number; completion: number }, echo: ResponseEcho): Buffer | null {
  const first = t.response;
  const itemId = t.itemId;
  if (first === null || itemId === null) return null;
  const text = t.text;
  const cap = positiveInt(req.body.max_output_tokens);
  const truncated = cap !== null && t.tokens >= cap;
  let seq = t.sequence;
  const part = { annotations: [], text, type: 'output_text', logprobs: null };
  const item = { id: itemId, content: [part], role: 'assistant', status: 'completed', type: 'message' };
  const out: Buffer[] = [];
  if (!t.textDone) out.push(event('response.output_text.done', { content_index: 0, item_id: itemId, logprobs: [], output_index: 0, text, sequence_number: ++seq, type: 'response.output_text.done' }));
  if (!t.partDone) out.push(event('response.content_part.done', { content_index: 0, item_id: itemId, output_index: 0, part, sequence_number: ++seq, type: 'response.content_part.done' }));
  if (!t.itemDone) out.push(event('response.output_item.done', { item, output_index: 0, sequence_number: ++seq, type: 'response.output_item.done' }));
  const { completed_at: _pending, ...head } = first; // set again by completeResponse, now that it ends
  const response: Payload = { ...head, incomplete_details: truncated ? { reason: 'max_output_tokens' } : null, output: [item], status: truncated ? 'incomplete' : 'completed', usage: usageObject(usage, null) };
  completeResponse(response, echo);
  const type = truncated ? 'response.incomplete' : 'response.completed';
  out.push(event(type, { response, sequence_number: ++seq, type }));
  t.sequence = seq;
  t.final = response;
  return Buffer.concat(out);
}

function positiveInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * Responses streams continued on another engine, through vLLM's own Responses endpoint: the engine input the
 * gateway built (a previous turn expanded) followed by the delivered text as an assistant message item whose
 * `status` is `in_progress`, which vLLM takes as a partial message to continue (its chat template renders it open,
 * as `continue_final_message` does for chat: vllm-project/vllm#32100), `max_output_tokens` reduced by what was
 * delivered. Only a stream of one message item is continued (see {@link ResponsesTranscript}); a stream that asked
 * for logprobs is not.
 */
export class ResponsesStreamContinuation implements StreamContinuation {
  constructor(private readonly echo: (req: CheckedRequest) => ResponseEcho) {}

  transcript(req: CheckedRequest): ResponsesTranscript | null {
    const b = req.body;
    if (typeof b.top_logprobs === 'number' && b.top_logprobs > 0) return null;
    if (Array.isArray(b.include) && b.include.includes('message.output_text.logprobs')) return null;
    return new ResponsesTranscript();
  }

  body(checked: CheckedRequest, upstreamModel: string, t: ResponsesTranscript): string | null {
    const req = checked as ContinuedResponsesRequest;
    const { previous_response_id: _prev, ...rest } = req.body;
    const out: Payload = { ...rest, model: upstreamModel, store: false };
    const cap = positiveInt(req.body.max_output_tokens);
    if (cap !== null) {
      if (cap - t.tokens <= 0) return null;
      out.max_output_tokens = cap - t.tokens;
    }
    const text = t.text;
    out.input =
      text === ''
        ? req.engineInput
        : [...req.engineInput, { type: 'message', id: t.itemId, role: 'assistant', status: 'in_progress', content: [{ type: 'output_text', text, annotations: [] }] }];
    return JSON.stringify(out);
  }

  relay(req: CheckedRequest, t: ResponsesTranscript, splice: Splice): StreamRelay | null {
    if (t.response === null) return null;
    const echo = this.echo(req);
    return new ResponsesContinuationRelay(t, splice, (r) => completeResponse(r, echo));
  }

  closing(req: CheckedRequest, t: ResponsesTranscript, usage: { prompt: number; completion: number }): Buffer | null {
    return closingEvents(t, req as ContinuedResponsesRequest, usage, this.echo(req));
  }
}
