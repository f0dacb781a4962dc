import type { ServerResponse } from 'node:http';
import { ApiError, clientStatusForUpstream } from '@spot/contract';
import { costNanos, type ModelRoute } from '@spot/tiers';
import type { LiveUsage, UsageEvent, UsageRecorder } from '@spot/usage';
import type { AuthedKey } from '../auth/authed-key';
import type { ModelApi } from '@spot/tiers';
import type { Reservation } from '../limits/reservation';
import type { GatewayMetrics } from '../metrics/gateway-metrics';
import type { PoisonGuard } from '../routing/poison-guard';
import type { Candidate, FailureKind } from '../routing/upstream-pool';
import type { CheckedRequest, ProxyKind } from './openai-request';
import { MAX_COMPLETED_BODY, type ProtocolAdapter, type ResponseKeeper, type Splice, type StreamContinuation, type StreamRelay } from './protocol-adapter';
import { type BodyRename, type ModelRename, modelRename } from './model-rename';
import { Attempt, AttemptPhase, type AttemptOwner } from './attempt';
import { AfterFailure, afterFailure, AttemptFailure, failureOf, implicatesBody, PREEMPTED, STALLED, strikesAfter } from './failure-policy';
import type { StreamTranscript } from './stream-transcript';
import type { TokenUsage } from './token-usage';
import type { ExchangeTrace } from '../tracing/exchange-trace'; // tracing hook

/** Per-process collaborators of every exchange (singletons, so an exchange holds one reference). */
export interface ExchangeContext {
  readonly metrics: GatewayMetrics;
  /** Latency histograms per proxied route, labelled once. */
  readonly timers: Readonly<Record<ProxyKind, ReturnType<GatewayMetrics['routeTimers']>>>;
  /** Where usage events go (a batch line's: nowhere, the worker records it with the line's result). */
  readonly recorder: Pick<UsageRecorder, 'record' | 'follow' | 'unfollow' | 'afterJournal'>;
  /** Batch lines: the serving tier is named in `x-spot-tier` (the worker prices the line by it). */
  readonly tierHeader?: boolean;
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
  readonly wakeFallback: (model: string, api: ModelApi, tried: readonly Candidate[]) => Promise<readonly Candidate[]> | null;
  /** Settles the request's reservation with what it cost (called once, when it ends). */
  readonly settleBudget: (reservation: Reservation, costNanos: number) => void;
  /** Bodies refused because a request carrying them lost two engines after sending them. */
  readonly poison: PoisonGuard;
  /** POISON_TTL_S, for the message of the 502. */
  readonly poisonTtlS: number;
  /** STREAM_CONTINUATIONS: continuations of a stream at most (0: streams are never continued). */
  readonly streamContinuations: number;
}

/** A segment of a continued stream that is over: what one engine delivered of it (one usage event). */
interface Segment {
  readonly route: ModelRoute;
  /** The engine's usage report, when it came before the engine was lost. */
  readonly usage: TokenUsage | null;
  /** Text chunks it delivered (its completion tokens when it reported none). */
  readonly tokens: number;
  readonly ttftMs: number | null;
  readonly durationMs: number;
}

/** The error an attempt is aborted with by the gateway itself (a stalled stream, a preemption). */
class GatewayAbortError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const TAIL_BYTES = 16 * 1024;

/** What a failure looked like, in the words of a log line and of the poisoned request's 502. */
function describeFailure(failure: AttemptFailure, code: string, status: number): string {
  switch (failure) {
    case AttemptFailure.Timeout:
      return 'the engine timed out while holding the request';
    case AttemptFailure.Lost:
      return `the engine's connection was lost after the request was sent (${code})`;
    case AttemptFailure.Unsent:
      return `the engine could not be reached (${code})`;
    case AttemptFailure.Status:
      return `the engine answered HTTP ${status}`;
    case AttemptFailure.Incomplete:
      return 'the engine ended the stream before it was complete';
    case AttemptFailure.Broken:
      return `the engine's response failed (${code})`;
    case AttemptFailure.Stalled:
      return 'the engine stopped sending mid-stream';
    case AttemptFailure.Preempted:
      return 'the engine is being preempted';
    case AttemptFailure.ErrorFrame:
      return `the engine sent an error frame mid-stream (HTTP ${status})`;
  }
}

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

const NO_ENGINE = 'No engine serving this model is available. Please retry shortly.';

/**
 * One client request relayed to the engines: it owns the client's socket (head, corked writes, the end), the
 * rate limiter's gate, the usage event and the budget settlement, and sends {@link Attempt}s, one per engine
 * replica tried. Engine bytes go to the client as they arrive through the attempt's relay; what follows a
 * failed attempt is decided in one place ({@link afterFailure}). Ends with exactly one usage event.
 */
