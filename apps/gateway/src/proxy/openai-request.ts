import { invalidRequest } from '@spot/contract';
import { bodyError } from '../errors/to-api-error';

/** The OpenAI operations {@link checkRequest} knows. */
export type OpenAIKind = 'chat' | 'completions' | 'embeddings';

/** Every proxied operation (each has its protocol adapter): OpenAI's, the scoring APIs vLLM serves, Anthropic's. */
export type ProxyKind = OpenAIKind | 'responses' | 'rerank' | 'rerank_v2' | 'score' | 'messages' | 'count_tokens' | 'transcriptions' | 'translations';

export const UPSTREAM_PATHS: Readonly<Record<Exclude<ProxyKind, 'messages' | 'count_tokens' | 'transcriptions' | 'translations'>, string>> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
  rerank: '/v1/rerank',
  rerank_v2: '/v2/rerank',
  score: '/v1/score',
  responses: '/v1/responses',
};

/** Every proxied path a client may POST to, and its operation (vLLM's aliases included). */
export const PROXIED_PATHS: Readonly<Record<string, ProxyKind>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/rerank': 'rerank',
  '/rerank': 'rerank',
  '/v2/rerank': 'rerank_v2',
  '/v1/score': 'score',
  '/score': 'score',
  '/v1/messages': 'messages',
  '/v1/messages/count_tokens': 'count_tokens',
  '/v1/responses': 'responses',
  '/v1/audio/transcriptions': 'transcriptions',
  '/v1/audio/translations': 'translations',
};

/** A client's request body after the checks the gateway itself makes (the engine checks the rest). */
export interface CheckedRequest {
  readonly body: Record<string, unknown>;
  readonly model: string;
  readonly stream: boolean;
  /** The client asked for the usage chunk (`stream_options.include_usage`). */
  readonly clientWantsUsage: boolean;
  /** Choices per request (`n`), to estimate tokens of a cut stream. */
  readonly choices: number;
  /**
   * Prompt tokens estimated from the body's size in bytes, about four a token (used for limits, and for a
   * stream cut before the engine reported usage). Cheap: nothing is serialised to count.
   */
  readonly promptTokensEstimate: number;
  /** Worst-case completion tokens (max_tokens or a default), for limits. */
  readonly completionTokensCap: number;
  /** Worst-case seconds of audio (speech-to-text uploads), for the budget; absent: none. */
  readonly audioSecondsCap?: number;
}

const DEFAULT_COMPLETION_CAP = 4096;

function missing(param: string): never {
  throw invalidRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

/**
 * Checks what OpenAI rejects before any model runs: a JSON object body, `model`, the operation's required
 * field, `stream_options` only with `stream`. Everything else (tools, response_format, n, logprobs,
 * unknown fields) is the engine's to judge and passes through untouched.
 */
export function checkRequest(kind: OpenAIKind | 'responses', raw: unknown, bodyBytes: number): CheckedRequest {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalidRequest('The request body must be a JSON object.');
  }
  const body = raw as Record<string, unknown>;
  const model = body.model;
  if (model === undefined || model === null || model === '') {
    throw invalidRequest('You must provide a model parameter.', 'model', 'missing_required_parameter');
  }
  if (typeof model !== 'string') throw invalidRequest(`Invalid type for 'model': expected a string.`, 'model', 'invalid_type');
  if (kind === 'chat') {
    const messages = body.messages;
    if (messages === undefined || messages === null) missing('messages');
    if (!Array.isArray(messages)) throw invalidRequest(`Invalid type for 'messages': expected an array.`, 'messages', 'invalid_type');
    if (messages.length === 0) throw invalidRequest(`Invalid 'messages': empty array. Expected an array with minimum length 1.`, 'messages', 'empty_array');
  } else if (kind === 'completions') {
    if (body.prompt === undefined || body.prompt === null) missing('prompt');
  } else {
    if (body.input === undefined || body.input === null) missing('input');
  }
  const stream = body.stream === true;
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    throw invalidRequest(`Invalid type for 'stream': expected a boolean.`, 'stream', 'invalid_type');
  }
  const streamOptions = body.stream_options;
  if (streamOptions !== undefined && streamOptions !== null) {
    if (!stream) {
      throw invalidRequest(`The 'stream_options' parameter is only allowed when 'stream' is enabled.`, 'stream_options');
    }
    if (typeof streamOptions !== 'object' || Array.isArray(streamOptions)) {
      throw invalidRequest(`Invalid type for 'stream_options': expected an object.`, 'stream_options', 'invalid_type');
    }
  }
  const clientWantsUsage = stream && (streamOptions as { include_usage?: unknown } | null | undefined)?.include_usage === true;
  const n = typeof body.n === 'number' && body.n >= 1 ? Math.floor(body.n) : 1;
  const cap = body.max_completion_tokens ?? body.max_tokens;
  const completionTokensCap = kind === 'embeddings' ? 0 : (typeof cap === 'number' && cap > 0 ? Math.floor(cap) : DEFAULT_COMPLETION_CAP) * n;
  const promptTokensEstimate = Math.max(1, Math.ceil(bodyBytes / 4));
  return { body, model, stream, clientWantsUsage, choices: n, promptTokensEstimate, completionTokensCap };
}

/**
 * The body sent to the engine: the client's, with the engine's name for the model and, for streams,
 * `include_usage` always on (usage is billed whether or not the client reads it). Serialised once.
 * @throws the 400 for a body nested too deeply to serialise (JSON.parse takes any depth, JSON.stringify
 * runs out of stack at a few thousand levels).
 */
export function upstreamBody(req: CheckedRequest, upstreamModel: string): string {
  if (!req.stream) return serialise(upstreamModel === req.model ? req.body : { ...req.body, model: upstreamModel });
  const clientOptions = req.body.stream_options as Record<string, unknown> | null | undefined;
  // per-chunk usage only when the client asked for usage; otherwise the engine's chunks stay as the client expects
  const stream_options = req.clientWantsUsage ? { ...clientOptions, include_usage: true } : { include_usage: true };
  return serialise({ ...req.body, model: upstreamModel, stream_options });
}

function serialise(body: Record<string, unknown>): string {
  try {
    return JSON.stringify(body);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    // the client's doing, not a fault of ours: no stack in the log
    throw bodyError('too_deep', 0);
  }
}
