/** Anthropic's error `type` strings (what its SDKs and clients read). */
export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'api_error'
  | 'overloaded_error';

/** Anthropic's error envelope: `{"type":"error","error":{"type","message"}}`. */
export interface AnthropicErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string };
}

const ANTHROPIC_TYPES: ReadonlySet<string> = new Set<AnthropicErrorType>([
  'invalid_request_error',
  'authentication_error',
  'billing_error',
  'permission_error',
  'not_found_error',
  'request_too_large',
  'rate_limit_error',
  'timeout_error',
  'api_error',
  'overloaded_error',
]);

/**
 * Anthropic's error type for an HTTP status (its documented pairs: 400, 401, 402, 403, 404, 413, 429, 500, 504,
 * 529; 503 is overloaded, as Anthropic's own 529 is; any other 4xx is an invalid request, any other 5xx an API
 * error).
 */
export function anthropicErrorType(status: number): AnthropicErrorType {
  switch (status) {
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
    case 504:
      return 'timeout_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

/** An error of ours in Anthropic's envelope, its type from the status. */
export function anthropicErrorBody(status: number, message: string): string {
  const body: AnthropicErrorBody = { type: 'error', error: { type: anthropicErrorType(status), message } };
  return JSON.stringify(body);
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null;
}

/**
 * Rewrites an engine's error into Anthropic's envelope. vLLM's Messages routes answer their handler's errors
 * in Anthropic's envelope already (with types of its own, such as `internal_error`), and request validation
 * errors in OpenAI's (`{"error":{"message","type":"BadRequestError","code":400}}`); other engines send
 * `{"detail": ...}` or plain text. An Anthropic type is kept; any other is replaced by the status's.
 */
export function normalizeUpstreamAnthropicError(status: number, raw: string): AnthropicErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = null;
  }
  let inner: Record<string, unknown> | null = null;
  if (parsed !== null && typeof parsed === 'object') {
    const p = parsed as Record<string, unknown>;
    if (p.error !== null && typeof p.error === 'object') inner = p.error as Record<string, unknown>;
    else if (typeof p.error === 'string') inner = { message: p.error };
    else if (typeof p.message === 'string') inner = p;
    else if (p.detail !== undefined) inner = { message: typeof p.detail === 'string' ? p.detail : JSON.stringify(p.detail) };
  }
  const message = str(inner?.message) ?? (raw.trim() ? raw.trim().slice(0, 2000) : `Upstream error (HTTP ${status})`);
  const engineType = str(inner?.type);
  const type = engineType !== null && ANTHROPIC_TYPES.has(engineType) ? (engineType as AnthropicErrorType) : anthropicErrorType(status);
  return { type: 'error', error: { type, message } };
}
