import { normalizeUpstreamError } from '@spot/contract';

/** What the relay does with one SSE event from the engine. */
export enum FrameKind {
  /** A content chunk: forward as is. */
  Content,
  /** `data: [DONE]`: forward, the stream ended cleanly. */
  Done,
  /** A chunk carrying `usage`: read it; forward only if the client asked for usage or it has choices. */
  Usage,
  /** An error frame: forward rewritten into OpenAI's envelope. */
  Error,
  /** A comment or anything else: forward. */
  Other,
}

const DATA = Buffer.from('data: ');
/** Keys searched for once per chunk read, not once per event (most chunks have neither). */
export const USAGE_KEY = Buffer.from('"usage":{');
/**
 * `"usage":null`, which engines put in every chunk once `include_usage` is on (vLLM's completions always). OpenAI
 * sends no usage key at all when the client did not ask for usage, so the relay cuts it out then.
 */
export const USAGE_NULL_KEY = Buffer.from('"usage":null');
/** Matches both error shapes: `{"error":{...}}` and the flat `"object":"error"`. */
export const ERROR_KEY = Buffer.from('"error"');

/** Where the blank line ending the event that starts at `from` begins (its first `\n`), or -1. */
export function eventEnd(buf: Buffer, from: number): number {
  let i = from;
  for (;;) {
    i = buf.indexOf(10, i); // a byte needle: memchr, no per-call allocation
    if (i < 0 || i + 1 >= buf.length) return -1;
    if (buf[i + 1] === 10) return i;
    i += 1;
  }
}

/**
 * Classifies the event `buf[start, end)` (without its blank-line terminator) from a few bytes and from
 * where the chunk's next `"usage":{` and `"error"` keys are (`usageAt`, `errorAt`: positions in `buf`
 * or -1). JSON strings escape their quotes, so those keys can never be text inside content.
 */
export function classifyFrame(buf: Buffer, start: number, end: number, usageAt: number, errorAt: number): FrameKind {
  if (
    end - start < 6 ||
    buf[start] !== 100 /* d */ ||
    buf[start + 1] !== 97 /* a */ ||
    buf[start + 2] !== 116 /* t */ ||
    buf[start + 3] !== 97 /* a */ ||
    buf[start + 4] !== 58 /* : */
  ) {
    return FrameKind.Other;
  }
  const at = buf[start + 5] === 32 ? start + 6 : start + 5; // "data: x" or "data:x"
  if (buf[at] === 91 /* [ */ && end - at === 6 && buf.toString('latin1', at, end) === '[DONE]') return FrameKind.Done;
  if (usageAt >= start && usageAt < end) return FrameKind.Usage;
  if (errorAt >= start && errorAt < end) return FrameKind.Error;
  return FrameKind.Content;
}

/** {@link classifyFrame} for one event on its own (tests, and anything off the relay loop). */
export function classifyEvent(buf: Buffer, start: number, end: number): FrameKind {
  const event = buf.subarray(start, end);
  const u = event.indexOf(USAGE_KEY);
  const e = event.indexOf(ERROR_KEY);
  return classifyFrame(buf, start, end, u < 0 ? -1 : start + u, e < 0 ? -1 : start + e);
}

/**
 * The span to cut to remove the `"usage":null` member at `at` (a position in `buf` inside the event
 * `[start, end)`), with the comma that joins it to its neighbour: `[from, to)`. Null when the key is not a
 * whole member there (never the case in an engine's JSON, whose strings escape their quotes).
 */
export function usageNullSpan(buf: Buffer, start: number, end: number, at: number): { from: number; to: number } | null {
  const after = at + USAGE_NULL_KEY.length;
  if (at <= start || after > end) return null;
  if (buf[at - 1] === 44 /* , */) return { from: at - 1, to: after }; // {...,"usage":null}
  if (buf[after] === 44) return { from: at, to: after + 1 }; // {"usage":null,...}
  return null;
}

/** The JSON payload of a `data: ` event, parsed; null when it is not JSON. */
export function parseFrame(buf: Buffer, start: number, end: number): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(buf.toString('utf8', start + DATA.length, end));
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** An engine's error frame rewritten into OpenAI's envelope, and the HTTP status it stands for. */
export function rewriteErrorFrame(buf: Buffer, start: number, end: number): { frame: Buffer; status: number } {
  const payload = buf.toString('utf8', start + DATA.length, end);
  let status = 500;
  try {
    const v = JSON.parse(payload) as { error?: { code?: unknown }; code?: unknown };
    const code = v.error?.code ?? v.code;
    if (typeof code === 'number' && code >= 400 && code < 600) status = code;
  } catch {
    // not JSON: the envelope below carries the raw text as its message
  }
  const body = normalizeUpstreamError(status, payload);
  return { frame: Buffer.from(`data: ${JSON.stringify(body)}\n\n`), status };
}

/** The frame sent when the engine fails after the stream began: the client must not see a clean end. */
export function midstreamErrorFrame(message: string): Buffer {
  return Buffer.from(
    `data: ${JSON.stringify({ error: { message, type: 'server_error', param: null, code: 'upstream_error' } })}\n\n`,
  );
}
