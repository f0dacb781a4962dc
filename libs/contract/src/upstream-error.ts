import { errorTypeForStatus, type OpenAIErrorBody } from './openai-error';

const OPENAI_TYPES = new Set([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'rate_limit_error',
  'insufficient_quota',
  'server_error',
  'service_unavailable',
  'tokens',
  'requests',
]);

function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null;
}

/**
 * Rewrites an engine's error into OpenAI's envelope. vLLM answers
 * `{"error":{"message","type":"BadRequestError","param","code":400}}` (current) or the flat
 * `{"object":"error","message","type","param","code":400}` (older); other engines send `{"detail": ...}`
 * or plain text. The result always has four keys, a string `type` OpenAI uses and a string-or-null `code`.
 */
export function normalizeUpstreamError(status: number, raw: string): OpenAIErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = null;
  }
  let inner: Record<string, unknown> | null = null;
  if (parsed && typeof parsed === 'object') {
    const p = parsed as Record<string, unknown>;
    if (p.error && typeof p.error === 'object') inner = p.error as Record<string, unknown>;
    else if (typeof p.error === 'string') inner = { message: p.error };
    else if (p.object === 'error' || typeof p.message === 'string') inner = p;
    else if (p.detail !== undefined) inner = { message: typeof p.detail === 'string' ? p.detail : JSON.stringify(p.detail) };
  }
  const message =
    str(inner?.message) ?? (raw.trim() ? raw.trim().slice(0, 2000) : `Upstream error (HTTP ${status})`);
  const upstreamType = str(inner?.type);
  const type = upstreamType && OPENAI_TYPES.has(upstreamType) ? upstreamType : errorTypeForStatus(status);
  // vLLM's integer code is the HTTP status again: drop it. Keep string codes (they are meaningful).
  let code = str(inner?.code);
  if (code === null && status === 404 && /model/i.test(message)) code = 'model_not_found';
  const param = str(inner?.param);
  return { error: { message, type, param, code } };
}

/**
 * The status the client gets for an engine's error status: the engine's own, except auth failures between
 * the gateway and the engine, which are our misconfiguration (502), never the client's key.
 */
export function clientStatusForUpstream(status: number): number {
  if (status === 401 || status === 403 || status === 407) return 502;
  return status;
}
