import type { ServerResponse } from 'node:http';
import { ApiError, errorBody, normalizeUpstreamError, clientStatusForUpstream } from '@spot/contract';
import { costNanos } from '@spot/tiers';
import type { UsageRecorder } from '@spot/usage';
import type { Dispatcher } from 'undici';
import type { AuthedKey } from '../auth/authed-key';
import type { BudgetHold } from '../limits/rate-limiter';
import type { GatewayMetrics } from '../metrics/gateway-metrics';
import type { Candidate, FailureKind } from '../routing/upstream-pool';
import { type CheckedRequest, type ProxyKind, UPSTREAM_PATHS, upstreamBody } from './openai-request';
import { classifyFrame, ERROR_KEY, eventEnd, FrameKind, midstreamErrorFrame, parseFrame, rewriteErrorFrame, USAGE_KEY } from './sse-frames';
import { type TokenUsage, usageFromJsonTail, usageFromObject } from './token-usage';

/** Per-process collaborators of every exchange (singletons, so an exchange holds one reference). */
export interface ExchangeContext {
  readonly metrics: GatewayMetrics;
  /** Latency histograms per proxied route, labelled once. */
  readonly timers: Readonly<Record<ProxyKind, ReturnType<GatewayMetrics['routeTimers']>>>;
  readonly recorder: UsageRecorder;
  /** Called once when an exchange ends, whatever the outcome (shutdown waits on these). */
  readonly onSettled: (exchange: ProxyExchange) => void;
  readonly onError: (message: string) => void;
  /** Total time a request may spend on attempts before giving up on retries. */
  readonly routeDeadlineMs: number;
  /** A tier that may sleep answered 503: it may have been put to sleep behind our back. */
  readonly tierRefused: (tier: string) => void;
  /**
   * Every candidate failed before the first byte: candidates on a tier of the model that was asleep (woken for
   * this request; the promise rejects with the 503 to answer past its deadline), or null when there is none.
   */
  readonly wakeFallback: (model: string, tried: readonly Candidate[]) => Promise<readonly Candidate[]> | null;
  /** Settles the request's budget reservation with what it cost (called once, when it ends). */
  readonly settleBudget: (key: AuthedKey, hold: BudgetHold, costNanos: number) => void;
}

const enum Phase {
  Waiting,
  Relaying,
  ErrorBody,
  Done,
}

const TAIL_BYTES = 16 * 1024;
const ERROR_BODY_MAX = 64 * 1024;
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

class ClientGoneError extends Error {
  readonly code = 'client_gone';
}

class RefusedError extends Error {
  readonly code = 'refused';
}

const enum Gate {
  /** The rate limiter's verdict is not in yet: hold the engine's response. */
  Pending,
  Open,
  /** Refused: the engine request is aborted and the client gets the 429. */
  Refused,
}

/**
 * One client request relayed to the engine: an undici dispatch handler (no stream objects on the path)
 * that writes the engine's bytes to the client's socket as they arrive. Streams are relayed event by event
 * without re-serialising content chunks; only the usage chunk is read (and dropped if the client did not
 * ask for it) and error frames are rewritten. Attempts move to the next candidate only while nothing has
 * reached the client. Ends with exactly one usage event.
 */
export class ProxyExchange implements Dispatcher.DispatchHandler, BudgetHold {
  budgetKey: string | null = null;
  reservedNanos = 0;
  /** What the request cost once its usage is recorded; -1 before. */
  private cost = -1;
  private phase = Phase.Waiting;
  private attemptIndex = -1;
  private controller: Dispatcher.DispatchController | null = null;
  private clientGone = false;
  private carry: Buffer | null = null;
  private tail: Buffer | null = null;
  private errorChunks: Buffer[] = [];
  private errorBytes = 0;
  private upstreamStatus = 0;
  private sawDone = false;
  private errorFrameStatus = 0;
  private contentEvents = 0;
  private usage: TokenUsage | null = null;
  private firstByteAt = 0;
  private gate = Gate.Open;
  private refusal: ApiError | null = null;
  private heldStatus = 0;
  private heldHeaders: Record<string, string | string[] | undefined> | null = null;
  private heldError: Error | null = null;
  private corked = false;
  /** A stream's head waits for its first event: until then nothing reached the client, and a failure is retried. */
  private headPending = false;
  private readonly onDrain: () => void;
  private readonly uncork: () => void;
  private readonly startedAtEpoch = Date.now();
  private upstreamJsonModel: string;

