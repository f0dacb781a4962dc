import type { IncomingHttpHeaders } from 'node:http';
import { type ApiError, errorBody, invalidRequest, normalizeUpstreamError } from '@spot/contract';
import type { ModelApi } from '@spot/tiers';
import { bearerCredential } from '../auth/credential';
import { type CheckedRequest, UPSTREAM_PATHS, upstreamBody } from './openai-request';
import type { ProtocolAdapter, StreamRelay } from './protocol-adapter';
import { midstreamErrorFrame } from './sse-frames';
import { type TokenUsage, usageFromJsonTail } from './token-usage';

/** The fields without which vLLM's scoring endpoints answer 400: checked here, before any engine. */
const REQUIRED: Readonly<Record<'rerank' | 'rerank_v2' | 'score', readonly string[]>> = {
  rerank: ['query', 'documents'],
  rerank_v2: ['query', 'documents'],
  score: ['text_1', 'text_2'],
};

/**
 * vLLM's scoring APIs (`/v1/rerank`, `/rerank`, `/v2/rerank`: Jina/Cohere-style rerank; `/v1/score`, `/score`):
 * one JSON answer, no stream, metered by the prompt tokens the engine reports (`usage.prompt_tokens`, or
 * `total_tokens` on older vLLM). Errors in OpenAI's envelope, as vLLM's own are.
 */
class ScoringAdapter implements ProtocolAdapter {
  readonly upstreamPath: string;
  /** Rerank puts its usage before the results (which echo the documents): the body's head is read too. */
  readonly usageInHead = true;

  readonly api: ModelApi;

  constructor(readonly kind: 'rerank' | 'rerank_v2' | 'score') {
    this.upstreamPath = UPSTREAM_PATHS[kind];
    this.api = kind === 'score' ? 'score' : 'rerank';
  }

  credential(headers: IncomingHttpHeaders): string {
    return bearerCredential(headers);
  }

  check(raw: unknown, bodyBytes: number): CheckedRequest {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidRequest('The request body must be a JSON object.');
    const body = raw as Record<string, unknown>;
    const model = body.model;
    if (model === undefined || model === null || model === '') {
      throw invalidRequest('You must provide a model parameter.', 'model', 'missing_required_parameter');
    }
    if (typeof model !== 'string') throw invalidRequest(`Invalid type for 'model': expected a string.`, 'model', 'invalid_type');
    for (const field of REQUIRED[this.kind]) {
      if (body[field] === undefined || body[field] === null) {
        throw invalidRequest(`Missing required parameter: '${field}'.`, field, 'missing_required_parameter');
      }
    }
    if (body.stream === true) throw invalidRequest(`'stream' is not supported by this endpoint.`, 'stream');
    return {
      body,
      model,
      stream: false,
      clientWantsUsage: false,
      choices: 1,
      promptTokensEstimate: Math.max(1, Math.ceil(bodyBytes / 4)),
      completionTokensCap: 0,
    };
  }

  upstreamBody(req: CheckedRequest, upstreamModel: string): string {
    return upstreamBody(req, upstreamModel);
  }

  streamRelay(): StreamRelay {
    throw new Error(`${this.kind} does not stream`);
  }

  usageFromBody(tail: string, head: string | null): TokenUsage | null {
    return scoringUsage(head) ?? scoringUsage(tail);
  }

  errorBody(status: number, message: string, code: string | null): string {
    return errorBody(status, message, code, null, 'server_error');
  }

  renderError(err: ApiError): string {
    return JSON.stringify(err.toBody());
  }

  engineError(status: number, raw: string): string {
    return JSON.stringify(normalizeUpstreamError(status, raw));
  }

  midstreamErrorFrame(message: string): Buffer {
    return midstreamErrorFrame(message);
  }
}

/** A scoring answer's usage: `prompt_tokens`, else `total_tokens` (all of it is prompt: nothing is generated). */
export function scoringUsage(text: string | null): TokenUsage | null {
  if (text === null) return null;
  const usage = usageFromJsonTail(text.includes('"prompt_tokens"') ? text : text.replace('"total_tokens"', '"prompt_tokens"'));
  return usage === null ? null : { prompt: usage.prompt, completion: 0, cached: usage.cached };
}

export const SCORING_ADAPTERS: Readonly<Record<'rerank' | 'rerank_v2' | 'score', ProtocolAdapter>> = {
  rerank: new ScoringAdapter('rerank'),
  rerank_v2: new ScoringAdapter('rerank_v2'),
  score: new ScoringAdapter('score'),
};
