import type { IncomingHttpHeaders } from 'node:http';
import { type ApiError, anthropicErrorBody, invalidRequest, normalizeUpstreamAnthropicError } from '@spot/contract';
import type { ModelApi } from '@spot/tiers';
import { anthropicCredential } from '../auth/credential';
import { bodyError } from '../errors/to-api-error';
import { MessagesStreamContinuation } from './anthropic-continuation';
import { AnthropicSseRelay, anthropicMidstreamErrorFrame } from './anthropic-sse-relay';
import type { MessagesTranscript } from './anthropic-transcript';
import type { CheckedRequest, ProxyKind } from './openai-request';
import type { ProtocolAdapter, StreamContinuation, StreamRelay } from './protocol-adapter';
import { type TokenUsage, usageFromJsonTail } from './token-usage';

/**
 * Reads an Anthropic `usage` object. Anthropic's contract, which vLLM follows since it reports cache reads
 * (vllm-project/vllm#40912): the whole prompt is `input_tokens` (the uncached part) + `cache_read_input_tokens` +
 * `cache_creation_input_tokens`. Cache reads are the cached tokens (priced at `cached_input_per_mtok`); cache
 * writes are ordinary input (vLLM's prefix cache fills as a side effect of prefill, at no premium, and reports 0).
 * An engine that reports no cache fields reports its whole prompt as `input_tokens`: the same sum.
 */
export function usageFromAnthropic(u: unknown): TokenUsage | null {
  if (u === null || typeof u !== 'object') return null;
  const o = u as Record<string, unknown>;
  if (typeof o.input_tokens !== 'number' || typeof o.output_tokens !== 'number') return null;
  const cached = count(o.cache_read_input_tokens);
  return { prompt: count(o.input_tokens) + cached + count(o.cache_creation_input_tokens), completion: count(o.output_tokens), cached };
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/** Anthropic's 400: `<field>: <problem>`, as its API words request validation errors. */
function invalid(field: string, problem: string): ApiError {
  return invalidRequest(`${field}: ${problem}`, field);
}

/**
 * Checks what Anthropic rejects before any model runs: a JSON object, `model` (a non-empty string), `messages`
 * (a non-empty array), and for Messages `max_tokens` (a positive integer) and `stream` (a boolean). The rest
 * (content blocks, tools, system) is the engine's to judge.
 */
export function checkMessagesRequest(kind: 'messages' | 'count_tokens', raw: unknown, bodyBytes: number): CheckedRequest {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidRequest('The request body must be a JSON object.');
  const body = raw as Record<string, unknown>;
  const model = body.model;
  if (model === undefined || model === null) throw invalid('model', 'Field required');
  if (typeof model !== 'string') throw invalid('model', 'Input should be a valid string');
  if (model === '') throw invalid('model', 'String should have at least 1 character');
  const messages = body.messages;
  if (messages === undefined || messages === null) throw invalid('messages', 'Field required');
  if (!Array.isArray(messages)) throw invalid('messages', 'Input should be a valid list');
  if (messages.length === 0) throw invalid('messages', 'at least one message is required');
  if (kind === 'count_tokens') {
    // counting generates nothing: no tokens are reserved against the key's limits or budget
    return { body, model, stream: false, clientWantsUsage: false, choices: 0, promptTokensEstimate: 0, completionTokensCap: 0 };
  }
  const max = body.max_tokens;
  if (max === undefined || max === null) throw invalid('max_tokens', 'Field required');
  if (typeof max !== 'number' || !Number.isInteger(max)) throw invalid('max_tokens', 'Input should be a valid integer');
  if (max < 1) throw invalid('max_tokens', 'Input should be greater than or equal to 1');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw invalid('stream', 'Input should be a valid boolean');
  return {
    body,
    model,
    stream: body.stream === true,
    clientWantsUsage: true,
    // one content_block_delta a token, no role event: a cut stream is billed its deltas
    choices: 0,
    promptTokensEstimate: Math.max(1, Math.ceil(bodyBytes / 4)),
    completionTokensCap: max,
  };
}

const NO_USAGE: TokenUsage = Object.freeze({ prompt: 0, completion: 0, cached: 0 });

/**
 * Anthropic Messages as vLLM serves them (`/v1/messages`, `/v1/messages/count_tokens`): Anthropic's request
 * checks, credential (`x-api-key`, or `Authorization: Bearer`) and error envelope. vLLM always reports usage on
 * Messages (message_start and message_delta, or the body's `usage`), so the engine body is the client's with
 * the engine's model name.
 */
class AnthropicAdapter implements ProtocolAdapter {
  readonly usageInHead = false;
  readonly api: ModelApi = 'messages';
  readonly requestIdHeader = 'request-id';
  /** A Messages stream whose engine is lost goes on on another engine (see MessagesStreamContinuation). */
  readonly continuation: StreamContinuation | undefined;

  constructor(
    readonly kind: 'messages' | 'count_tokens',
    readonly upstreamPath: string,
  ) {
    this.continuation = kind === 'messages' ? new MessagesStreamContinuation() : undefined;
  }

  credential(headers: IncomingHttpHeaders): string {
    return anthropicCredential(headers);
  }

  check(body: unknown, bodyBytes: number): CheckedRequest {
    return checkMessagesRequest(this.kind, body, bodyBytes);
  }

  upstreamBody(req: CheckedRequest, upstreamModel: string): string {
    try {
      return JSON.stringify(upstreamModel === req.model ? req.body : { ...req.body, model: upstreamModel });
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw bodyError('too_deep', 0);
    }
  }

  streamRelay(_req: CheckedRequest, transcript: MessagesTranscript | null): StreamRelay {
    return new AnthropicSseRelay(transcript);
  }

  /**
   * A Message's `usage`; for count_tokens none at all: counting costs no generation, so the request is
   * recorded (it counts against the key's requests per minute) with 0 tokens and a cost of 0, never estimated.
   */
  usageFromBody(tail: string): TokenUsage | null {
    return this.kind === 'count_tokens' ? NO_USAGE : usageFromJsonTail(tail, usageFromAnthropic);
  }

  errorBody(status: number, message: string): string {
    return anthropicErrorBody(status, message);
  }

  engineError(status: number, raw: string): string {
    return JSON.stringify(normalizeUpstreamAnthropicError(status, raw));
  }

  renderError(err: ApiError): string {
    return anthropicErrorBody(err.status, err.message);
  }

  midstreamErrorFrame(message: string): Buffer {
    return anthropicMidstreamErrorFrame(message);
  }
}

/** The adapters of Anthropic's Messages operations. */
export const ANTHROPIC_ADAPTERS: Readonly<Record<Extract<ProxyKind, 'messages' | 'count_tokens'>, ProtocolAdapter>> = {
  messages: new AnthropicAdapter('messages', '/v1/messages'),
  count_tokens: new AnthropicAdapter('count_tokens', '/v1/messages/count_tokens'),
};
