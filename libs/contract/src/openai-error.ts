/** OpenAI's error `type` strings (what SDKs read). */
export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'insufficient_quota'
  | 'server_error'
  | 'service_unavailable';

/** The envelope of every error the gateway sends: all four keys, always. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/**
 * An error with a stable `code` that the gateway's filter turns into OpenAI's envelope and status.
 * `headers` are added to the response (retry-after, x-should-retry...).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: OpenAIErrorType | string,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Readonly<Record<string, string>> | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'ApiError';
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 401 as OpenAI sends it for a missing, unknown, revoked or expired key. */
export function invalidApiKey(message: string): ApiError {
  return new ApiError(401, 'invalid_request_error', message, 'invalid_api_key');
}

/** 404 as OpenAI sends it for a model the caller cannot use. */
export function modelNotFound(model: string): ApiError {
  return new ApiError(
    404,
    'invalid_request_error',
    `The model \`${model}\` does not exist or you do not have access to it.`,
    'model_not_found',
    'model',
  );
}

/** 400 for a request body that breaks the contract. */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, 'invalid_request_error', message, code, param);
}

/**
 * 503 when the server holds as many request bodies in memory as it may: nothing was wrong with the request,
 * and it should be retried shortly (`retry-after`).
 */
export function serverOverloaded(retryAfterSeconds = 1): ApiError {
  const message = 'The server is overloaded with requests right now. Please retry shortly.';
  return new ApiError(503, 'server_error', message, 'server_overloaded', null, { 'retry-after': String(retryAfterSeconds) });
}

/** The default OpenAI type for an HTTP status. */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return 'invalid_request_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** Serialises an envelope (a tiny object: JSON.stringify is fine here, errors are off the fast path). */
export function errorBody(status: number, message: string, code: string | null = null, param: string | null = null, type?: string): string {
  const body: OpenAIErrorBody = { error: { message, type: type ?? errorTypeForStatus(status), param, code } };
  return JSON.stringify(body);
}
