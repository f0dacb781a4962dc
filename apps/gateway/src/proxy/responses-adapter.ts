import type { IncomingHttpHeaders } from 'node:http';
import { Injectable } from '@nestjs/common';
import { type ApiError, errorBody, invalidRequest, normalizeUpstreamError } from '@spot/contract';
import type { ModelApi } from '@spot/tiers';
import { bearerCredential } from '../auth/credential';
import type { AuthedKey } from '../auth/authed-key';
import { bodyError } from '../errors/to-api-error';
import { checkRequest, type CheckedRequest } from './openai-request';
import type { ProtocolAdapter, ResponseKeeper, StreamRelay } from './protocol-adapter';
import { ResponsesContinuationRelay, ResponsesStreamContinuation } from './responses-continuation';
import { ResponsesStore } from './responses-store';
import { completeResponse, type ResponseEcho } from './responses-object';
import { responsesErrorEvent, ResponsesSseRelay, usageFromResponse } from './responses-sse-relay';
import type { ResponsesTranscript } from './responses-transcript';
import { type TokenUsage, usageFromJsonTail } from './token-usage';

/** A stored non-streamed body is collected up to this; a larger one is answered but not stored. */
export const RESPONSE_BODY_KEEP_MAX = 1024 * 1024;

/** A Responses request once checked: what the store needs, and the input the engine gets. */
export interface ResponsesRequest extends CheckedRequest {
  /** `store` (OpenAI's default: true): the gateway keeps the Response. */
  readonly keep: boolean;
  readonly previousResponseId: string | null;
  /** This request's own input items (a string input as one user message). */
  readonly ownInput: unknown[];
  /** What the engine gets: the stored chain's input and output items, then {@link ownInput}. */
  readonly engineInput: unknown[];
}

function echoOf(req: ResponsesRequest): ResponseEcho {
  return { model: req.model, previousResponseId: req.previousResponseId, store: req.keep, body: req.body };
}

/**
 * OpenAI's Responses API over vLLM's `/v1/responses`, with the state kept by the gateway: the engine always gets
 * `store: false` and no `previous_response_id`; a previous turn is expanded from Postgres into the full input
 * (each stored turn's input items, then its output items, then this input: OpenAI's order), so any replica of
 * any tier can serve it. A finished Response with `store` is kept (see {@link ResponsesStore}).
 */
@Injectable()
export class ResponsesAdapter implements ProtocolAdapter {
  readonly kind = 'responses' as const;
  readonly api: ModelApi = 'responses';
  readonly upstreamPath = '/v1/responses';
  readonly usageInHead = false;
  /** A stream whose engine is lost goes on on another engine from the delivered text (see ResponsesStreamContinuation). */
  readonly continuation = new ResponsesStreamContinuation((req) => echoOf(req as ResponsesRequest));

  constructor(private readonly store: ResponsesStore) {}

  check(raw: unknown, bodyBytes: number): ResponsesRequest {
    const base = checkRequest('responses', raw, bodyBytes);
    const body = base.body;
    if (body.store !== undefined && body.store !== null && typeof body.store !== 'boolean') {
      throw invalidRequest(`Invalid type for 'store': expected a boolean.`, 'store', 'invalid_type');
    }
    const prev = body.previous_response_id;
    if (prev !== undefined && prev !== null && (typeof prev !== 'string' || prev === '')) {
      throw invalidRequest(`Invalid type for 'previous_response_id': expected a string.`, 'previous_response_id', 'invalid_type');
    }
    // the two ways of server-side state the gateway does not run: said plainly rather than left to the engine's words
    if (body.background === true) throw invalidRequest('Background mode is not supported: send the request without `background`.', 'background', 'unsupported_parameter');
    if (body.conversation !== undefined && body.conversation !== null) {
      throw invalidRequest("The 'conversation' parameter is not supported: continue a Response with previous_response_id.", 'conversation', 'unsupported_parameter');
    }
    const input = body.input;
    let ownInput: unknown[];
    if (typeof input === 'string') ownInput = [{ type: 'message', role: 'user', content: input }];
    else if (Array.isArray(input)) ownInput = input;
    else throw invalidRequest(`Invalid type for 'input': expected a string or an array of input items.`, 'input', 'invalid_type');
    const cap = body.max_output_tokens;
    return {
      ...base,
      completionTokensCap: typeof cap === 'number' && cap > 0 ? Math.floor(cap) : base.completionTokensCap,
      keep: body.store !== false,
      previousResponseId: typeof prev === 'string' ? prev : null,
      ownInput,
      engineInput: ownInput,
    };
  }

