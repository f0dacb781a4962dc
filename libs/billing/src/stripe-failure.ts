import { BillingError } from './billing.errors';

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

/** A Stripe refusal that concerns one org (its subscription or customer), not the account or Stripe at large. */
export interface OrgStripeFailure {
  /** Stripe's error code (`resource_missing`...), or ours: `subscription_canceled`, `customer_deleted`, `stripe_rejected`. */
  code: string;
  /** What Stripe said (no secrets: Stripe's messages name objects, never keys). */
  detail: string;
}

/**
 * The org-specific failure in `err` (a {@link BillingError} from a Stripe call made for one org, or the SDK's
 * error), or null when it is not one: Stripe down or rate limiting (retried as before), our key refused
 * (stops the pass: every org would fail), or not a Stripe error at all (Postgres).
 */
export function orgFailureOf(err: unknown): OrgStripeFailure | null {
  if (err instanceof BillingError && (err.code === 'subscription_canceled' || err.code === 'customer_deleted')) {
    return { code: err.code, detail: err.message };
  }
  const sdk = err instanceof BillingError ? err.cause : err;
  const status = (sdk as SdkError | null | undefined)?.statusCode;
  // a 5xx, even one Stripe says not to retry, is Stripe's trouble, not the org's
  if (typeof status !== 'number' || status < 400 || status >= 500) return null;
  const failure = classifyStripeError(sdk);
  if (failure.kind !== 'rejected') return null;
  const stripeCode = (sdk as { code?: unknown }).code;
  const code = /canceled subscription/i.test(failure.message)
    ? 'subscription_canceled'
    : typeof stripeCode === 'string' && stripeCode !== ''
      ? stripeCode
      : 'stripe_rejected';
  return { code, detail: failure.message };
}

/** What an org's owners read about a sync failure: what broke and what fixes it, in plain words. */
export function plainWords(failure: OrgStripeFailure): string {
  switch (failure.code) {
    case 'subscription_canceled':
      return 'The Stripe subscription of this org was canceled, so its usage cannot be invoiced. Enable billing again on the Bill page to start a new subscription: the usage is kept and sent then.';
    case 'customer_deleted':
      return 'The Stripe customer of this org was deleted. Enable billing again on the Bill page to create a new one: the usage is kept and sent then.';
    case 'resource_missing':
      return `Stripe no longer has this org's subscription or customer (Stripe said: ${failure.detail}). Enable billing again on the Bill page: the usage is kept and sent then.`;
    default:
      return `Stripe refused a request for this org (${failure.code}: ${failure.detail}). The usage is kept; billing sync retries it.`;
  }
}
