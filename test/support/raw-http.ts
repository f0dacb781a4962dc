import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';

/** One HTTP response as read off a raw socket. */
export interface RawResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
}

/** What a raw exchange saw: the response (null if none arrived), whether the socket closed, a socket error. */
export interface RawOutcome {
  response: RawResponse | null;
  closed: boolean;
  /** Whether the server half-closed the connection (a FIN, read as the end of the stream) before any reset. */
  ended: boolean;
  error: string | null;
  /** Body bytes written before the exchange ended. */
  sent: number;
  /** Whatever came after the first response (a second answer written over it, say). */
  rest: string;
}

/** The first response in `buf` and where it ends, once its head and content-length body are complete; null before. */
function parseAt(buf: Buffer): { response: RawResponse; end: number } | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  if (buf.length < end + 4 + length) return null;
  return { response: { status, headers, body: buf.subarray(end + 4, end + 4 + length).toString('utf8') }, end: end + 4 + length };
}

export interface RawRequestOptions {
  /** Bytes sent first (request line and headers, maybe a start of body). */
  head: string | Buffer;
  /** Filler bytes (`a`) sent after `head`, in `chunk`-byte writes (default 0). */
  bodyBytes?: number;
  /** Sent after the filler (to close a JSON document whose start is in `head`). */
  tail?: string;
  chunk?: number;
  /** Pause between body writes (a trickle); default none (as fast as the socket takes them). */
  pauseMs?: number;
  /** Stop writing once the response is complete (default false: keep uploading, as most clients do). */
  stopOnResponse?: boolean;
  /** Give up after this long (default 20 s): the outcome says what was seen by then. */
  timeoutMs?: number;
  /** Resolve as soon as the response is complete instead of waiting for the close. */
  resolveOnResponse?: boolean;
}

/**
 * Writes raw bytes to `port` and reads what comes back: for requests no HTTP client would send (malformed
 * framing, a trickled body) and to see exactly when the server answers and closes.
 */
export function rawRequest(port: number, opts: RawRequestOptions): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    const outcome: RawOutcome = { response: null, closed: false, ended: false, error: null, sent: 0, rest: '' };
    let settled = false;
    let responseEnd = 0;
    const finish = () => {
      if (settled) return;
      settled = true;
      if (outcome.response !== null) outcome.rest = received.subarray(responseEnd).toString('latin1');
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 20_000);
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      if (outcome.response === null) {
        const parsed = parseAt(received);
        if (parsed === null) return;
        outcome.response = parsed.response;
        responseEnd = parsed.end;
        if (opts.resolveOnResponse) finish();
      }
    });
    socket.on('end', () => {
      outcome.ended = true;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      outcome.error = err.code ?? err.message;
    });
    socket.on('close', () => {
      outcome.closed = true;
      finish();
    });
    const total = opts.bodyBytes ?? 0;
    const chunk = Buffer.alloc(opts.chunk ?? 64 * 1024, 'a');
    let tailSent = opts.tail === undefined;
    const pump = () => {
      if (outcome.sent >= total && !tailSent && !settled && !socket.destroyed) {
        tailSent = true;
        socket.write(opts.tail!);
      }
      while (!settled && !socket.destroyed && outcome.sent < total) {
        if (opts.stopOnResponse && outcome.response !== null) return;
        const n = Math.min(chunk.length, total - outcome.sent);
        outcome.sent += n;
        const more = socket.write(n === chunk.length ? chunk : chunk.subarray(0, n));
        if (opts.pauseMs !== undefined) {
          setTimeout(pump, opts.pauseMs);
          return;
        }
        if (!more) {
          socket.once('drain', pump);
          return;
        }
      }
      if (!tailSent && !settled && !socket.destroyed) {
        tailSent = true;
        socket.write(opts.tail!);
      }
    };
    socket.on('connect', () => {
      socket.write(opts.head);
      pump();
    });
  });
}

/** The resident set of process `pid` in bytes (Linux). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

/** The envelope of an OpenAI error body, checked for its four keys. */
export function envelopeOf(body: string): { message: string; type: string; param: string | null; code: string | null } {
  const parsed = JSON.parse(body) as { error?: { message: string; type: string; param: string | null; code: string | null } };
  if (parsed.error === undefined) throw new Error(`not an OpenAI error envelope: ${body}`);
  const keys = Object.keys(parsed.error).sort().join(',');
  if (keys !== 'code,message,param,type') throw new Error(`envelope keys ${keys}: ${body}`);
  return parsed.error;
}
