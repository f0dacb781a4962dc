import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AppConfig } from '@spot/config';
import type { ApiError } from '@spot/contract';

/**
 * How much of an unread body is read and thrown away after an early answer before the connection is cut:
 * twice the body limit. (Time is bounded by the server's request timeout, GATEWAY_BODY_TIMEOUT_MS, which runs
 * until the body has ended whether it is read to be used or to be dropped.)
 */
export function drainLimit(config: AppConfig): number {
  return 2 * config.GATEWAY_BODY_LIMIT;
}

const answered = new WeakSet<Duplex>();

/**
 * How long a connection cut at the drain bound stays open, reading nothing, before it is destroyed: the time
 * its client has to read the answer already sent. Destroying a socket with unread bytes in its kernel buffer
 * sends a reset, and a client still writing in a tight loop meets that reset on its next write before it has
 * read the answer (the "lingering close" of nginx and Apache).
 */
const LINGER_MS = 2000;

/**
 * Stops reading `req`'s connection, half-closes it (the answer sent, then a FIN) and destroys it after
 * {@link LINGER_MS}. Paused, the socket holds at most its kernel buffers, which the client's writes fill.
 */
function lingeringClose(req: IncomingMessage): void {
  const socket = req.socket;
  req.pause();
  socket.pause();
  socket.end();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** Whether `socket` carries an answer sent before its request's body was read (no 408 may follow it). */
export function answeredEarly(socket: Duplex): boolean {
  return answered.has(socket);
}

/**
 * Answers `error` (in the OpenAI envelope, with `connection: close`) without reading the request's body into
 * memory, then reads and throws away what the client still sends, up to `drainBytes` (and the request
 * timeout), before the connection closes (see {@link lingeringClose}). Closing at once while the client is still uploading makes its next
 * write meet a reset, and many clients then lose the answer they were sent (EPIPE).
 */
export function answerEarly(
  req: IncomingMessage,
  res: ServerResponse,
  error: ApiError,
  requestId: string,
  drainBytes: number,
  body: string = JSON.stringify(error.toBody()),
  /** The protocol's own request-id header, if it has one (Anthropic's `request-id`). */
  idHeader: string | null = null,
): void {
  if (res.headersSent || res.destroyed) return;
  const head: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    ...error.headers,
    connection: 'close',
  };
  if (idHeader !== null) head[idHeader] = requestId;
  res.writeHead(error.status, head);
  if (req.complete) {
    res.end(body);
    return;
  }
  answered.add(req.socket);
  // the whole answer now, the end of the response (and so the close) once the body is in
  res.write(body);
  let seen = 0;
  let lingering = false;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > drainBytes && !lingering) {
      lingering = true;
      lingeringClose(req);
    }
  });
  req.on('end', () => res.end());
  req.resume();
}
