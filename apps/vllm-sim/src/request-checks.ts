import { validationError, type SimError } from './sim-errors';

/** The JSON body of a request, already known to be an object. */
export type Body = Record<string, unknown>;

/** A pydantic-style message, as vLLM's validation handler renders it. */
function pydantic(type: string, loc: string, msg: string): string {
  return `1 validation error:\n  {'type': '${type}', 'loc': ('body', '${loc}'), 'msg': '${msg}'}`;
}

/** Parses a request body the way FastAPI would, throwing vLLM's 400 on bad JSON or a non-object. */
export function parseBody(raw: unknown, contentType: string | undefined): Body {
  const media = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (media !== 'application/json') {
    throw validationError(
      `1 validation error:\n  {'type': 'value_error', 'loc': ('header', 'content-type'), ` +
        `'msg': "Unsupported Media Type: Only 'application/json' is allowed"}`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(typeof raw === 'string' ? raw : '');
  } catch (e) {
    throw validationError(
      `1 validation error:\n  {'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', ` +
        `'ctx': {'error': '${(e as Error).message.replace(/'/g, '"')}'}}`,
    );
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw validationError(pydantic('model_attributes_type', '', 'Input should be a valid dictionary or object'));
  }
  return body as Body;
}

export function missing(field: string): SimError {
  return validationError(pydantic('missing', field, 'Field required'));
}

export function invalid(field: string, msg: string): SimError {
  return validationError(pydantic('value_error', field, msg));
}

/** An optional integer field with a lower bound; `null` counts as absent, like pydantic's Optional. */
export function optInt(body: Body, field: string, min: number): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(field, 'Input should be a valid integer');
  if (v < min) throw invalid(field, `Input should be greater than or equal to ${min}`);
  return v;
}

export function optBool(body: Body, field: string): boolean {
  const v = body[field];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(field, 'Input should be a valid boolean');
  return v;
}

export interface StreamFlags {
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
}

/** `stream` and `stream_options`, with vLLM's rule that options need `stream: true`. */
export function streamFlags(body: Body, requestClass: string): StreamFlags {
  const stream = optBool(body, 'stream');
  const opts = body.stream_options;
  if (opts === undefined || opts === null) return { stream, includeUsage: false, continuousUsage: false };
  if (typeof opts !== 'object' || Array.isArray(opts)) throw invalid('stream_options', 'Input should be an object');
  if (!stream) {
    throw validationError(
      `1 validation error for ${requestClass}\n  Value error, Stream options can only be defined when \`stream=True\`. [type=value_error]`,
    );
  }
  const o = opts as { include_usage?: unknown; continuous_usage_stats?: unknown };
  const includeUsage = o.include_usage === true;
  return { stream, includeUsage, continuousUsage: includeUsage && o.continuous_usage_stats === true };
}

/**
 * The JSON text of a usage object, in vLLM's field order. `prompt_tokens_details` carries `cached_tokens` only
 * when some were cached (vLLM: `--enable-prompt-tokens-details` and `num_cached_tokens` > 0); otherwise the
 * unary body has it null and the stream leaves it out.
 */
export function usageJson(prompt: number, completion: number, details: boolean, cached = 0): string {
  const extra = cached > 0 ? `,"prompt_tokens_details":{"cached_tokens":${cached}}` : details ? ',"prompt_tokens_details":null' : '';
  return `{"prompt_tokens":${prompt},"total_tokens":${prompt + completion},"completion_tokens":${completion}${extra}}`;
}
