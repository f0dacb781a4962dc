/** Stripe's v1 error `type`s. */
export type StripeErrorType =
  | 'api_error'
  | 'card_error'
  | 'idempotency_error'
  | 'invalid_request_error';

/** The body of every Stripe v1 error response: `{ "error": { type, message, code?, param?, doc_url? } }`. */
export interface StripeErrorBody {
  error: {
    type: StripeErrorType;
    message: string;
    code?: string;
    param?: string;
    doc_url?: string;
  };
}

/**
 * An error the fake answers with: an HTTP status, Stripe's error body, and any extra response
 * headers (e.g. `Stripe-Should-Retry`). Route handlers throw it; the server serializes it.
 */
export class StripeApiError extends Error {
  readonly body: StripeErrorBody;

  constructor(
    readonly status: number,
    type: StripeErrorType,
    message: string,
    extra: { code?: string; param?: string } = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    const error: StripeErrorBody['error'] = { type, message };
    if (extra.code !== undefined) {
      error.code = extra.code;
      error.doc_url = `https://stripe.com/docs/error-codes/${extra.code.replace(/_/g, '-')}`;
    }
    if (extra.param !== undefined) error.param = extra.param;
    this.body = { error };
  }
}

/** 400 invalid_request_error with an optional code and param. */
export function invalidRequest(message: string, extra: { code?: string; param?: string } = {}): StripeApiError {
  return new StripeApiError(400, 'invalid_request_error', message, extra);
}

/** 400 `Missing required param: x.` (code parameter_missing), as Stripe words it. */
export function missingParam(param: string): StripeApiError {
  return invalidRequest(`Missing required param: ${param}.`, { code: 'parameter_missing', param });
}

/** 400 `Received unknown parameter: x` (code parameter_unknown). */
export function unknownParam(param: string): StripeApiError {
  return invalidRequest(`Received unknown parameter: ${param}`, { code: 'parameter_unknown', param });
}

/** 404 `No such customer: 'cus_x'` (code resource_missing). `param` is `id` on retrieve, else the param named. */
export function resourceMissing(kind: string, id: string, param: string): StripeApiError {
  return new StripeApiError(404, 'invalid_request_error', `No such ${kind}: '${id}'`, { code: 'resource_missing', param });
}

/**
 * 400 resource_missing for an id passed as a parameter (e.g. `customer` on a subscription create):
 * Stripe answers 400, not 404, when the missing object is not the one addressed by the URL.
 */
export function paramResourceMissing(kind: string, id: string, param: string): StripeApiError {
  return invalidRequest(`No such ${kind}: '${id}'`, { code: 'resource_missing', param });
}

/** 404 for a path Stripe does not serve. */
export function unrecognizedUrl(method: string, path: string): StripeApiError {
  return new StripeApiError(
    404,
    'invalid_request_error',
    `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
  );
}

/** 401 with no Authorization header. Stripe's exact wording. */
export function apiKeyMissing(): StripeApiError {
  return new StripeApiError(
    401,
    'invalid_request_error',
    "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
  );
}

/** 401 for a key that is not the fake's key; like Stripe, only the last four characters are echoed. */
export function apiKeyInvalid(key: string): StripeApiError {
  const prefix = /^(sk|rk)_(test|live)_/.exec(key)?.[0] ?? '';
  const masked = `${prefix}${'*'.repeat(Math.max(0, key.length - prefix.length - 4))}${key.slice(-4)}`;
  return new StripeApiError(401, 'invalid_request_error', `Invalid API Key provided: ${masked}`, { code: 'api_key_invalid' });
}

/** 429 as Stripe's rate limiter answers it: type invalid_request_error, code rate_limit. */
export function rateLimited(headers: Record<string, string> = {}): StripeApiError {
  return new StripeApiError(
    429,
    'invalid_request_error',
    'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.',
    { code: 'rate_limit' },
    headers,
  );
}

/** 500 api_error. */
export function apiError(headers: Record<string, string> = {}): StripeApiError {
  return new StripeApiError(500, 'api_error', 'An unknown error occurred (injected by the fake Stripe server).', {}, headers);
}

/** 400 idempotency_error: the key was first used with other parameters. Stripe's exact wording. */
export function idempotencyParamsMismatch(key: string): StripeApiError {
  return new StripeApiError(
    400,
    'idempotency_error',
    `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
  );
}

/** 400 idempotency_error: the key was first used on another endpoint. */
export function idempotencyEndpointMismatch(key: string, first: string, now: string): StripeApiError {
  return new StripeApiError(
    400,
    'idempotency_error',
    `Keys for idempotent requests can only be used for the same endpoint they were first used for ('${first}' vs '${now}'). Try using a key other than '${key}' if you meant to execute a different request.`,
  );
}
