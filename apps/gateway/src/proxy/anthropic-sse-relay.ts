import { normalizeUpstreamAnthropicError } from '@spot/contract';
import type { MessagesTranscript } from './anthropic-transcript';
import type { RelayWrite } from './protocol-adapter';
import { SseRelayBase } from './sse-relay-base';
import { eventEnd } from './sse-frames';

const EVENT = Buffer.from('event: ');
const CONTENT_BLOCK_DELTA = Buffer.from('content_block_delta');
const MESSAGE_START = Buffer.from('message_start');
const MESSAGE_DELTA = Buffer.from('message_delta');
const MESSAGE_STOP = Buffer.from('message_stop');
const CONTENT_BLOCK_START = Buffer.from('content_block_start');
const CONTENT_BLOCK_STOP = Buffer.from('content_block_stop');
const ERROR = Buffer.from('error');

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/** Whether `buf[from, to)` is exactly `name`. */
function named(buf: Buffer, from: number, to: number, name: Buffer): boolean {
  return to - from === name.length && name.compare(buf, from, to) === 0;
}

/** The JSON of the `data:` line of the event `buf[start, end)`, or null. */
function eventData(buf: Buffer, start: number, end: number): Record<string, unknown> | null {
  const at = buf.indexOf('\ndata:', start);
  if (at < 0 || at >= end) return null;
  const from = buf[at + 6] === 32 ? at + 7 : at + 6;
  try {
    const v: unknown = JSON.parse(buf.toString('utf8', from, end));
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The relay of one engine attempt's Anthropic Messages stream (`event: x\ndata: {...}\n\n`, as vLLM serves
 * it): events pass through untouched, except `error` events, rewritten into Anthropic's envelope with an
 * Anthropic error type (vLLM's say `internal_error`). Usage: input and cache tokens from `message_start`,
 * output tokens from `message_delta` (whose input counts win when present); the prompt is input + cache reads +
 * cache writes (Anthropic's contract, as `usageFromAnthropic` reads a body). It is reported only once
 * `message_delta` arrived, so a stream cut before is billed from its content events, as for chat. A clean end
 * is `message_stop`; an `error` event ends the stream too (vLLM sends nothing after it), so it is no cut. With a
 * transcript (a stream that may be continued), a text delta's text is copied as it passes, the block events are
 * read (once each a stream), and an engine's 5xx error event is held back for the exchange to decide on.
 */
export class AnthropicSseRelay extends SseRelayBase {
  // usage: once `message_delta` reported the output tokens; sawDone: `message_stop`, or an `error` event (which
  // ends Anthropic's stream); contentEvents: `content_block_delta` events, one a generated token
  private input = 0;
  private cacheRead = 0;
  private cacheWrite = 0;

  /** @param transcript keeps what the client received of a stream that may be continued (null: one that never is). */
  constructor(private readonly transcript: MessagesTranscript | null = null) {
    super();
  }

  push(chunk: Buffer, out: RelayWrite): void {
    const buf = this.joined(chunk);
    // after a held error event, nothing more reaches the client unless it is released
    let write = this.held === null ? out : this.hold;
    let flushFrom = 0;
    let eventStart = 0;
    let sep: number;
    while ((sep = eventEnd(buf, eventStart)) !== -1) {
      const next = sep + 2;
      if (EVENT.compare(buf, eventStart, eventStart + EVENT.length) === 0) {
        const t = this.held === null ? this.transcript : null;
        const nameFrom = eventStart + EVENT.length;
        let nameTo = buf.indexOf(10, nameFrom);
        if (nameTo < 0 || nameTo > sep) nameTo = sep;
        if (buf[nameTo - 1] === 13) nameTo--;
        if (named(buf, nameFrom, nameTo, CONTENT_BLOCK_DELTA)) {
          this.contentEvents++;
          if (t !== null && t.honest) t.take(buf, eventStart, sep);
        } else if (named(buf, nameFrom, nameTo, MESSAGE_START)) {
          const data = eventData(buf, eventStart, sep);
          this.started(data);
          if (t !== null) t.message = (data?.message as Record<string, unknown> | undefined) ?? null;
        } else if (named(buf, nameFrom, nameTo, MESSAGE_DELTA)) {
          this.delta(eventData(buf, eventStart, sep));
          if (t !== null) t.messageDelta = t.finished = true;
        } else if (named(buf, nameFrom, nameTo, MESSAGE_STOP)) this.sawDone = true;
        else if (t !== null && named(buf, nameFrom, nameTo, CONTENT_BLOCK_START)) {
          const data = eventData(buf, eventStart, sep);
          t.blockStarted(data?.content_block, data?.index);
        } else if (t !== null && named(buf, nameFrom, nameTo, CONTENT_BLOCK_STOP)) t.blockEnded(eventData(buf, eventStart, sep)?.index);
        else if (named(buf, nameFrom, nameTo, ERROR)) {
          const frame = this.rewriteError(buf, eventStart, sep);
          if (eventStart > flushFrom) write(buf.subarray(flushFrom, eventStart));
          if (this.transcript?.honest === true && this.errorFrameStatus >= 500 && this.held === null) {
            // the stream may go on on another engine: the event and what follows wait for the exchange's decision
            this.held = [];
            write = this.hold;
          }
          write(frame);
          flushFrom = next;
        }
      }
      eventStart = next;
    }
    if (eventStart > flushFrom) write(buf.subarray(flushFrom, eventStart));
    this.keepRest(buf, eventStart);
  }

  private started(data: Record<string, unknown> | null): void {
    const usage = (data?.message as { usage?: Record<string, unknown> } | undefined)?.usage;
    if (usage === undefined || usage === null) return;
    this.input = count(usage.input_tokens);
    this.cacheRead = count(usage.cache_read_input_tokens);
    this.cacheWrite = count(usage.cache_creation_input_tokens);
  }

  /** message_delta's usage (cumulative: the input counts it carries win over message_start's). */
  private delta(data: Record<string, unknown> | null): void {
    const usage = data?.usage as Record<string, unknown> | undefined | null;
    if (usage === undefined || usage === null || typeof usage.output_tokens !== 'number') return;
    const input = typeof usage.input_tokens === 'number' ? count(usage.input_tokens) : this.input;
    const read = typeof usage.cache_read_input_tokens === 'number' ? count(usage.cache_read_input_tokens) : this.cacheRead;
    const write = typeof usage.cache_creation_input_tokens === 'number' ? count(usage.cache_creation_input_tokens) : this.cacheWrite;
    this.usage = { prompt: input + read + write, completion: count(usage.output_tokens), cached: read };
  }

  private rewriteError(buf: Buffer, start: number, end: number): Buffer {
    const at = buf.indexOf('\ndata:', start);
    const raw = at >= 0 && at < end ? buf.toString('utf8', buf[at + 6] === 32 ? at + 7 : at + 6, end) : '';
    const body = normalizeUpstreamAnthropicError(500, raw);
    this.errorFrameStatus = statusOfType(body.error.type);
    this.errorFrames++;
    this.sawDone = true;
    return Buffer.from(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
  }
}

/** The HTTP status an Anthropic error type stands for (what the request is counted and billed as). */
export function statusOfType(type: string): number {
  switch (type) {
    case 'invalid_request_error':
      return 400;
    case 'rate_limit_error':
      return 429;
    case 'overloaded_error':
      return 529;
    case 'timeout_error':
      return 504;
    default:
      return 500;
  }
}

/** The event that ends a stream broken after bytes reached the client: Anthropic's `error` event. */
export function anthropicMidstreamErrorFrame(message: string): Buffer {
  return Buffer.from(`event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'api_error', message } })}\n\n`);
}
