import type { IncomingHttpHeaders } from 'node:http';
import { type ApiError, errorBody, normalizeUpstreamError } from '@spot/contract';
import type { ModelApi } from '@spot/tiers';
import { bearerCredential } from '../auth/credential';
import { checkRequest, type CheckedRequest, type OpenAIKind, UPSTREAM_PATHS, upstreamBody } from './openai-request';
import { OPENAI_CONTINUATIONS } from './openai-continuation';
import { OpenAISseRelay } from './openai-sse-relay';
import type { ProtocolAdapter, StreamContinuation, StreamRelay } from './protocol-adapter';
import type { StreamTranscript } from './stream-transcript';
import { midstreamErrorFrame } from './sse-frames';
import { type TokenUsage, usageFromJsonTail } from './token-usage';

/** OpenAI's chat completions, completions and embeddings: one shape of request, stream and error. */
class OpenAIAdapter implements ProtocolAdapter {
  readonly upstreamPath: string;
  readonly usageInHead = false;
  readonly api: ModelApi;
  readonly continuation: StreamContinuation | undefined;

  constructor(readonly kind: OpenAIKind) {
    this.upstreamPath = UPSTREAM_PATHS[kind];
    this.api = kind;
    this.continuation = OPENAI_CONTINUATIONS[kind];
  }

  credential(headers: IncomingHttpHeaders): string {
    return bearerCredential(headers);
  }

  check(body: unknown, bodyBytes: number): CheckedRequest {
    return checkRequest(this.kind, body, bodyBytes);
  }

  upstreamBody(req: CheckedRequest, upstreamModel: string): string {
    return upstreamBody(req, upstreamModel);
  }

  streamRelay(req: CheckedRequest, transcript: StreamTranscript | null): StreamRelay {
    return new OpenAISseRelay(req.clientWantsUsage, transcript);
  }

  usageFromBody(tail: string): TokenUsage | null {
    return usageFromJsonTail(tail);
  }

  errorBody(status: number, message: string, code: string | null): string {
    return errorBody(status, message, code, null, 'server_error');
  }

  engineError(status: number, raw: string): string {
    return JSON.stringify(normalizeUpstreamError(status, raw));
  }

  renderError(err: ApiError): string {
    return JSON.stringify(err.toBody());
  }

  midstreamErrorFrame(message: string, _relay: StreamRelay | null): Buffer {
    return midstreamErrorFrame(message);
  }
}

/** The adapter of each proxied OpenAI operation. */
export const OPENAI_ADAPTERS: Readonly<Record<OpenAIKind, ProtocolAdapter>> = {
  chat: new OpenAIAdapter('chat'),
  completions: new OpenAIAdapter('completions'),
  embeddings: new OpenAIAdapter('embeddings'),
};