  constructor(
    private readonly ctx: ExchangeContext,
    private readonly res: ServerResponse,
    readonly requestId: string,
    private readonly key: AuthedKey,
    private readonly kind: ProxyKind,
    private readonly req: CheckedRequest,
    private candidates: readonly Candidate[],
    private readonly startedAt: number,
    /** The engine body for the first candidate's upstream model (serialised by the caller, which answers its errors). */
    private upstreamJson: string,
  ) {
    this.upstreamJsonModel = candidates[0].route.upstreamModel;
    this.onDrain = () => this.controller?.resume();
    this.uncork = () => {
      this.corked = false;
      if (this.res.writableCorked > 0) this.res.uncork();
    };
    res.on('close', () => {
      if (this.phase === Phase.Done) return;
      this.clientGone = true;
      const c = this.controller;
      if (c !== null && !c.aborted) c.abort(new ClientGoneError('client disconnected'));
      else if (c === null) this.finish(499);
    });
  }

  /** Sends the first attempt. */
  start(): void {
    this.ctx.metrics.inflight.inc();
    this.next();
  }

  /**
   * Holds the engine's response until the rate limiter's verdict is in (call right after {@link start},
   * before any response can arrive: they come on a later turn of the event loop).
   */
  awaitAdmission(admission: Promise<ApiError | null>): void {
    this.gate = Gate.Pending;
    void admission.then((refusal) => this.onAdmission(refusal));
  }

  /** Aborts the engine request (shutdown past its grace period): the client sees an error, not a clean end. */
  cut(reason: string): void {
    if (this.phase === Phase.Done) return;
    const c = this.controller;
    if (c !== null && !c.aborted) c.abort(new Error(reason));
  }

  private get candidate(): Candidate {
    return this.candidates[this.attemptIndex];
  }

