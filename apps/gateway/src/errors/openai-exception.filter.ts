import { type ArgumentsHost, Catch, type ExceptionFilter, Inject, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiError } from '@spot/contract';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { answerEarly, drainLimit } from '../http/early-answer';
import { STATELESS_ADAPTERS } from '../proxy/adapters';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { internalError, toApiError } from './to-api-error';

/** An error's body in one protocol's envelope. */
type ErrorEnvelope = (error: ApiError) => string;

const openAIEnvelope: ErrorEnvelope = (error) => JSON.stringify(error.toBody());

/** The envelope of each route kind: a proxied operation's is its adapter's, every other route's (Responses' too) OpenAI's. */
const ENVELOPES: ReadonlyMap<string, ErrorEnvelope> = new Map(
  Object.values(STATELESS_ADAPTERS).map((adapter) => [adapter.kind, (error: ApiError) => adapter.renderError(error)] as const),
);

/** The route kinds whose protocol has a request-id header of its own (Anthropic's `request-id`). */
const ID_HEADERS: ReadonlyMap<string, string> = new Map(
  Object.values(STATELESS_ADAPTERS).flatMap((adapter) => (adapter.requestIdHeader === undefined ? [] : [[adapter.kind, adapter.requestIdHeader] as const])),
);

/**
 * The gateway's only exception filter: every error leaves in its route's envelope (OpenAI's
 * `{"error":{"message","type","param","code"}}`, or Anthropic's on the Messages routes) with the matching status
 * and headers.
 */
@Catch()
export class OpenAIExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('Gateway');
  private readonly drainBytes: number;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: GatewayMetrics,
  ) {
    this.drainBytes = drainLimit(config);
  }

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    this.send(exception, http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), 'other');
  }

  /** Answers `reply` with the envelope of `exception` (also the Fastify error handler of the /v1 routes). */
  send(exception: unknown, request: FastifyRequest, reply: FastifyReply, route: string): void {
    const error = this.resolve(exception, request.method, request.url, request.id, route);
    if (reply.sent || reply.raw.headersSent) return;
    reply.code(error.status).header('content-type', 'application/json');
    if (error.headers) reply.headers(error.headers);
    const idHeader = ID_HEADERS.get(route);
    if (idHeader !== undefined) reply.header(idHeader, request.id);
    void reply.send(envelopeOf(route)(error));
  }

  /** The same answer written straight to a Node response (the gateway's fast path), unless it has begun. */
  sendRaw(exception: unknown, method: string, url: string, requestId: string, res: ServerResponse, route: string, headers?: Record<string, string>): void {
    const error = this.resolve(exception, method, url, requestId, route);
    if (res.headersSent || res.destroyed) return;
    const head: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId, ...error.headers, ...headers };
    const idHeader = ID_HEADERS.get(route);
    if (idHeader !== undefined) head[idHeader] = requestId;
    res.writeHead(error.status, head);
    res.end(envelopeOf(route)(error));
  }

  /**
   * The same answer to a request whose body has not been read (refused on its headers, or while it arrives):
   * sent at once, the rest of the body read and thrown away within bounds, then the connection closed.
   */
  sendBeforeBody(exception: unknown, req: IncomingMessage, res: ServerResponse, requestId: string, route: string): void {
    const error = this.resolve(exception, req.method ?? '', req.url ?? '', requestId, route);
    answerEarly(req, res, error, requestId, this.drainBytes, envelopeOf(route)(error), ID_HEADERS.get(route) ?? null);
  }

  private resolve(exception: unknown, method: string, url: string, requestId: string, route: string): ApiError {
    let error = toApiError(exception, method, url, this.config.GATEWAY_BODY_LIMIT);
    if (error === null) {
      this.logger.error(`${method} ${url.split('?')[0]} [${requestId}] failed`, exception instanceof Error ? exception.stack : String(exception));
      error = internalError();
    }
    this.metrics.countRequest(route, error.status);
    return error;
  }
}

function envelopeOf(route: string): ErrorEnvelope {
  return ENVELOPES.get(route) ?? openAIEnvelope;
}
