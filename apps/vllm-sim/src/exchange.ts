import type { ServerResponse } from 'node:http';
import { errorBody, type ErrorShape, type SimError } from './sim-errors';
import type { ModelCounters, SimStats } from './sim-metrics';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

type Phase = 'new' | 'waiting' | 'running' | 'ended';

/**
 * One inference request's response side: writes, timers, and the bookkeeping of the stats and the
 * per-model gauges. A client disconnect before the end clears the pending timer (generation stops at
 * once) and counts as an abort.
 */
export class Exchange {
  private phase: Phase = 'new';
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  model: ModelCounters | undefined;
  /** Called once when the request ends (answered, failed, dropped or abandoned by its client). */
  onEnd: (() => void) | undefined;
  /** The JSON body of an error answer; vLLM's OpenAI-style envelope unless a route speaks another protocol. */
  errorJson: (err: SimError) => string;

  constructor(
    readonly res: ServerResponse,
    private readonly stats: SimStats,
    shape: ErrorShape,
  ) {
    stats.requests++;
    this.errorJson = (err) => errorBody(err, shape);
    res.once('close', () => this.onClose());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Runs `fn` after `ms`, unless the client goes away first. */
  after(ms: number, fn: () => void): void {
    if (this.closed) return;
    this.timer = setTimeout(fn, ms);
  }

  /** Holds the request (counted as waiting) for `ms`, then runs `fn`. */
  hold(ms: number, fn: () => void): void {
    this.setPhase('waiting');
    this.after(ms, () => {
      this.setPhase('new');
      fn();
    });
  }

  /** Queued behind the engine's running requests (--max-num-seqs): counted as waiting until it runs or ends. */
  queue(): void {
    this.setPhase('waiting');
  }

  /** Generation starts: the request counts as running and its prompt as processed. */
  start(promptTokens: number): void {
    this.setPhase('running');
    this.stats.promptTokens += promptTokens;
    if (this.model) this.model.promptTokens += promptTokens;
  }

  /** Tokens emitted (or generated, for a non-streamed answer). */
  tokens(n: number): void {
    this.stats.generationTokens += n;
    if (this.model) this.model.generationTokens += n;
  }

  sseHead(): void {
    this.res.writeHead(200, SSE_HEADERS);
    this.res.flushHeaders();
  }

  write(chunk: string): void {
    if (!this.closed) this.res.write(chunk);
  }

  /** Ends a successful response with `last`. */
  succeed(last: string, finishReason: string): void {
    if (this.closed) return;
    this.setPhase('ended');
    this.res.end(last);
    this.stats.completed++;
    this.model?.finish(finishReason);
  }

  /** Ends a stream after an error frame. */
  failStream(last: string): void {
    if (this.closed) return;
    this.setPhase('ended');
    this.res.end(last);
    this.stats.failed++;
  }

  json(status: number, body: string, headers?: Record<string, string>): void {
    if (this.closed) return;
    this.setPhase('ended');
    this.res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    this.res.end(body);
  }

  ok(body: string, finishReason: string): void {
    this.json(200, body);
    this.stats.completed++;
    this.model?.finish(finishReason);
  }

  /** A successful answer that ran no generation (e.g. counting tokens): completed, but no finished request. */
  answer(body: string): void {
    this.json(200, body);
    this.stats.completed++;
  }

  error(err: SimError, headers?: Record<string, string>): void {
    this.json(err.status, this.errorJson(err), headers);
    this.stats.failed++;
  }

  /**
   * The engine dies serving this request: `last` is flushed (if the client is still there), then `crash` runs.
   * The request ends here, neither completed nor aborted by its client.
   */
  die(last: string, crash: () => void): void {
    const closed = this.closed;
    this.setPhase('ended');
    if (closed || last === '') crash();
    else this.res.write(last, () => crash());
  }

  /** Kills the connection after flushing `last`: no terminating chunk, no status if nothing was sent. */
  drop(last = ''): void {
    if (this.closed) return;
    this.setPhase('ended');
    this.stats.dropped++;
    const socket = this.res.socket;
    if (!socket) return;
    if (last) this.res.write(last, () => socket.destroy());
    else socket.destroy();
  }

  private setPhase(next: Phase): void {
    const prev = this.phase;
    if (prev === next) return;
    const m = this.model;
    if (prev === 'waiting') {
      this.stats.waiting--;
      if (m) m.waiting--;
    } else if (prev === 'running') {
      this.stats.running--;
      if (m) m.running--;
    }
    if (next === 'waiting') {
      this.stats.waiting++;
      if (m) m.waiting++;
    } else if (next === 'running') {
      this.stats.running++;
      if (m) m.running++;
    }
    this.phase = next;
    if (next === 'ended' && this.onEnd) {
      const ended = this.onEnd;
      this.onEnd = undefined;
      ended();
    }
  }

  private onClose(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.phase !== 'ended') {
      this.stats.aborted++;
      this.setPhase('ended');
    }
  }
}
