/** What to do about an error from the stripe SDK. */
export type StripeFailure =
  | { kind: 'retry'; rateLimited: boolean; retryAfterMs: number | null; message: string }
  | { kind: 'duplicate'; message: string }
  | { kind: 'too_old'; message: string }
  | { kind: 'rejected'; message: string }
  | { kind: 'fatal'; message: string };

interface SdkError {
  type?: string;
  statusCode?: number;
  message?: string;
  headers?: Record<string, string>;
}

/**
 * Classifies an SDK error. 429 and 5xx, timeouts and dropped connections are retried (safe: the request is
 * resent with the same identifier and Idempotency-Key); Stripe's "An event already exists with identifier"
 * means the event is billed; a too-old timestamp can never succeed; other 4xx are refused for good;
 * authentication and permission errors stop the pass.
 */
export function classifyStripeError(err: unknown): StripeFailure {
  const e = (err ?? {}) as SdkError;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const status = e.statusCode;
  const headers = e.headers ?? {};
  const shouldRetry = headers['stripe-should-retry'];
  if (e.type === 'StripeConnectionError' || status === undefined) {
    return { kind: 'retry', rateLimited: false, retryAfterMs: null, message };
  }
  if (status === 429 || e.type === 'StripeRateLimitError') {
    const after = Number(headers['retry-after']);
    return { kind: 'retry', rateLimited: true, retryAfterMs: Number.isFinite(after) && after > 0 ? after * 1000 : null, message };
  }
  if (/already exists with identifier/i.test(message)) return { kind: 'duplicate', message };
  if (/timestamp cannot be more than 35 days in past/i.test(message)) return { kind: 'too_old', message };
  if (status === 401 || status === 403) return { kind: 'fatal', message };
  if (status >= 500 || status === 409 || shouldRetry === 'true') {
    return { kind: shouldRetry === 'false' ? 'rejected' : 'retry', rateLimited: false, retryAfterMs: null, message } as StripeFailure;
  }
  return { kind: 'rejected', message };
}

/** Exponential backoff with full jitter: a random wait up to base·2^attempt, capped. */
export function backoffMs(attempt: number, baseMs = 250, capMs = 8_000): number {
  return Math.round(Math.random() * Math.min(capMs, baseMs * 2 ** attempt)) + 50;
}
