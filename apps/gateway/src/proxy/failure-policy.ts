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
}

/** What {@link afterFailure} decides on. */
export interface FailureFacts {
  readonly failure: AttemptFailure;
  /** The engine's status for {@link AttemptFailure.Status}. */
  readonly status: number;
  /** Whether any byte of the response has reached the client. */
  readonly clientReceived: boolean;
  /** Attempts of this request that failed after the engine had its body (see {@link implicatesBody}), this one included. */
  readonly sentFailures: number;
}

/** Failures that implicate the request's body (it was with an engine that went away): at most one retry follows. */
export function implicatesBody(failure: AttemptFailure): boolean {
  return failure === AttemptFailure.Lost || failure === AttemptFailure.Timeout;
}

/**
 * The one place that decides what follows a failed attempt. A request moves to another engine only while
 * nothing reached its client; a request that lost two engines after sending them is not tried on a third;
 * an engine's 4xx is the client's to read (another engine would say the same), its 5xx is worth another.
 */
export function afterFailure(facts: FailureFacts): AfterFailure {
  if (facts.sentFailures >= SENT_FAILURES_MAX) return AfterFailure.Poisoned;
  if (facts.clientReceived) return AfterFailure.Cut;
  switch (facts.failure) {
    case AttemptFailure.Unsent:
    case AttemptFailure.Lost:
    case AttemptFailure.Timeout:
    case AttemptFailure.Incomplete:
      return AfterFailure.Retry;
    case AttemptFailure.Status:
      return facts.status >= 500 ? AfterFailure.Retry : AfterFailure.Answer;
    case AttemptFailure.Broken:
      return AfterFailure.Answer;
  }
}

const UNSENT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
const LOST_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** Classifies an undici error of an attempt by its code. */
export function failureOf(code: string): AttemptFailure {
  if (UNSENT_CODES.has(code)) return AttemptFailure.Unsent;
  if (LOST_CODES.has(code)) return AttemptFailure.Lost;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return AttemptFailure.Timeout;
  return AttemptFailure.Broken;
}
