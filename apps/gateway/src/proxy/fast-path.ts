import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AppConfig } from '@spot/config';
import { protocolError } from '../errors/client-errors';
import { answerEarly, drainLimit } from '../http/early-answer';
import type { ProxyKind } from './openai-request';
import { newRequestId } from './request-id';

/** The proxied operations by exact path. */
const KINDS: Readonly<Record<string, ProxyKind>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/responses': 'responses',
};

/** The proxied operation of a POST's URL, query string or not. */
function kindOf(url: string): ProxyKind | undefined {
  const kind = KINDS[url];
  if (kind !== undefined) return kind;
  const query = url.indexOf('?');
  return query > 0 ? KINDS[url.slice(0, query)] : undefined;
}

export type FastPathHandler = (kind: ProxyKind, req: IncomingMessage, res: ServerResponse) => void;

/** How long Node's HTTP server waits on a client (see the GATEWAY_*_TIMEOUT_MS variables), and the drain bound. */
export interface ClientLimits {
  readonly headersMs: number;
  readonly requestMs: number;
  readonly keepAliveMs: number;
  /** See {@link drainLimit}. */
  readonly drainBytes: number;
}

export function clientLimits(config: AppConfig): ClientLimits {
  return {
    // Node refuses a headers timeout above the request timeout
    headersMs: Math.min(config.GATEWAY_HEADERS_TIMEOUT_MS, config.GATEWAY_BODY_TIMEOUT_MS),
    requestMs: config.GATEWAY_BODY_TIMEOUT_MS,
    keepAliveMs: config.GATEWAY_KEEP_ALIVE_TIMEOUT_MS,
    drainBytes: drainLimit(config),
  };
}

/**
 * Lets the gateway's hot routes skip Fastify's per-request machinery (hooks, router, content-type parser:
 * about a tenth of a millisecond of CPU a request here). Fastify's `serverFactory` builds the HTTP server
 * with this switch in front: a POST to one of the three proxied paths goes to the handler the Nest
 * provider installed; everything else, and everything before the app is initialised, goes to Fastify.
 *
 * The server bounds how long a client may take (Fastify does not apply its own options to a server it did
 * not build): headers within `headersMs`, the whole request within `requestMs` (then 408 and close, through
 * Fastify's clientErrorHandler), an idle kept-alive connection `keepAliveMs`. The refusals Node would write
 * bare (no Host on HTTP/1.1, an unknown Expect) leave in the OpenAI envelope.
 */
export class FastPath {
  private handler: FastPathHandler | null = null;

  constructor(private readonly limits: ClientLimits) {}

  install(handler: FastPathHandler): void {
    this.handler = handler;
  }

  /** A Fastify `serverFactory`. */
  readonly serverFactory = (fastify: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const { headersMs, requestMs, keepAliveMs, drainBytes } = this.limits;
    const server = createServer(
      {
        headersTimeout: headersMs,
        requestTimeout: requestMs,
        keepAliveTimeout: keepAliveMs,
        // how often Node looks for requests past their deadline (its default, 30 s, would double a 30 s bound)
        connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersMs / 4))),
        // checked below, so that the 400 leaves in the envelope rather than as Node's bare one
        requireHostHeader: false,
      },
      (req, res) => {
        if (req.headers.host === undefined && req.httpVersionMinor === 1 && req.httpVersionMajor === 1) {
          return answerEarly(req, res, protocolError('malformed', 'HTTP/1.1 requires a Host header'), newRequestId(), drainBytes);
        }
        const kind = req.method === 'POST' ? kindOf(req.url ?? '') : undefined;
        if (kind !== undefined && this.handler !== null) this.handler(kind, req, res);
        else fastify(req, res);
      },
    );
    // an expectation other than 100-continue (Node answers those itself)
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) =>
      answerEarly(req, res, protocolError('expectation_failed'), newRequestId(), drainBytes),
    );
    return server;
  };
}
