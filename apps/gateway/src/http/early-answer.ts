import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AppConfig } from '@spot/config';
import type { ApiError } from '@spot/contract';

/** How much of an unread body is read and thrown away after an early answer, before the connection is closed. */
export interface DrainBound {
  readonly bytes: number;
  readonly ms: number;
}

/** The bound of the configuration: twice the body limit, GATEWAY_DRAIN_TIMEOUT_MS. */
export function drainBound(config: AppConfig): DrainBound {
  return { bytes: 2 * config.GATEWAY_BODY_LIMIT, ms: config.GATEWAY_DRAIN_TIMEOUT_MS };
}

const answered = new WeakSet<Duplex>();

/** Whether `socket` carries an answer sent before its request's body was read (no 408 may follow it). */
export function answeredEarly(socket: Duplex): boolean {
  return answered.has(socket);
}

/**
 * Answers `error` (in the OpenAI envelope, with `connection: close`) without reading the request's body into
 * memory, then reads and throws away what the client still sends, up to `bound`, before the connection
 * closes. Closing at once while the client is still uploading makes its next write meet a reset, and many
 * clients then lose the answer they were sent (EPIPE); past the bound the connection is cut anyway.
 */
export function answerEarly(req: IncomingMessage, res: ServerResponse, error: ApiError, requestId: string, bound: DrainBound): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(error.toBody());
  res.writeHead(error.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    ...error.headers,
    connection: 'close',
  });
  if (req.complete) {
    res.end(body);
    return;
  }
  answered.add(req.socket);
  // the whole answer now, the end of the response (and so the close) once the body is in
  res.write(body);
  let seen = 0;
  const cut = () => {
    clearTimeout(timer);
    (req.socket as Socket).destroy();
  };
  const timer = setTimeout(cut, bound.ms).unref();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > bound.bytes) cut();
  });
  req.on('end', () => {
    clearTimeout(timer);
    res.end();
  });
  // the client went away: nothing left to do
  req.on('error', () => clearTimeout(timer));
  req.resume();
}