  private next(): void {
    this.attemptIndex++;
    const { route, endpoint } = this.candidate;
    if (route.upstreamModel !== this.upstreamJsonModel) {
      // a retry on a tier that names the model otherwise
      try {
        this.upstreamJson = upstreamBody(this.req, route.upstreamModel);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        this.respondError(err.status, JSON.stringify(err.toBody()), {}, false);
        return;
      }
      this.upstreamJsonModel = route.upstreamModel;
    }
    this.controller = null;
    this.upstreamStatus = 0;
    endpoint.taken();
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: this.req.stream ? 'text/event-stream' : 'application/json',
      'x-request-id': this.requestId,
    };
    if (route.apiKey !== null) headers.authorization = `Bearer ${route.apiKey}`;
    endpoint.pool.dispatch({ method: 'POST', path: UPSTREAM_PATHS[this.kind], headers, body: this.upstreamJson }, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new ClientGoneError('client disconnected'));
    else if (this.gate === Gate.Refused) controller.abort(new RefusedError('rate limited'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx informational
    if (this.gate === Gate.Pending) {
      // the engine beat the limiter: hold its response (the parser stops until resumed)
      this.heldStatus = statusCode;
      this.heldHeaders = headers;
      controller.pause();
      return;
    }
    this.startResponse(statusCode, headers);
  }

  /** The limiter's verdict: let the held response through, or abort the engine and answer 429. */
  private onAdmission(refusal: ApiError | null): void {
    if (this.phase === Phase.Done) return;
    if (refusal === null) {
      this.gate = Gate.Open;
      if (this.heldError !== null) {
        const err = this.heldError;
        this.heldError = null;
        this.handleError(err);
      } else if (this.heldStatus !== 0) {
        this.startResponse(this.heldStatus, this.heldHeaders!);
        this.heldHeaders = null;
        this.controller?.resume();
      }
      return;
    }
    this.gate = Gate.Refused;
    this.refusal = refusal;
    const c = this.controller;
    if (this.heldError !== null) this.refuse();
    else if (c !== null && !c.aborted) c.abort(new RefusedError('rate limited'));
  }

  private refuse(): void {
    const r = this.refusal!;
    this.respondError(r.status, JSON.stringify(r.toBody()), (r.headers as Record<string, string> | null) ?? {}, false);
  }

  private startResponse(statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.upstreamStatus = statusCode;
    if (statusCode < 500) this.candidate.endpoint.succeeded();
    if (statusCode >= 300) {
      this.phase = Phase.ErrorBody;
      return;
    }
    this.phase = Phase.Relaying;
    if (this.clientGone) return;
    this.corkUntilNextTurn();
    if (this.req.stream) {
      // engines answer 200 before queueing and prefill: a replica lost meanwhile (spot preemption) must not
      // have sent the client anything yet, so the head leaves with the first event (see write)
      this.headPending = true;
    } else {
      const out: Record<string, string> = {
        'content-type': (headers['content-type'] as string | undefined) ?? 'application/json',
        'x-request-id': this.requestId,
      };
      const length = headers['content-length'];
      if (typeof length === 'string') out['content-length'] = length;
      this.res.writeHead(statusCode, out);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.phase === Phase.ErrorBody) {
      if (this.errorBytes < ERROR_BODY_MAX) {
        this.errorChunks.push(chunk);
        this.errorBytes += chunk.length;
      }
      return;
    }
    if (this.phase !== Phase.Relaying || this.clientGone) return;
    if (this.firstByteAt === 0) this.firstByteAt = performance.now();
    if (this.req.stream) this.relayEvents(chunk);
    else {
      this.keepTail(chunk);
      this.write(chunk);
    }
    if (this.res.writableNeedDrain && !controller.paused) {
      controller.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    this.candidate.endpoint.released();
    if (this.phase === Phase.ErrorBody) {
      this.sendUpstreamError();
      return;
    }
    if (this.clientGone) {
      this.finish(499);
      return;
    }
    if (!this.req.stream) {
      this.usage = this.tail ? usageFromJsonTail(this.tail.toString('utf8')) : null;
      // usage is recorded (journaled) before the last byte leaves: a crash in between cannot leave a client
      // with an answer we never billed
      this.recordOnce(this.upstreamStatus);
      this.res.end();
      this.finish(this.upstreamStatus);
      return;
    }
    if (this.carry !== null) {
      this.write(this.carry); // an unterminated last event: pass it on as it is
      this.carry = null;
    }
    if (!this.sawDone) {
      this.ctx.metrics.upstreamErrors.labels(this.candidate.route.tier, 'midstream').inc();
      this.endpointFailed('status', 'stream ended before [DONE]');
      if (this.headPending && this.retryUnsent()) return;
      this.failMidstream('The engine ended the stream before it was complete.');
      return;
    }
    this.recordOnce(this.errorFrameStatus || this.upstreamStatus);
    if (this.headPending) this.sendStreamHead();
    this.res.end();
    this.finish(this.errorFrameStatus || this.upstreamStatus);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.candidate.endpoint.released();
    if (this.gate === Gate.Pending) {
      this.heldError = err; // decided (retry, 502, or the limiter's 429) once the verdict is in
      return;
    }
    this.handleError(err);
  }

  private handleError(err: Error): void {
    const { route, endpoint } = this.candidate;
    if (this.clientGone) {
      this.finish(499);
      return;
    }
    if (this.gate === Gate.Refused) {
      this.refuse();
      return;
    }
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (this.phase === Phase.Waiting) {
      const timeout = code === 'UND_ERR_HEADERS_TIMEOUT';
      this.ctx.metrics.upstreamErrors.labels(route.tier, timeout ? 'timeout' : 'connect').inc();
      // an engine that refuses or resets connections has vanished (spot preemption): ejected at once
      this.endpointFailed(timeout ? 'status' : 'connect', code || err.message);
      if (!timeout && RETRYABLE_CODES.has(code) && this.mayRetry()) {
        this.ctx.metrics.retries.labels(route.tier).inc();
        this.next();
        return;
      }
      if (!timeout && RETRYABLE_CODES.has(code) && this.wakeFallback()) return;
      this.ctx.onError(`engine ${endpoint.origin} (tier ${route.tier}) failed before responding: ${code || err.message}`);
      const status = timeout ? 504 : 502;
      const message = timeout
        ? 'The engine did not answer in time. Please retry.'
        : 'The engine serving this model is unreachable. Please retry shortly.';
      this.respondError(status, errorBody(status, message, 'upstream_unavailable', null, 'server_error'), { 'retry-after': '1' });
      return;
    }
    if (this.phase === Phase.ErrorBody) {
      this.sendUpstreamError();
      return;
    }
    // relaying: bytes already reached the client, so no retry; make the failure visible
    this.ctx.metrics.upstreamErrors.labels(route.tier, 'midstream').inc();
    this.endpointFailed(RETRYABLE_CODES.has(code) ? 'connect' : 'status', `mid-response: ${code || err.message}`);
    this.ctx.onError(`engine ${endpoint.origin} failed mid-response: ${code || err.message}`);
    if (this.headPending && RETRYABLE_CODES.has(code) && this.retryUnsent()) return;
    if (this.req.stream) this.failMidstream(`The engine failed mid-stream (${code || err.message}).`);
    else {
      this.res.destroy(err);
      this.finish(502);
    }
  }

  /** Splits `chunk` into SSE events and forwards all but the usage chunk the client did not ask for. */
  private relayEvents(chunk: Buffer): void {
    let buf = chunk;
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let flushFrom = 0;
    let eventStart = 0;
    let usageAt = buf.indexOf(USAGE_KEY);
    let errorAt = buf.indexOf(ERROR_KEY);
    let sep: number;
    while ((sep = eventEnd(buf, eventStart)) !== -1) {
      const next = sep + 2;
      const kind = classifyFrame(buf, eventStart, sep, usageAt, errorAt);
      if (kind === FrameKind.Content) {
        if (this.contentEvents++ === 0 && this.firstByteAt === 0) this.firstByteAt = performance.now();
      } else if (kind === FrameKind.Done) {
        this.sawDone = true;
      } else if (kind === FrameKind.Usage) {
        const payload = parseFrame(buf, eventStart, sep);
        const usage = usageFromObject(payload?.usage);
        if (usage !== null) this.usage = usage;
        const hasChoices = Array.isArray(payload?.choices) && (payload.choices as unknown[]).length > 0;
        if (hasChoices) this.contentEvents++;
        if (!this.req.clientWantsUsage && !hasChoices) {
          if (eventStart > flushFrom) this.write(buf.subarray(flushFrom, eventStart));
          flushFrom = next;
        }
      } else if (kind === FrameKind.Error) {
        const { frame, status } = rewriteErrorFrame(buf, eventStart, sep);
        this.errorFrameStatus = status;
        this.ctx.metrics.upstreamErrors.labels(this.candidate.route.tier, 'frame').inc();
        if (eventStart > flushFrom) this.write(buf.subarray(flushFrom, eventStart));
        this.write(frame);
        flushFrom = next;
      }
      if (usageAt >= 0 && usageAt < next) usageAt = buf.indexOf(USAGE_KEY, next);
      if (errorAt >= 0 && errorAt < next) errorAt = buf.indexOf(ERROR_KEY, next);
      eventStart = next;
    }
    if (eventStart > flushFrom) this.write(buf.subarray(flushFrom, eventStart));
    if (eventStart < buf.length) this.carry = buf.subarray(eventStart);
  }

  private keepTail(chunk: Buffer): void {
    if (chunk.length >= TAIL_BYTES || this.tail === null) this.tail = chunk.length > TAIL_BYTES ? chunk.subarray(chunk.length - TAIL_BYTES) : chunk;
    else {
      const joined = Buffer.concat([this.tail, chunk]);
      this.tail = joined.length > TAIL_BYTES ? joined.subarray(joined.length - TAIL_BYTES) : joined;
    }
  }

  private write(buf: Buffer): void {
    if (this.clientGone) return;
    this.corkUntilNextTurn();
    if (this.headPending) this.sendStreamHead();
    this.res.write(buf);
  }

  private sendStreamHead(): void {
    this.headPending = false;
    this.res.writeHead(this.upstreamStatus, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-request-id': this.requestId,
    });
  }

  /**
   * A stream's engine failed before any byte of it reached the client: the next candidate, or a woken tier,
   * gets the request, as for a failure before the response. False when there is neither.
   */
  private retryUnsent(): boolean {
    if (this.mayRetry()) {
      this.ctx.metrics.retries.labels(this.candidate.route.tier).inc();
      this.resetUnsent();
      this.phase = Phase.Waiting;
      this.next();
      return true;
    }
    if (!this.wakeFallback()) return false;
    this.resetUnsent();
    return true;
  }

  private resetUnsent(): void {
    this.headPending = false;
    this.carry = null;
    this.usage = null;
    this.sawDone = false;
    this.errorFrameStatus = 0;
    this.contentEvents = 0;
    this.firstByteAt = 0;
  }

  /**
   * Engines often send several events per socket read, and headers come with the first; writing each
   * costs a syscall apiece. Writes made while handling one read leave together (one writev) as soon as
   * that handling ends: no added wait.
   */
  private corkUntilNextTurn(): void {
    if (this.corked) return;
    this.corked = true;
    this.res.cork();
    process.nextTick(this.uncork);
  }

  private failMidstream(message: string): void {
    if (this.headPending) {
      // nothing reached the client yet: a plain error response, which the SDKs retry
      this.headPending = false;
      this.respondError(502, errorBody(502, message, 'upstream_unavailable', null, 'server_error'), { 'retry-after': '1' });
      return;
    }
    const frame = midstreamErrorFrame(message);
    // no terminating chunk: the connection is cut after the frame, so no client can take this for a clean end
    this.res.write(frame, () => this.res.destroy());
    this.finish(502);
  }

  /** Whether a failed attempt may move on: another candidate left, time left, nobody waiting on a refusal. */
  private mayRetry(): boolean {
    return (
      this.attemptIndex + 1 < this.candidates.length &&
      !this.clientGone &&
      this.gate !== Gate.Refused &&
      performance.now() - this.startedAt < this.ctx.routeDeadlineMs
    );
  }

  /**
   * Out of candidates with nothing sent yet (e.g. a preempted spot tier with the on-demand tier asleep): waits for
   * a sleeping tier of the model to wake and tries there. False when there is none, time is up, or nobody waits.
   */
  private wakeFallback(): boolean {
    if (this.clientGone || this.gate === Gate.Refused || performance.now() - this.startedAt >= this.ctx.routeDeadlineMs) return false;
    const more = this.ctx.wakeFallback(this.req.model, this.candidates.slice(0, this.attemptIndex + 1));
    if (more === null) return false;
    this.controller = null; // a client that leaves meanwhile ends the exchange (see the constructor)
    this.phase = Phase.Waiting;
    this.errorChunks = [];
    this.errorBytes = 0;
    more.then(
      (candidates) => {
        if (this.phase === Phase.Done) return;
        if (candidates.length === 0) {
          this.respondError(503, errorBody(503, 'No engine serving this model is available. Please retry shortly.', 'upstream_unavailable', null, 'server_error'), { 'retry-after': '1' });
          return;
        }
        this.candidates = candidates;
        this.attemptIndex = -1;
        this.next();
      },
      (err: unknown) => {
        if (this.phase === Phase.Done) return;
        const e = err as Partial<ApiError>;
        if (typeof e.toBody === 'function' && typeof e.status === 'number') {
          this.respondError(e.status, JSON.stringify(e.toBody()), (e.headers as Record<string, string> | null | undefined) ?? {});
        } else {
          this.ctx.onError(`waking a fallback tier failed: ${String(err)}`);
          this.respondError(503, errorBody(503, 'No engine serving this model is available. Please retry shortly.', 'upstream_unavailable', null, 'server_error'), { 'retry-after': '1' });
        }
      },
    );
    return true;
  }

  /** Marks the current endpoint failed (ejecting it if its breaker says so). */
  private endpointFailed(kind: FailureKind, message: string): void {
    const { route, endpoint } = this.candidate;
    if (endpoint.failed(kind, message, Date.now())) {
      this.ctx.metrics.ejections.labels(route.tier, endpoint.origin).inc();
      this.ctx.onError(`engine ${endpoint.origin} (tier ${route.tier}) ejected: ${message}`);
    }
  }

  private sendUpstreamError(): void {
    if (this.upstreamStatus === 503 && this.candidate.route.wake !== null) this.ctx.tierRefused(this.candidate.route.tier);
    if (this.upstreamStatus >= 500) {
      this.endpointFailed('status', `HTTP ${this.upstreamStatus}`);
      if (this.mayRetry()) {
        // nothing reached the client yet: the next replica or tier gets the request
        this.ctx.metrics.retries.labels(this.candidate.route.tier).inc();
        this.phase = Phase.Waiting;
        this.errorChunks = [];
        this.errorBytes = 0;
        this.next();
        return;
      }
      if (this.wakeFallback()) return;
    }
    const raw = Buffer.concat(this.errorChunks).toString('utf8');
    const status = clientStatusForUpstream(this.upstreamStatus || 502);
    this.ctx.metrics.upstreamErrors.labels(this.candidate.route.tier, 'status').inc();
    const headers: Record<string, string> = {};
    if (status === 429 || status === 503) headers['retry-after'] = '1';
    this.respondError(status, JSON.stringify(normalizeUpstreamError(status, raw)), headers);
  }

  private respondError(status: number, body: string, extra: Record<string, string>, billable = true): void {
    if (!this.clientGone && !this.res.headersSent) {
      if (billable) this.recordOnce(status);
      this.res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': this.requestId, ...extra });
      this.res.end(body);
    }
    this.finish(status, billable);
  }

  private finish(status: number, billable = true): void {
    if (this.phase === Phase.Done) return;
    this.phase = Phase.Done;
    const now = performance.now();
    const { metrics } = this.ctx;
    metrics.inflight.dec();
    metrics.countRequest(this.kind, status);
    const timers = this.ctx.timers[this.kind];
    timers.duration.observe((now - this.startedAt) / 1000);
    if (this.firstByteAt > 0) timers.ttfb.observe((this.firstByteAt - this.startedAt) / 1000);
    const cost = billable ? this.recordOnce(status, now) : 0;
    if (this.budgetKey !== null || this.key.budgetNanos !== null) this.ctx.settleBudget(this.key, this, cost);
    this.ctx.onSettled(this);
  }

  /** True once the request has ended (its usage recorded, its reservation settled). */
  get finished(): boolean {
    return this.phase === Phase.Done;
  }

  /** Records the request's usage event unless done already; returns what it cost, in nano-USD. */
  private recordOnce(status: number, now = performance.now()): number {
    if (this.cost < 0) this.cost = this.recordUsage(status, now);
    return this.cost;
  }

  /** Records the request's usage event; returns what it cost, in nano-USD. */
  private recordUsage(status: number, now: number): number {
    const route = this.candidate.route;
    const reached = this.contentEvents > 0 || this.usage !== null || (status < 300 && status > 0);
    let prompt = 0;
    let completion = 0;
    let cached = 0;
    let estimated = false;
    if (this.usage !== null) {
      prompt = this.usage.prompt;
      completion = this.usage.completion;
      cached = this.usage.cached;
    } else if (reached) {
      // cut before the engine reported usage: bill what was generated, from the deltas delivered
      estimated = true;
      prompt = this.req.promptTokensEstimate;
      completion = Math.max(0, this.contentEvents - this.req.choices);
    }
    this.ctx.metrics.countTokens(this.req.model, route.tier, prompt, completion);
    const cost = costNanos(route.price, { promptTokens: prompt, completionTokens: completion, cachedTokens: cached });
    this.ctx.recorder.record({
      requestId: this.requestId,
      createdAt: new Date(this.startedAtEpoch),
      orgId: this.key.orgId,
      keyId: this.key.id,
      model: this.req.model,
      tier: route.tier,
      promptTokens: prompt,
      completionTokens: completion,
      cachedTokens: cached,
      ttftMs: this.firstByteAt > 0 ? Math.round(this.firstByteAt - this.startedAt) : null,
      durationMs: Math.round(now - this.startedAt),
      status,
      estimated,
      costNanos: cost,
    });
    return cost;
  }
}
