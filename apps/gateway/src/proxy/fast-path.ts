import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ProxyKind } from './openai-request';

/** The proxied operations by exact path. */
const KINDS: Readonly<Record<string, ProxyKind>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
};

export type FastPathHandler = (kind: ProxyKind, req: IncomingMessage, res: ServerResponse) => void;

/**
 * Lets the gateway's hot routes skip Fastify's per-request machinery (hooks, router, content-type parser:
 * about a tenth of a millisecond of CPU a request here). Fastify's `serverFactory` builds the HTTP server
 * with this switch in front: a POST to one of the three proxied paths goes to the handler the Nest
 * provider installed; everything else, and everything before the app is initialised, goes to Fastify.
 */
export class FastPath {
  private handler: FastPathHandler | null = null;

  install(handler: FastPathHandler): void {
    this.handler = handler;
  }

  /** A Fastify `serverFactory`. */
  readonly serverFactory = (fastify: (req: IncomingMessage, res: ServerResponse) => void): Server =>
    createServer((req, res) => {
      const kind = req.method === 'POST' ? KINDS[req.url ?? ''] : undefined;
      if (kind !== undefined && this.handler !== null) this.handler(kind, req, res);
      else fastify(req, res);
    });
}