export class ProxyExchange implements AttemptOwner, LiveUsage {
  /** The limiter's admission of the request, settled when it ends. */
  private reservation: Reservation | null = null;
  /** What the request cost once its usage is recorded; -1 before. */
  private cost = -1;
  private done = false;
  /** The current (or last) attempt; replaced on every retry. */
  private attempt!: Attempt;
  private attemptIndex = -1;
  /** Waiting for a sleeping tier to wake: no attempt is running. */
  private waking = false;
  private clientGone = false;
  private firstByteAt = 0;
  private gate = Gate.Open;
  private refusal: ApiError | null = null;
  private corked = false;
  /** A stream's head waits for its first event: until then nothing reached the client, and a failure is retried. */
  private headPending = false;
  private readonly kind: ProxyKind;
  /** The engine model name {@link upstreamJson} was serialised for. */
  private upstreamJsonModel: string;
  /** Writes relayed bytes to the client (made once: the relay is handed it on every read). */
  private readonly writeOut: (bytes: Buffer) => void;
  private readonly onDrain: () => void;
  private readonly uncork: () => void;
  /** Ends the response after its usage is journaled (see {@link endWhenJournaled}). */
  private readonly release: () => void;
  private holdCork = false;
  private endStatus = 0;
  private readonly startedAtEpoch = Date.now();
  /** When the first attempt went to an engine. */
  private sentAt = 0;
  /** Attempts that failed after the engine had the body (lost, timed out): one retry follows the first, none the second. */
  private sentFailures = 0;
  /** What keeps the finished response (stored Responses), or null: every stateless protocol. */
  private readonly keeper: ResponseKeeper | null;
  /** The protocol's own request-id header, or null (see {@link ProtocolAdapter.requestIdHeader}). */
  private readonly idHeader: string | null;
  /** The attempt's engine names the model otherwise than the client: answers are renamed (null: they agree). */
  private rename: ModelRename | null = null;
  /** The non-streamed body's renamer, when {@link rename} is set. */
  private bodyRename: BodyRename | null = null;
  /** A non-streamed body held to be completed ({@link ProtocolAdapter.completeBody}): its head waits for its end. */
  private completing: Buffer[] | null = null;
  private completingBytes = 0;
  private completingHeaders: Record<string, string | string[] | undefined> | null = null;
  /** The delivered text of a stream that may be continued on another engine; null for every other request. */
  private readonly transcript: StreamTranscript | null;
  /** The segments of a continued stream that are over, oldest first; null until the stream is continued. */
  private segments: Segment[] | null = null;
  /** The attempt whose segment is in {@link segments} (it is not metered again). */
  private closedAttempt: Attempt | null = null;
  /** Continuation attempts sent (STREAM_CONTINUATIONS at most). */
  private continuations = 0;
  /** Content events of the segments that are over (the journal's progress never goes back). */
  private pastContent = 0;
  /** The transcript's chunks when the current segment began, and at the last failure that implicated the body. */
  private segmentTokens = 0;
  private strikeTokens = 0;
  /** When the current search for an engine began: the request's arrival, or the loss a continuation follows. */
  private routeFrom: number;

  constructor(
    private readonly ctx: ExchangeContext,
    private readonly res: ServerResponse,
    readonly requestId: string,
    private readonly key: AuthedKey,
    private readonly adapter: ProtocolAdapter,
    private readonly req: CheckedRequest,
    private candidates: readonly Candidate[],
    private readonly startedAt: number,
    /** The engine body for the first candidate's model name (serialised by the caller, which answers its errors). */
    private upstreamJson: string,
    /** Tracing hook: the request's trace, null while tracing is off. */
    private readonly trace: ExchangeTrace | null = null,
  ) {
    this.upstreamJsonModel = candidates[0].route.upstreamModel;
    this.kind = adapter.kind;
    this.keeper = adapter.keeper?.(req, key) ?? null;
    this.idHeader = adapter.requestIdHeader ?? null;
    this.routeFrom = startedAt;
    this.transcript = req.stream && ctx.streamContinuations > 0 ? (adapter.continuation?.transcript(req) ?? null) : null;
    this.writeOut = (bytes) => this.write(this.rename === null ? bytes : this.rename.all(bytes));
    this.onDrain = () => {
      this.attempt.lastDataAt = performance.now(); // a pause for the client is no stall of the engine
      this.attempt.controller?.resume();
    };
    this.uncork = () => {
      if (this.holdCork) return; // released with the end, once journaled
      this.corked = false;
      if (this.res.writableCorked > 0) this.res.uncork();
    };
    this.release = () => {
      this.holdCork = false;
      this.corked = false;
      this.res.end(); // uncorks fully
      this.finish(this.endStatus);
    };
    res.on('close', () => {
      if (this.done) return;
      this.clientGone = true;
      const c = this.waking ? null : this.attempt.controller;
      if (c !== null && !c.aborted) c.abort(new ClientGoneError('client disconnected'));
      else if (c === null) this.finish(499);
    });
  }

  /** Sends the first attempt. A stream is journaled as it goes from now on (see {@link snapshot}). */
  start(): void {
    this.ctx.metrics.inflight.inc();
    if (this.req.stream) this.ctx.recorder.follow(this);
    this.sentAt = performance.now();
    this.send();
  }

  /** Content events relayed to the client so far: what the usage journal follows. */
  get progress(): number {
    const a = this.attempt;
    return this.pastContent + (a === this.closedAttempt ? 0 : (a.relay?.contentEvents ?? 0));
  }

  /** What this request would be billed if the process died now: the tokens its client has received (per segment). */
  snapshot(): UsageEvent[] {
    return this.usageEvents(502, performance.now()).events;
  }

  /** The origin of the engine replica this request is on now (null while it waits for a tier to wake). */
  get origin(): string | null {
    return this.done || this.waking ? null : this.attempt.candidate.endpoint.origin;
  }

  /**
   * The engine serving this request is going away (a preemption deadline): a stream under way continues on another
   * engine, a request of which nothing reached the client yet is retried elsewhere. False when it stays (done, or
   * a response under way that cannot be continued: it may still finish before the engine goes).
   */
  preempt(): boolean {
    if (this.done || this.waking || this.attempt.phase === AttemptPhase.Over) return false;
    if (this.res.headersSent && !this.canContinue()) return false;
    this.attempt.abort(new GatewayAbortError(PREEMPTED, 'the engine is being preempted'));
    return true;
  }

  /** Aborts a stream under way whose engine sent nothing for `stallMs` (only a stream that can be continued). */
  checkStall(now: number, stallMs: number): void {
    if (this.transcript === null || this.done || this.waking) return;
    const a = this.attempt;
    if (a.phase !== AttemptPhase.Relaying || !this.res.headersSent || now - a.lastDataAt < stallMs) return;
    if (a.controller === null || a.controller.paused || !this.canContinue()) return;
    a.abort(new GatewayAbortError(STALLED, `no byte from the engine for ${stallMs} ms`));
  }

  /**
   * Holds the engine's response until the rate limiter's verdict is in (call right after {@link start},
   * before any response can arrive: they come on a later turn of the event loop).
   */
  awaitAdmission(reservation: Reservation): void {
    this.reservation = reservation;
    if (reservation.verdict === null) return;
    this.gate = Gate.Pending;
    void reservation.verdict.then((refusal) => this.onAdmission(refusal));
  }

