import type { RelayWrite } from './protocol-adapter';
import type { ResponsesTranscript } from './responses-transcript';
import { SseRelayBase } from './sse-relay-base';
import { eventEnd } from './sse-frames';
import type { TokenUsage } from './token-usage';

const EVENT = Buffer.from('event: ');
const DATA = Buffer.from('data: ');
const TEXT_DELTA = Buffer.from('response.output_text.delta');
const ARGS_DELTA = Buffer.from('response.function_call_arguments.delta');
const REASONING_DELTA = Buffer.from('response.reasoning_text.delta');
const ERROR = Buffer.from('error');
const TERMINAL = ['response.completed', 'response.incomplete', 'response.failed'].map((t) => Buffer.from(t));
/** The events before the end that carry the Response object (completed for the client when the relay has a completer). */
const LIFECYCLE = ['response.created', 'response.in_progress', 'response.queued'].map((t) => Buffer.from(t));
const CREATED = LIFECYCLE[0];
const IN_PROGRESS = LIFECYCLE[1];
/** The events around the message item's text, read only by a relay that keeps a transcript (each once a stream). */
const ITEM_ADDED = Buffer.from('response.output_item.added');
const PART_ADDED = Buffer.from('response.content_part.added');
const TEXT_DONE = Buffer.from('response.output_text.done');
const PART_DONE = Buffer.from('response.content_part.done');
const ITEM_DONE = Buffer.from('response.output_item.done');