  /** Expands previous_response_id from this org's stored turns. @throws its 404 (no engine is asked). */
  async prepare(checked: CheckedRequest, key: AuthedKey): Promise<CheckedRequest> {
    const req = checked as ResponsesRequest;
    if (req.previousResponseId === null) return req;
    const turns = await this.store.chain(key.orgId, req.previousResponseId);
    const engineInput: unknown[] = [];
    for (const t of turns) engineInput.push(...t.input, ...t.output);
    engineInput.push(...req.ownInput);
    const expanded: ResponsesRequest = { ...req, engineInput };
    return expanded;
  }

  upstreamBody(checked: CheckedRequest, upstreamModel: string): string {
    const req = checked as ResponsesRequest;
    const { previous_response_id: _prev, ...rest } = req.body;
    try {
      return JSON.stringify({ ...rest, model: upstreamModel, input: req.engineInput, store: false });
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw bodyError('too_deep', 0);
    }
  }

  streamRelay(checked: CheckedRequest, transcript: ResponsesTranscript | null): StreamRelay {
    const echo = echoOf(checked as ResponsesRequest);
    return new ResponsesSseRelay((response) => completeResponse(response, echo), transcript);
  }

  /** The engine's Response completed into OpenAI's (see {@link completeResponse}); a body that is not one goes out as it came. */
  completeBody(checked: CheckedRequest, body: Buffer): Buffer {
    let response: unknown;
    try {
      response = JSON.parse(body.toString('utf8'));
    } catch {
      return body;
    }
    if (response === null || typeof response !== 'object' || Array.isArray(response)) return body;
    return Buffer.from(JSON.stringify(completeResponse(response as Record<string, unknown>, echoOf(checked as ResponsesRequest))));
  }

  usageFromBody(tail: string): TokenUsage | null {
    return usageFromJsonTail(tail, usageFromResponse);
  }

  errorBody(status: number, message: string, code: string | null): string {
    return errorBody(status, message, code, null, 'server_error');
  }

  credential(headers: IncomingHttpHeaders): string {
    return bearerCredential(headers);
  }

  renderError(err: ApiError): string {
    return JSON.stringify(err.toBody());
  }

  engineError(status: number, raw: string): string {
    return JSON.stringify(normalizeUpstreamError(status, raw));
  }

  midstreamErrorFrame(message: string, relay: StreamRelay | null): Buffer {
    const seq = relay instanceof ResponsesSseRelay || relay instanceof ResponsesContinuationRelay ? relay.lastSequence + 1 : 0;
    return responsesErrorEvent('upstream_error', message, null, seq);
  }

  keeper(checked: CheckedRequest, key: AuthedKey): ResponseKeeper | null {
    const req = checked as ResponsesRequest;
    if (!req.keep) return null;
    const store = this.store;
    return {
      maxBodyBytes: RESPONSE_BODY_KEEP_MAX,
      keep(requestId, body) {
        let response: Record<string, unknown> | null;
        if (Buffer.isBuffer(body)) {
          try {
            response = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
          } catch (err) {
            store.notKept('failed', requestId, `the engine's body is not JSON: ${(err as Error).message}`);
            return;
          }
        } else response = body.final ?? null;
        if (response === null || typeof response !== 'object') {
          store.notKept('failed', requestId, 'the stream carried no final response');
          return;
        }
        // what the client was answered (the engine saw no previous turn, and names the model its own way)
        completeResponse(response, echoOf(req));
        store.keep({ orgId: key.orgId, keyId: key.id, model: req.model, previousResponseId: req.previousResponseId, input: req.ownInput, response, requestId });
      },
      tooLarge(requestId) {
        store.notKept('too_large', requestId, `its body is over ${RESPONSE_BODY_KEEP_MAX} bytes`);
      },
    };
  }
}