  /** Aborts the engine request (shutdown past its grace period): the client sees an error, not a clean end. */
  cut(reason: string): void {
    if (this.done || this.waking) return;
    this.attempt.abort(new Error(reason));
  }

  private send(): void {
    this.attemptIndex++;
    const candidate = this.candidates[this.attemptIndex];
    const { route, endpoint } = candidate;
    let relay: StreamRelay | null = null;
    let body = this.upstreamJson;
    let path = this.adapter.upstreamPath;
    if (this.segments !== null) {
      // a continuation: the delivered text re-sent as the prefix, the engine's stream spliced into the client's
      const cont = this.adapter.continuation!;
      const t = this.transcript!;
      const next = cont.body(this.req, route.upstreamModel, t);
      relay = next === null ? null : cont.relay(this.req, t, this.splice());
      if (next === null || relay === null) {
        this.closeStream(cont, route.tier);
        return;
      }
      body = next;
      path = cont.upstreamPath ?? path;
    } else if (route.upstreamModel !== this.upstreamJsonModel) {
      // a retry on a tier that names the model otherwise
      try {
        this.upstreamJson = this.adapter.upstreamBody(this.req, route.upstreamModel);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        this.respondError(err.status, this.adapter.renderError(err), {}, false);
        return;
      }
      this.upstreamJsonModel = route.upstreamModel;
      body = this.upstreamJson;
    }
    // a continuation's chunks carry the first segment's model (see the splice): the first attempt's rename stays
    if (this.segments === null) this.rename = modelRename(route.upstreamModel, this.req.model);
    if (this.req.stream && relay === null) relay = this.adapter.streamRelay(this.req, this.transcript);
    const attempt = new Attempt(this, candidate, relay);
    this.attempt = attempt;
    this.waking = false;
    endpoint.taken();
    // an upload (audio) is streamed, a fresh body per attempt; every other protocol sends its serialised JSON
    const upload = this.adapter.upload?.(this.req, route.upstreamModel);
    const headers: Record<string, string> = {
      'content-type': upload?.contentType ?? 'application/json',
      accept: this.req.stream ? 'text/event-stream' : 'application/json',
      'x-request-id': this.requestId,
    };
    if (route.apiKey !== null) headers.authorization = `Bearer ${route.apiKey}`;
    // tracing hook: the attempt's span, whose traceparent goes into headers
    const handler = this.trace === null ? attempt : this.trace.attempt(attempt, candidate, headers, this.segments === null ? 'attempt' : 'continuation');
    endpoint.pool.dispatch({ method: 'POST', path, headers, body: upload?.body ?? body }, handler);
  }

  // ---- the attempt's events (an attempt the request has left cannot send any: it is over)

  attemptStarted(attempt: Attempt): void {
    if (this.clientGone) attempt.abort(new ClientGoneError('client disconnected'));
    else if (this.gate === Gate.Refused) attempt.abort(new RefusedError('rate limited'));
  }

