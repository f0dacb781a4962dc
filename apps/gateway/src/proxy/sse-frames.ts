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
const DONE = Buffer.from('data: [DONE]');
const USAGE = Buffer.from('"usage":{');
const ERROR_START = Buffer.from('data: {"error"');
const OBJECT_ERROR = Buffer.from('"object":"error"');

/**
 * Classifies the event `buf[start, end)` (without its blank-line terminator) by looking at bytes only.
 * JSON strings escape their quotes, so `"usage":{` can only be a key, never text inside content.
 */
export function classifyFrame(buf: Buffer, start: number, end: number): FrameKind {
  if (end - start < DATA.length || buf.compare(DATA, 0, DATA.length, start, start + DATA.length) !== 0) return FrameKind.Other;
  if (end - start >= DONE.length && buf.compare(DONE, 0, DONE.length, start, start + DONE.length) === 0) return FrameKind.Done;
  const event = buf.subarray(start, end);
  if (event.indexOf(USAGE) >= 0) return FrameKind.Usage;
  if (
    (end - start >= ERROR_START.length && buf.compare(ERROR_START, 0, ERROR_START.length, start, start + ERROR_START.length) === 0) ||
    event.indexOf(OBJECT_ERROR) >= 0
  ) {
    return FrameKind.Error;
  }
  return FrameKind.Content;
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
