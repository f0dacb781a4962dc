/** A request that lost this many engines after sending them its body gets no third: the body is refused. */
export const SENT_FAILURES_MAX = 2;

/** How an attempt against one engine failed. */
export const enum AttemptFailure {
  /** The connection could not be made: the request never reached the engine. */
  Unsent,
  /** The connection was lost after the request was sent (reset, closed): the engine may have died of it. */
  Lost,
  /** The engine sent no response head in time while holding the request. */
  Timeout,
  /** The engine answered an error status (its body read). */
  Status,
  /** A stream ended before `[DONE]`. */
  Incomplete,
  /** Anything else (a protocol error, an abort we did not ask for): not worth another engine. */
  Broken,
  /** A stream under way sent nothing for STREAM_STALL_MS: the engine is taken for lost (the gateway aborted it). */
  Stalled,
  /** The gateway took the request off its engine (a preemption deadline): the engine is going away, not at fault. */
  Preempted,
  /** The engine ended a stream under way with an error frame of a 5xx (held back from the client). */
  ErrorFrame,
}

/** What the exchange does next. */
export const enum AfterFailure {
  /** Another replica, or a tier woken for it, gets the request (if any is left within the deadline), else Answer. */
  Retry,
  /** Answer the client with this failure (an error response: nothing reached the client yet). */
  Answer,
  /** Bytes reached the client: end the response with an error (a stream's error frame), never a clean end. */
  Cut,
  /** The body failed a second engine: answer 502 (or cut a begun stream) and refuse it for a while. */
  Poisoned,
  /** Bytes reached the client: the stream goes on on another engine from what was delivered (a continuation). */
  Continue,
}

/** What {@link afterFailure} decides on. */
export interface FailureFacts {
  readonly failure: AttemptFailure;
  /** The engine's status for {@link AttemptFailure.Status}. */
  readonly status: number;
  /** Whether any byte of the response has reached the client. */
  readonly clientReceived: boolean;
  /**
   * Attempts of this request that failed after the engine had its body (see {@link implicatesBody}), this one
   * included, with no new content delivered between them (see {@link strikesAfter}).
   */
  readonly sentFailures: number;
  /**
   * The stream can be continued on another engine: a stream whose bytes reached the client, of content deltas
   * only (no tool call, n = 1, no logprobs), with continuations left.
   */
  readonly continuable: boolean;
}

/** Failures that implicate the request's body (it was with an engine that went away): at most one retry follows. */
export function implicatesBody(failure: AttemptFailure): boolean {
  return failure === AttemptFailure.Lost || failure === AttemptFailure.Timeout || failure === AttemptFailure.Stalled;
}

/**
 * The poison guard's count after a failure that implicates the body: one more when the failed engine delivered no
 * new content since the previous such failure (the body failed two engines at the same point: the mark of a body
 * that kills them, whether before the first byte or where a continuation resumed it), else a first strike. A stream
 * lost to a dying spot engine, then continued, makes progress on the next engine: a reclaim wave that takes two
 * engines from under it is no evidence against its body, and it is not refused.
 */
export function strikesAfter(sentFailures: number, progressed: boolean): number {
  return progressed ? 1 : sentFailures + 1;
}

/** Failures after bytes reached the client that a continuation on another engine can repair. */
function continuesAfter(failure: AttemptFailure, status: number): boolean {
  switch (failure) {
    case AttemptFailure.Unsent:
    case AttemptFailure.Lost:
    case AttemptFailure.Timeout:
    case AttemptFailure.Incomplete:
    case AttemptFailure.Stalled:
    case AttemptFailure.Preempted:
    case AttemptFailure.ErrorFrame:
      return true;
    case AttemptFailure.Status:
      // a continuation's engine refused it: another may not; its 4xx (e.g. context length) is final
      return status >= 500;
    case AttemptFailure.Broken:
      return false;
  }
}

/**
 * The one place that decides what follows a failed attempt. A request moves to another engine while nothing
 * reached its client; once bytes did, a stream of content is continued on another engine (its delivered text as
 * the prefix) and anything else is cut; a request that lost two engines at the same point is not tried on a third;
 * an engine's 4xx is the client's to read (another engine would say the same), its 5xx is worth another.
 */
export function afterFailure(facts: FailureFacts): AfterFailure {
  if (facts.sentFailures >= SENT_FAILURES_MAX) return AfterFailure.Poisoned;
  if (facts.clientReceived) return facts.continuable && continuesAfter(facts.failure, facts.status) ? AfterFailure.Continue : AfterFailure.Cut;
  switch (facts.failure) {
    case AttemptFailure.Unsent:
    case AttemptFailure.Lost:
    case AttemptFailure.Timeout:
    case AttemptFailure.Incomplete:
    case AttemptFailure.Stalled:
    case AttemptFailure.Preempted:
    case AttemptFailure.ErrorFrame:
      return AfterFailure.Retry;
    case AttemptFailure.Status:
      return facts.status >= 500 ? AfterFailure.Retry : AfterFailure.Answer;
    case AttemptFailure.Broken:
      return AfterFailure.Answer;
  }
}

/** The codes of the errors the gateway aborts an attempt with when its stream stalls, or when it is preempted. */
export const STALLED = 'stream_stalled';
export const PREEMPTED = 'preempted';

const UNSENT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
const LOST_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** Classifies an undici error of an attempt by its code. */
export function failureOf(code: string): AttemptFailure {
  if (UNSENT_CODES.has(code)) return AttemptFailure.Unsent;
  if (LOST_CODES.has(code)) return AttemptFailure.Lost;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return AttemptFailure.Timeout;
  if (code === STALLED) return AttemptFailure.Stalled;
  if (code === PREEMPTED) return AttemptFailure.Preempted;
  return AttemptFailure.Broken;
}