/** The `usage` of a Response object (`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`), or null. */
export function usageFromResponse(u: unknown): TokenUsage | null {
  if (u === null || typeof u !== 'object') return null;
  const o = u as Record<string, unknown>;
  if (typeof o.input_tokens !== 'number') return null;
  const details = o.input_tokens_details as Record<string, unknown> | null | undefined;
  return { prompt: count(o.input_tokens), completion: count(o.output_tokens), cached: count(details?.cached_tokens) };
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/** Whether `buf[at, at + name.length)` is `name` followed by the end of the line. */
function isName(buf: Buffer, at: number, lineEnd: number, name: Buffer): boolean {
  return lineEnd - at === name.length && buf.compare(name, 0, name.length, at, lineEnd) === 0;
}

/**
 * The relay of one engine attempt's Responses stream (`event: <type>\ndata: <json>\n\n`, no `[DONE]`): events
 * pass through untouched, except error events, rewritten into OpenAI's shape (`{"type":"error","code","message",
 * "param","sequence_number"}`). The stream ends cleanly with `response.completed`, `response.incomplete` or
 * `response.failed` (whose Response carries the usage and is what a stored Response keeps) or with an error
 * event (OpenAI ends a stream there). Content events: output text, function-call argument and reasoning deltas
 * (one token each), what a cut stream is billed from. Only the terminal and error events are parsed (and, with a
 * transcript, the few events around the message item, once each a stream; a delta's text is copied, not parsed).
 * A stream that may be continued holds back an engine's 5xx error event for the exchange to decide on.
 */
export class ResponsesSseRelay extends SseRelayBase {
  /** The Response object of the terminal event, or null so far. */
  final: Record<string, unknown> | null = null;
  /** The sequence_number of the last event (engines number their events from 0): for an error event we write. */
  lastSequence = -1;

  /**
   * @param complete completes the Response object of the events that carry one (see `completeResponse`): those
   *   events are re-serialised with it; without it every event but the errors passes byte for byte.
   */
  constructor(
    private readonly complete: ((response: Record<string, unknown>) => void) | null = null,
    /** Keeps what the client received of a stream that may be continued (null: one that never is). */
    private readonly transcript: ResponsesTranscript | null = null,
  ) {
    super();
  }

  push(chunk: Buffer, out: RelayWrite): void {
    const buf = this.joined(chunk);
    // after a held error event, nothing more reaches the client unless it is released
    let write = this.held === null ? out : this.hold;
    const t = this.transcript;
    let flushFrom = 0;
    let start = 0;
    let sep: number;
    while ((sep = eventEnd(buf, start)) !== -1) {
      const next = sep + 2;
      if (this.event(buf, start, sep, flushFrom, write)) flushFrom = next;
      if (this.held !== null) write = this.hold;
      else if (t !== null) t.sequence = this.lastSequence;
      start = next;
    }
    if (start > flushFrom) write(buf.subarray(flushFrom, start));
    this.keepRest(buf, start);
  }


  /** Handles the event `buf[start, end)`; true when it was replaced (written here, the original skipped). */
  private event(buf: Buffer, start: number, end: number, flushFrom: number, write: RelayWrite): boolean {
    let type: Buffer | null = null;
    let dataAt = -1;
    if (buf.compare(EVENT, 0, EVENT.length, start, start + EVENT.length) === 0) {
      this.lastSequence++;
      const nameAt = start + EVENT.length;
      const lineEnd = buf.indexOf(10, nameAt);
      if (lineEnd < 0 || lineEnd > end) return false;
      const tr = this.held === null ? this.transcript : null;
      if (isName(buf, nameAt, lineEnd, TEXT_DELTA)) {
        this.contentEvents++;
        if (tr !== null) tr.take(buf, start, end);
        return false;
      }
      if (isName(buf, nameAt, lineEnd, ARGS_DELTA) || isName(buf, nameAt, lineEnd, REASONING_DELTA)) {
        this.contentEvents++;
        if (tr !== null) tr.honest = false; // a function call's arguments or reasoning: not continued
        return false;
      }
      for (const t of TERMINAL) if (isName(buf, nameAt, lineEnd, t)) type = t;
      if (type === null && isName(buf, nameAt, lineEnd, ERROR)) type = ERROR;
      if (type === null && this.complete !== null) for (const t of LIFECYCLE) if (isName(buf, nameAt, lineEnd, t)) type = t;
      if (type === null) {
        if (tr !== null) this.itemEvent(tr, buf, nameAt, lineEnd, end);
        return false;
      }
      dataAt = lineEnd + 1;
    } else if (buf.compare(DATA, 0, DATA.length, start, start + DATA.length) === 0) {
      // an event with no `event:` line: only an engine's error (vLLM's generic `data: {"error": ...}`) matters
      const e = buf.indexOf('"error"', start);
      if (e < 0 || e > end) return false;
      type = ERROR;
      dataAt = start;
      this.lastSequence++;
    } else return false;
    if (buf.compare(DATA, 0, DATA.length, dataAt, dataAt + DATA.length) !== 0) return false;
    let payload: Record<string, unknown> | null = null;
    try {
      const v: unknown = JSON.parse(buf.toString('utf8', dataAt + DATA.length, end));
      if (v !== null && typeof v === 'object') payload = v as Record<string, unknown>;
    } catch {
      // not JSON: passed on as it came (an error event is still rewritten, with the raw text as its message)
    }
    if (typeof payload?.sequence_number === 'number') this.lastSequence = payload.sequence_number;
    if (type !== ERROR) {
      const terminal = TERMINAL.some((t) => t === type);
      const response = payload?.response;
      const isObject = response !== null && typeof response === 'object';
      if (terminal) {
        this.sawDone = true;
        if (isObject) {
          this.final = response as Record<string, unknown>;
          const usage = usageFromResponse(this.final.usage);
          if (usage !== null) this.usage = usage;
        }
        if (type === TERMINAL[2]) this.errorFrameStatus = 500;
      }
      if (this.complete === null || !isObject) return false;
      this.complete(response as Record<string, unknown>);
      const tr = this.held === null ? this.transcript : null;
      if (tr !== null && type === CREATED) tr.response = response as Record<string, unknown>;
      else if (tr !== null && type === IN_PROGRESS) tr.inProgress = true;
      if (start > flushFrom) write(buf.subarray(flushFrom, start));
      write(Buffer.from(`event: ${type.toString()}\ndata: ${JSON.stringify(payload)}\n\n`));
      return true;
    }
    const { frame, status } = this.errorEvent(payload, buf.toString('utf8', dataAt + DATA.length, end));
    this.sawDone = true;
    this.errorFrames++;
    this.errorFrameStatus = status;
    if (start > flushFrom) write(buf.subarray(flushFrom, start));
    const t = this.transcript;
    if (t !== null && t.honest && status >= 500 && this.held === null) {
      // the stream may go on on another engine: the event and what follows wait for the exchange's decision
      this.held = [];
      this.hold(frame);
    } else write(frame);
    return true;
  }

  /** An event around the message item (read for the transcript: each comes once a stream). */
  private itemEvent(t: ResponsesTranscript, buf: Buffer, nameAt: number, lineEnd: number, end: number): void {
    if (isName(buf, nameAt, lineEnd, ITEM_ADDED)) {
      const p = dataOf(buf, lineEnd + 1, end);
      t.itemAdded(p?.item, p?.output_index);
    } else if (isName(buf, nameAt, lineEnd, PART_ADDED)) {
      const p = dataOf(buf, lineEnd + 1, end);
      t.partOpened(p?.part, p?.content_index);
    } else if (isName(buf, nameAt, lineEnd, TEXT_DONE)) {
      t.textDone = true;
      t.finished = true;
    } else if (isName(buf, nameAt, lineEnd, PART_DONE)) t.partDone = true;
    else if (isName(buf, nameAt, lineEnd, ITEM_DONE)) t.itemDone = true;
  }

  /** An engine's error event (OpenAI's shape, or vLLM's `{"error":{...}}` / flat `{"object":"error"}`) in OpenAI's shape. */
  private errorEvent(payload: Record<string, unknown> | null, raw: string): { frame: Buffer; status: number } {
    const inner = (payload?.error !== null && typeof payload?.error === 'object' ? payload.error : payload) as Record<string, unknown> | null;
    let status = 500;
    const rawCode = inner?.code;
    if (typeof rawCode === 'number' && rawCode >= 400 && rawCode < 600) status = rawCode;
    // vLLM names Python exceptions (`InternalServerError`) where OpenAI has snake_case codes
    const named = typeof rawCode === 'string' && rawCode.includes('_') ? rawCode : null;
    const code = named ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    const message = typeof inner?.message === 'string' ? inner.message : raw;
    const param = typeof inner?.param === 'string' ? inner.param : null;
    return { frame: responsesErrorEvent(code, message, param, this.lastSequence), status };
  }
}

/** The JSON object of the `data: ` line at `at` (up to `end`), or null. */
function dataOf(buf: Buffer, at: number, end: number): Record<string, unknown> | null {
  if (buf.compare(DATA, 0, DATA.length, at, at + DATA.length) !== 0) return null;
  try {
    const v: unknown = JSON.parse(buf.toString('utf8', at + DATA.length, end));
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** An `error` event as OpenAI sends it in a Responses stream. */
export function responsesErrorEvent(code: string | null, message: string, param: string | null, sequence: number): Buffer {
  return Buffer.from(`event: error\ndata: ${JSON.stringify({ type: 'error', code, message, param, sequence_number: sequence })}\n\n`);
}