  attemptHead(attempt: Attempt, _status: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.gate === Gate.Pending) {
      // the engine beat the limiter: hold its response (the parser stops until resumed)
      attempt.heldHeaders = headers;
      attempt.controller?.pause();
      return;
    }
    this.startResponse(attempt, headers);
  }

  attemptData(attempt: Attempt, chunk: Buffer): void {
    if (attempt.phase === AttemptPhase.ErrorBody) {
      attempt.collectError(chunk);
      return;
    }
    if (attempt.phase !== AttemptPhase.Relaying || this.clientGone) return;
    const now = performance.now();
    attempt.lastDataAt = now;
    if (attempt.firstDataAt === 0) attempt.firstDataAt = now;
    if (this.headPending) attempt.upstreamAt = now;
    if (this.firstByteAt === 0) this.firstByteAt = now;
    const relay = attempt.relay;
    if (relay !== null) {
      const frames = relay.errorFrames;
      relay.push(chunk, this.writeOut);
      if (relay.errorFrames !== frames) this.ctx.metrics.upstreamErrors.labels(attempt.candidate.route.tier, 'frame').inc(relay.errorFrames - frames);
    } else {
      this.keepTail(attempt, chunk);
      if (this.adapter.usageInHead) this.keepHead(attempt, chunk);
      if (this.keeper !== null) this.collect(attempt, chunk, this.keeper);
      if (this.completing !== null) this.hold(attempt, chunk);
      else if (this.bodyRename === null) this.write(chunk);
      else {
        const out = this.bodyRename.push(chunk);
        if (out.length > 0) this.write(out);
      }
    }
    const c = attempt.controller;
    if (c !== null && this.res.writableNeedDrain && !c.paused) {
      c.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  attemptEnd(attempt: Attempt): void {
    if (attempt.phase === AttemptPhase.ErrorBody) {
      this.failed(attempt, AttemptFailure.Status, '');
      return;
    }
    if (this.clientGone) {
      this.finish(499);
      return;
    }
    const relay = attempt.relay;
    if (relay === null) {
      let kept: Buffer | null = attempt.body !== null ? Buffer.concat(attempt.body, attempt.bodyBytes) : null;
      if (this.completing !== null) {
        const sent = this.sendCompleted(attempt);
        // what the client got is kept, unless the keeper's bound was passed
        if (kept !== null) kept = sent;
      } else {
        const rest = this.bodyRename?.end() ?? null;
        if (rest !== null) this.write(rest);
      }
      this.recordOnce(attempt.status);
      this.endWhenJournaled(attempt.status);
      if (this.keeper !== null && attempt.status < 300 && kept !== null) this.keeper.keep(this.requestId, kept);
      return;
    }
    if (relay.held !== null) {
      // the engine ended with a 5xx error frame, held back: continued elsewhere, or passed on as before
      relay.end(this.writeOut);
      if (this.failed(attempt, AttemptFailure.ErrorFrame, '')) return;
      relay.releaseHeld(this.writeOut);
    } else if (relay.errorFrameStatus >= 500 && this.res.headersSent) {
      // a stream that could not be continued ended by its engine's error frame
      relay.end(this.writeOut);
      this.lost(attempt.candidate.route.tier, this.notContinued());
    } else if (!relay.sawDone && this.res.headersSent && this.canContinue()) {
      relay.dropRest(); // a half event is not the client's: the stream goes on from the last whole one
    } else relay.end(this.writeOut);
    if (!relay.sawDone) {
      this.failed(attempt, AttemptFailure.Incomplete, '');
      return;
    }
    const status = relay.errorFrameStatus || attempt.status;
    this.recordOnce(status);
    if (this.headPending) this.sendStreamHead();
    this.endWhenJournaled(status);
    if (this.keeper !== null && relay.errorFrames === 0) this.keeper.keep(this.requestId, relay);
  }

  /**
   * Ends the response once its usage event is in the journal (the recorder writes a turn's events at once): the
   * bytes of this turn stay corked until then, so a crash in between cannot leave a client with an answer we
   * never billed.
   */
  private endWhenJournaled(status: number): void {
    this.endStatus = status;
    this.holdCork = true;
    this.ctx.recorder.afterJournal(this.release);
  }

  attemptError(attempt: Attempt, err: Error): void {
    if (this.gate === Gate.Pending) {
      attempt.heldError = err; // decided (retry, 502, or the limiter's 429) once the verdict is in
      return;
    }
    this.handleError(attempt, err);
  }

  /** The limiter's verdict: let the held response through, or abort the engine and answer 429. */
  private onAdmission(refusal: ApiError | null): void {
    if (this.done) return;
    const attempt = this.attempt;
    if (refusal === null) {
      this.gate = Gate.Open;
      if (attempt.heldError !== null) {
        const err = attempt.heldError;
        attempt.heldError = null;
        this.handleError(attempt, err);
      } else if (attempt.heldHeaders !== null) {
        const headers = attempt.heldHeaders;
        attempt.heldHeaders = null;
        this.startResponse(attempt, headers);
        attempt.controller?.resume();
      }
      return;
    }
    this.gate = Gate.Refused;
    this.refusal = refusal;
    if (attempt.heldError !== null || this.waking) this.refuse();
    else attempt.abort(new RefusedError('rate limited'));
  }

  private refuse(): void {
    const r = this.refusal!;
    this.respondError(r.status, this.adapter.renderError(r), (r.headers as Record<string, string> | null) ?? {}, false);
  }

  private startResponse(attempt: Attempt, headers: Record<string, string | string[] | undefined>): void {
    const status = attempt.status;
    if (status < 500) attempt.candidate.endpoint.succeeded();
    if (status >= 300) {
      attempt.phase = AttemptPhase.ErrorBody;
      return;
    }
    attempt.phase = AttemptPhase.Relaying;
    attempt.lastDataAt = performance.now();
    if (this.clientGone) return;
    this.corkUntilNextTurn();
    if (this.res.headersSent) return; // a continuation: the client's stream is under way
    if (this.req.stream) {
      // engines answer 200 before queueing and prefill: a replica lost meanwhile (spot preemption) must not
      // have sent the client anything yet, so the head leaves with the first event (see write)
      this.headPending = true;
    } else if (this.adapter.completeBody !== undefined) {
      // the head leaves with the completed body (see sendCompleted)
      this.completing = [];
      this.completingBytes = 0;
      this.completingHeaders = headers;
    } else {
      this.bodyRename = this.rename?.body() ?? null;
      const out: Record<string, string> = {
        'content-type': (headers['content-type'] as string | undefined) ?? 'application/json',
        'x-request-id': this.requestId,
      };
      const length = headers['content-length'];
      // a renamed body's length is not the engine's: it goes chunked
      if (typeof length === 'string' && this.bodyRename === null) out['content-length'] = length;
      if (this.ctx.tierHeader === true) out['x-spot-tier'] = attempt.candidate.route.tier;
      if (this.idHeader !== null) out[this.idHeader] = this.requestId;
      this.timingHeaders(out);
      this.res.writeHead(status, out);
    }
  }

  private handleError(attempt: Attempt, err: Error): void {
    if (this.clientGone) {
      this.finish(499);
      return;
    }
    if (this.gate === Gate.Refused) {
      this.refuse();
      return;
    }
    if (err instanceof ApiError) {
      // the client's own upload failed as it streamed to the engine (too large, a malformed form): its 4xx, unbilled
      this.respondError(err.status, this.adapter.renderError(err), {}, false);
      return;
    }
    const code = (err as NodeJS.ErrnoException).code ?? err.message;
    // an error status whose body broke off: answer with what came
    if (attempt.phase === AttemptPhase.ErrorBody) this.failed(attempt, AttemptFailure.Status, code);
    else this.failed(attempt, failureOf(code), code);
  }

  /**
   * Every failed attempt comes here: account for it, then do what {@link afterFailure} says. True when the stream
   * is continued on another engine: only then for an {@link AttemptFailure.ErrorFrame}, whose frame the caller
   * passes on otherwise (the stream then ends as the engine ended it).
   */
  private failed(attempt: Attempt, failure: AttemptFailure, code: string): boolean {
    const { route, endpoint } = attempt.candidate;
    const midstream = attempt.phase === AttemptPhase.Relaying;
    const status = failure === AttemptFailure.ErrorFrame ? (attempt.relay?.errorFrameStatus ?? 500) : attempt.status;
    const what = describeFailure(failure, code, status);
    const { metrics } = this.ctx;
    if (failure === AttemptFailure.Preempted || failure === AttemptFailure.ErrorFrame) {
      // the engine is going away by notice (not its fault), or it said what failed (its frame is counted)
    } else if (failure === AttemptFailure.Status) {
      if (attempt.status === 503 && route.wake !== null) this.ctx.tierRefused(route.tier);
      if (attempt.status >= 500) this.endpointFailed(attempt, 'status', `HTTP ${attempt.status}`);
    } else {
      const kind = midstream || failure === AttemptFailure.Incomplete ? 'midstream' : failure === AttemptFailure.Timeout ? 'timeout' : 'connect';
      metrics.upstreamErrors.labels(route.tier, kind).inc();
      // an engine that refuses or resets connections has vanished (spot preemption): ejected at once
      const breaker = failure === AttemptFailure.Unsent || failure === AttemptFailure.Lost ? 'connect' : 'status';
      this.endpointFailed(attempt, breaker, midstream ? `mid-response: ${what}` : what);
      if (midstream) this.ctx.onError(`engine ${endpoint.origin} (tier ${route.tier}) failed mid-response: ${what}`);
    }
    const delivered = this.transcript?.tokens ?? 0;
    if (implicatesBody(failure) && !this.clientGone && this.gate !== Gate.Refused) {
      this.sentFailures = strikesAfter(this.sentFailures, delivered > this.strikeTokens);
      this.strikeTokens = delivered;
      if (this.sentFailures === 1) this.ctx.metrics.poison.labels('struck').inc();
    }
    // a continuation that never reached an engine used up nothing
    if (failure === AttemptFailure.Unsent && this.segments !== null && this.closedAttempt !== attempt) this.continuations--;
    const clientReceived = this.res.headersSent;
    const continuable = clientReceived && this.canContinue();
    const decision = afterFailure({ failure, status, clientReceived, sentFailures: this.sentFailures, continuable });
    if (clientReceived && decision !== AfterFailure.Continue && this.req.stream) this.lost(route.tier, decision === AfterFailure.Poisoned ? 'poisoned' : this.notContinued());
    switch (decision) {
      case AfterFailure.Poisoned:
        this.poisoned(what);
        return false;
      case AfterFailure.Cut:
        if (failure === AttemptFailure.ErrorFrame) return false;
        this.cutResponse(failure === AttemptFailure.Incomplete ? 'The engine ended the stream before it was complete.' : `The engine failed mid-stream (${code}).`);
        return false;
      case AfterFailure.Continue:
        return this.continueStream(attempt, failure);
      case AfterFailure.Retry:
        if (this.retry(attempt)) return false;
        this.answer(attempt, failure, what);
        return false;
      case AfterFailure.Answer:
        this.answer(attempt, failure, what);
        return false;
    }
  }

  /** Whether a stream whose bytes reached the client may go on on another engine now. */
  private canContinue(): boolean {
    const t = this.transcript;
    return t !== null && t.honest && !this.clientGone && this.gate !== Gate.Refused && !this.headPending && this.continuations < this.ctx.streamContinuations;
  }

  /** Why a stream lost after bytes reached its client was not continued (the metric's outcome). */
  private notContinued(): string {
    const t = this.transcript;
    if (t === null || !t.honest) return 'unsupported';
    if (this.continuations >= this.ctx.streamContinuations) return 'exhausted';
    return 'cut';
  }

  private lost(tier: string, outcome: string): void {
    this.ctx.metrics.streamContinuations.labels(tier, outcome).inc();
  }

  /**
   * The engine of a stream under way was lost: its segment is closed (metered as delivered), and the stream goes
   * on on another candidate (another tier first), or a tier woken for it, from the delivered text; the gateway ends
   * it itself when nothing is left to generate. True when the stream goes on; false when it was cut (no engine).
   */
  private continueStream(attempt: Attempt, failure: AttemptFailure): boolean {
    const lostTier = attempt.candidate.route.tier;
    const now = performance.now();
    if (attempt.status >= 200 && attempt.status < 300 && this.closedAttempt !== attempt) {
      // an attempt that relayed is a segment; one refused before its stream began is only a try
      (this.segments ??= []).push(this.segmentOf(attempt, now));
      this.closedAttempt = attempt;
      this.pastContent += attempt.relay?.contentEvents ?? 0;
      this.segmentTokens = this.transcript!.tokens;
      this.routeFrom = now;
    }
    const t = this.transcript!;
    if (t.finished) {
      this.closeStream(this.adapter.continuation!, lostTier);
      return true;
    }
    if (now - this.routeFrom < this.ctx.routeDeadlineMs) {
      this.preferOtherTier(lostTier);
      if (this.attemptIndex + 1 < this.candidates.length) {
        this.continuations++;
        this.lost(lostTier, 'continued');
        this.send();
        return true;
      }
      if (this.wakeFallback()) {
        this.continuations++;
        this.lost(lostTier, 'continued');
        return true;
      }
    }
    this.lost(lostTier, 'no_engine');
    // an engine's error frame then reaches the client as it came (the caller passes it on)
    if (failure !== AttemptFailure.ErrorFrame) this.cutResponse('The engine failed mid-stream and no other engine could continue the stream.');
    return false;
  }

  /** Ends a continued stream whose engine was lost with nothing left to generate: the gateway writes its end. */
  private closeStream(cont: StreamContinuation, lostTier: string): void {
    const { prompt, completion } = this.totals(this.segments ?? []);
    const end = cont.closing(this.req, this.transcript!, { prompt: prompt.prompt, completion });
    if (end === null) {
      this.cutResponse('The engine failed mid-stream.');
      return;
    }
    this.lost(lostTier, 'closed');
    this.write(end);
    this.recordOnce(200);
    this.endWhenJournaled(200);
    // a stateful protocol's final object is the one the gateway wrote (see StreamContinuation.closing)
    if (this.keeper !== null) this.keeper.keep(this.requestId, this.transcript!);
  }

  /** What the splice of the next continuation knows: the completion tokens delivered, the prompt if reported. */
  private splice(): Splice {
    const segments = this.segments ?? [];
    const { prompt, completion } = this.totals(segments);
    return { priorTokens: completion, prompt: prompt.reported ? prompt.prompt : null };
  }

  /**
   * The prompt of a continued stream (billed once, to its first segment) and the completion tokens of `segments`.
   * The first engine's report when it made one; else the first later engine's prompt less the delivered text it
   * was re-sent as (estimated); else the request's estimate.
   */
  private totals(segments: readonly Segment[]): { prompt: { prompt: number; cached: number; reported: boolean }; completion: number } {
    let completion = 0;
    let prompt: { prompt: number; cached: number; reported: boolean } | null = null;
    for (let i = 0; i < segments.length; i++) {
      const u = segments[i].usage;
      if (prompt === null && u !== null) prompt = i === 0 ? { prompt: u.prompt, cached: u.cached, reported: true } : { prompt: Math.max(0, u.prompt - completion), cached: 0, reported: true };
      completion += u?.completion ?? segments[i].tokens;
    }
    return { prompt: prompt ?? { prompt: this.req.promptTokensEstimate, cached: 0, reported: false }, completion };
  }

  /** The segment `attempt` served, as of `now`. */
  private segmentOf(attempt: Attempt, now: number): Segment {
    const first = this.segments === null || this.segments.length === 0;
    const from = first ? this.startedAt : this.routeFrom;
    const ttft = first ? this.firstByteAt : attempt.firstDataAt;
    return {
      route: attempt.candidate.route,
      usage: attempt.relay?.usage ?? null,
      tokens: (this.transcript?.tokens ?? 0) - this.segmentTokens,
      ttftMs: ttft > 0 ? Math.round(ttft - from) : null,
      durationMs: Math.round(now - from),
    };
  }

  /** The failed attempt's request goes to the next candidate, or waits for a woken tier; false when neither is left. */
  private retry(attempt: Attempt): boolean {
    if (this.clientGone || this.gate === Gate.Refused || performance.now() - this.routeFrom >= this.ctx.routeDeadlineMs) return false;
    this.headPending = false;
    this.firstByteAt = 0;
    if (this.attemptIndex + 1 < this.candidates.length) {
      this.ctx.metrics.retries.labels(attempt.candidate.route.tier).inc();
      // after losing an engine that had the body, its one retry goes to another tier when there is one: the
      // replicas of a spot tier are often lost together (a reclaim wave), an innocent body should not lose two
      if (this.sentFailures > 0) this.preferOtherTier(attempt.candidate.route.tier);
      this.send();
      return true;
    }
    return this.wakeFallback();
  }

  /** Moves the first remaining candidate that is not on `tier` to the front of the remaining ones. */
  private preferOtherTier(tier: string): void {
    const next = this.attemptIndex + 1;
    const other = this.candidates.findIndex((c, i) => i >= next && c.route.tier !== tier);
    if (other <= next) return;
    const reordered = [...this.candidates];
    const [pick] = reordered.splice(other, 1);
    reordered.splice(next, 0, pick);
    this.candidates = reordered;
  }

  /** The client's answer to a failure no other engine will get: an error response (nothing was sent yet). */
  private answer(attempt: Attempt, failure: AttemptFailure, what: string): void {
    const { route, endpoint } = attempt.candidate;
    switch (failure) {
      case AttemptFailure.Status: {
        const raw = Buffer.concat(attempt.errorChunks).toString('utf8');
        const status = clientStatusForUpstream(attempt.status || 502);
        this.ctx.metrics.upstreamErrors.labels(route.tier, 'status').inc();
        const headers: Record<string, string> = {};
        if (status === 429 || status === 503) headers['retry-after'] = '1';
        this.respondError(status, this.adapter.engineError(status, raw), headers);
        return;
      }
      case AttemptFailure.Timeout:
        this.ctx.onError(`engine ${endpoint.origin} (tier ${route.tier}) failed before responding: ${what}`);
        this.respondError(504, this.adapter.errorBody(504, 'The engine did not answer in time. Please retry.', 'upstream_unavailable'), { 'retry-after': '1' });
        return;
      case AttemptFailure.Incomplete:
        this.respondError(502, this.adapter.errorBody(502, 'The engine ended the stream before it was complete.', 'upstream_unavailable'), { 'retry-after': '1' });
        return;
      case AttemptFailure.Unsent:
      case AttemptFailure.Lost:
      case AttemptFailure.Broken:
      case AttemptFailure.Stalled:
      case AttemptFailure.Preempted:
      case AttemptFailure.ErrorFrame:
        this.ctx.onError(`engine ${endpoint.origin} (tier ${route.tier}) failed before responding: ${what}`);
        this.respondError(502, this.adapter.errorBody(502, 'The engine serving this model is unreachable. Please retry shortly.', 'upstream_unavailable'), { 'retry-after': '1' });
        return;
    }
  }

  /**
   * The request lost a second engine after sending it its body: it is not tried again (it may be what kills
   * them), and the body is refused for POISON_TTL_S. A response not yet begun gets a 502 `upstream_error`
   * naming the failure, a begun stream its error frame.
   */
  private poisoned(what: string): void {
    this.ctx.poison.poison(this.ctx.poison.fingerprint(this.req.body));
    this.ctx.metrics.poison.labels('detected').inc();
    this.ctx.onError(`request ${this.requestId}: ${what} on a second engine; identical requests are refused for ${this.ctx.poisonTtlS} s`);
    const message = `The request failed on two engines in a row (${what}), so it is not retried again; identical requests are refused for ${this.ctx.poisonTtlS} seconds.`;
    if (this.res.headersSent) {
      this.cutResponse(message);
      return;
    }
    this.headPending = false;
    this.respondError(502, this.adapter.errorBody(502, message, 'upstream_error'), { 'x-should-retry': 'false' });
  }

  /** Collects a non-streamed body to keep, within the keeper's bound (past it, the body is dropped and not kept). */
  private collect(attempt: Attempt, chunk: Buffer, keeper: ResponseKeeper): void {
    if (attempt.bodyBytes < 0) return;
    attempt.bodyBytes += chunk.length;
    if (attempt.bodyBytes > keeper.maxBodyBytes) {
      attempt.body = null;
      attempt.bodyBytes = -1;
      keeper.tooLarge(this.requestId);
      return;
    }
    (attempt.body ??= []).push(chunk);
  }

  /** Holds a read of a body to complete; past {@link MAX_COMPLETED_BODY} the head and the body go out as the engine sent them. */
  private hold(attempt: Attempt, chunk: Buffer): void {
    const held = this.completing!;
    held.push(chunk);
    this.completingBytes += chunk.length;
    if (this.completingBytes <= MAX_COMPLETED_BODY) return;
    this.completing = null;
    this.writeBodyHead(attempt, this.completingHeaders ?? {}, null);
    for (const c of held) this.write(c);
  }

  /** The held body, completed by the adapter, with its head; returns it (what a keeper keeps). */
  private sendCompleted(attempt: Attempt): Buffer {
    const body = Buffer.concat(this.completing!, this.completingBytes);
    this.completing = null;
    const out = attempt.status < 300 ? this.adapter.completeBody!(this.req, body) : body;
    this.writeBodyHead(attempt, this.completingHeaders ?? {}, out.length);
    this.write(out);
    return out;
  }

  private writeBodyHead(attempt: Attempt, headers: Record<string, string | string[] | undefined>, length: number | null): void {
    const out: Record<string, string> = {
      'content-type': (headers['content-type'] as string | undefined) ?? 'application/json',
      'x-request-id': this.requestId,
    };
    const engineLength = headers['content-length'];
    if (length !== null) out['content-length'] = String(length);
    else if (typeof engineLength === 'string') out['content-length'] = engineLength;
    if (this.idHeader !== null) out[this.idHeader] = this.requestId;
    this.timingHeaders(out);
    this.res.writeHead(attempt.status, out);
  }

  private keepTail(attempt: Attempt, chunk: Buffer): void {
    const tail = attempt.tail;
    if (chunk.length >= TAIL_BYTES || tail === null) attempt.tail = chunk.length > TAIL_BYTES ? chunk.subarray(chunk.length - TAIL_BYTES) : chunk;
    else {
      const joined = Buffer.concat([tail, chunk]);
      attempt.tail = joined.length > TAIL_BYTES ? joined.subarray(joined.length - TAIL_BYTES) : joined;
    }
  }

  private keepHead(attempt: Attempt, chunk: Buffer): void {
    const head = attempt.head;
    if (head === null) attempt.head = chunk.length > TAIL_BYTES ? chunk.subarray(0, TAIL_BYTES) : chunk;
    else if (head.length < TAIL_BYTES) attempt.head = Buffer.concat([head, chunk]).subarray(0, TAIL_BYTES);
  }

  private write(buf: Buffer): void {
    if (this.clientGone) return;
    this.corkUntilNextTurn();
    if (this.headPending) this.sendStreamHead();
    this.res.write(buf);
  }

  private sendStreamHead(): void {
    this.headPending = false;
    const out: Record<string, string> = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-request-id': this.requestId,
    };
    if (this.idHeader !== null) out[this.idHeader] = this.requestId;
    this.timingHeaders(out);
    this.res.writeHead(this.attempt.status, out);
  }

  /**
   * `x-spot-overhead-ms`: the gateway's own time in this request as the head leaves (before the engine got it,
   * plus from the engine's bytes to our head: admission wait and relay), and the same as `Server-Timing`
   * beside the engine's time to those bytes. Failed attempts count as engine time.
   */
  private timingHeaders(out: Record<string, string>): void {
    const now = performance.now();
    const upstreamAt = this.attempt.upstreamAt;
    const gateway = (this.sentAt - this.startedAt + (now - upstreamAt)).toFixed(2);
    out['x-spot-overhead-ms'] = gateway;
    out['server-timing'] = `gateway;dur=${gateway};desc="spotinference", upstream;dur=${(upstreamAt - this.sentAt).toFixed(2)}`;
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

  /**
   * Ends a response whose bytes already reached the client with an error: a stream's error frame, then the
   * connection is cut (no terminating chunk, so no client can take it for a clean end); a plain response is cut.
   * A stream whose head is still pending gets a plain error response instead, which the SDKs retry.
   */
  private cutResponse(message: string): void {
    if (this.headPending) {
      this.headPending = false;
      this.respondError(502, this.adapter.errorBody(502, message, 'upstream_unavailable'), { 'retry-after': '1' });
      return;
    }
    if (this.req.stream) this.res.write(this.adapter.midstreamErrorFrame(message, this.attempt.relay), () => this.res.destroy());
    else this.res.destroy();
    this.finish(502);
  }

  /**
   * Out of candidates with nothing sent yet (e.g. a preempted spot tier with the on-demand tier asleep): waits for
   * a sleeping tier of the model to wake and tries there. False when there is none.
   */
  private wakeFallback(): boolean {
    const more = this.ctx.wakeFallback(this.req.model, this.adapter.api, this.candidates.slice(0, this.attemptIndex + 1));
    if (more === null) return false;
    if (this.trace !== null) this.trace.wake(more); // tracing hook
    this.waking = true; // a client that leaves meanwhile ends the exchange (see the constructor)
    more.then(
      (candidates) => {
        if (this.done) return;
        if (candidates.length === 0) {
          if (this.res.headersSent) this.cutResponse(NO_ENGINE);
          else this.respondError(503, this.adapter.errorBody(503, NO_ENGINE, 'upstream_unavailable'), { 'retry-after': '1' });
          return;
        }
        this.candidates = candidates;
        this.attemptIndex = -1;
        this.send();
      },
      (err: unknown) => {
        if (this.done) return;
        const e = err as Partial<ApiError>;
        if (this.res.headersSent) {
          // a continuation that found no engine in time: the stream it continued ends with an error frame
          this.cutResponse(e instanceof ApiError ? e.message : NO_ENGINE);
        } else if (e instanceof ApiError) {
          this.respondError(e.status, this.adapter.renderError(e), (e.headers as Record<string, string> | null) ?? {});
        } else {
          this.ctx.onError(`waking a fallback tier failed: ${String(err)}`);
          this.respondError(503, this.adapter.errorBody(503, NO_ENGINE, 'upstream_unavailable'), { 'retry-after': '1' });
        }
      },
    );
    return true;
  }

  /** Marks the attempt's endpoint failed (ejecting it if its breaker says so). */
  private endpointFailed(attempt: Attempt, kind: FailureKind, message: string): void {
    const { route, endpoint } = attempt.candidate;
    if (endpoint.failed(kind, message, Date.now())) {
      this.ctx.metrics.ejections.labels(endpoint.tier, endpoint.replica).inc();
      this.ctx.onError(`engine ${endpoint.origin} (tier ${route.tier}) ejected: ${message}`);
    }
  }

  private respondError(status: number, body: string, extra: Record<string, string>, billable = true): void {
    if (!this.clientGone && !this.res.headersSent) {
      if (billable) this.recordOnce(status);
      const head: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': this.requestId, ...extra };
      if (this.idHeader !== null) head[this.idHeader] = this.requestId;
      this.res.writeHead(status, head);
      this.res.end(body);
    }
    this.finish(status, billable);
  }

  private finish(status: number, billable = true): void {
    if (this.done) return;
    this.done = true;
    const now = performance.now();
    const { metrics } = this.ctx;
    metrics.inflight.dec();
    metrics.countRequest(this.kind, status);
    const timers = this.ctx.timers[this.kind];
    timers.duration.observe((now - this.startedAt) / 1000);
    if (this.firstByteAt > 0) timers.ttfb.observe((this.firstByteAt - this.startedAt) / 1000);
    const cost = billable ? this.recordOnce(status, now) : 0;
    if (!billable && this.req.stream) this.ctx.recorder.unfollow(this);
    if (this.reservation !== null) this.ctx.settleBudget(this.reservation, cost);
    if (this.trace !== null) this.trace.finished(status); // tracing hook
    this.ctx.onSettled(this);
  }

  /** Records the request's usage event unless done already; returns what it cost, in nano-USD. */
  private recordOnce(status: number, now = performance.now()): number {
    if (this.cost < 0) this.cost = this.recordUsage(status, now);
    return this.cost;
  }

  /** Records the request's usage event; returns what it cost, in nano-USD. */
  private recordUsage(status: number, now: number): number {
    const { events, cost } = this.usageEvents(status, now);
    for (const event of events) {
      if (this.trace !== null) this.trace.usage(event); // tracing hook
      this.ctx.metrics.countTokens(this.req.model, event.tier, event.promptTokens, event.completionTokens);
      this.ctx.recorder.record(event);
    }
    // journaled: the progress lines are no longer needed
    if (this.req.stream) this.ctx.recorder.unfollow(this);
    return cost;
  }

  /** The request's usage events as of now (one per segment of a continued stream), and their cost in nano-USD. */
  private usageEvents(status: number, now: number): { events: UsageEvent[]; cost: number } {
    if (this.segments === null) {
      const { event, cost } = this.usageEvent(status, now);
      return { events: [event], cost };
    }
    const segments = [...this.segments];
    const a = this.attempt;
    if (a !== this.closedAttempt && a.status >= 200 && a.status < 300) segments.push(this.segmentOf(a, now));
    const { prompt } = this.totals(segments);
    const events: UsageEvent[] = [];
    let cost = 0;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const promptTokens = i === 0 ? prompt.prompt : 0;
      const cachedTokens = i === 0 ? prompt.cached : 0;
      const completionTokens = seg.usage?.completion ?? seg.tokens;
      // the prompt once, at the price of the tier that first served it; each completion token at its own tier's
      const c = costNanos(seg.route.price, { promptTokens, completionTokens, cachedTokens });
      cost += c;
      events.push({
        requestId: this.requestId,
        segment: i,
        createdAt: new Date(this.startedAtEpoch),
        orgId: this.key.orgId,
        keyId: this.key.id,
        model: this.req.model,
        tier: seg.route.tier,
        promptTokens,
        completionTokens,
        cachedTokens,
        ttftMs: seg.ttftMs,
        durationMs: seg.durationMs,
        status,
        estimated: seg.usage === null,
        costNanos: c,
      });
    }
    return { events, cost };
  }

  /** The usage event of a request served by one engine, and its cost in nano-USD. */
  private usageEvent(status: number, now: number): { event: UsageEvent; cost: number } {
    const attempt = this.attempt;
    const route = attempt.candidate.route;
    const relay = attempt.relay;
    const usage = relay !== null ? relay.usage : attempt.tail !== null && attempt.phase !== AttemptPhase.ErrorBody ? this.adapter.usageFromBody(attempt.tail.toString('utf8'), attempt.head?.toString('utf8') ?? null, this.req) : null;
    const delivered = relay?.contentEvents ?? 0;
    const reached = delivered > 0 || usage !== null || (status < 300 && status > 0);
    let prompt = 0;
    let completion = 0;
    let cached = 0;
    let audioSeconds = 0;
    let estimated = false;
    if (usage !== null) {
      prompt = usage.prompt;
      completion = usage.completion;
      cached = usage.cached;
      audioSeconds = usage.audioSeconds ?? 0;
      estimated = usage.estimated === true;
    } else if (reached) {
      // cut before the engine reported usage: bill what was generated, from the deltas delivered
      estimated = true;
      prompt = this.req.promptTokensEstimate;
      completion = Math.max(0, delivered - this.req.choices);
    }
    const cost = costNanos(route.price, { promptTokens: prompt, completionTokens: completion, cachedTokens: cached, audioSeconds });
    const event: UsageEvent = {
      requestId: this.requestId,
      segment: 0,
      createdAt: new Date(this.startedAtEpoch),
      orgId: this.key.orgId,
      keyId: this.key.id,
      model: this.req.model,
      tier: route.tier,
      promptTokens: prompt,
      completionTokens: completion,
      cachedTokens: cached,
      audioSeconds,
      ttftMs: this.firstByteAt > 0 ? Math.round(this.firstByteAt - this.startedAt) : null,
      durationMs: Math.round(now - this.startedAt),
      status,
      estimated,
      costNanos: cost,
    };
    return { event, cost };
  }
}
