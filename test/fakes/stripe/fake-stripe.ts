/**
 * A local fake of Stripe's v1 API for tests, speaking the wire format the official `stripe` SDK
 * speaks: form-encoded bodies with bracket params, `Authorization: Bearer sk_test_...`,
 * `Idempotency-Key` replay (`Idempotent-Replayed: true`), Stripe's error envelope and statuses, and
 * injectable faults (500, 429, dropped connections, hangs). Point the SDK at it with
 * `new Stripe(fake.apiKey, { host: fake.host, port: fake.port, protocol: 'http' })`.
 *
 * Where Stripe's exact behaviour comes from:
 * - Meter event identifiers: unique "within a rolling period of at least 24 hours" (API reference,
 *   `identifier` of POST /v1/billing/meter_events). A repeat is answered 400 invalid_request_error,
 *   no `code`, `Stripe-Should-Retry: false`, message `An event already exists with identifier <id>.`
 *   (observed against Stripe and quoted in langfuse/langfuse PR #16292 and several integrations).
 * - Meter event timestamps: "within the past 35 calendar days or up to 5 minutes in the future"
 *   (API reference). The too-old message `The event timestamp cannot be more than 35 days in past.
 *   Expected a timestamp greater than or equal to <t>.` is Stripe's (quoted in
 *   the-answerai/theanswer PR #624); the too-new message mirrors it (no public quote was found).
 * - Idempotency: results of requests that ran are saved and replayed for the same key and the same
 *   parameters; other parameters give 400 idempotency_error with Stripe's wording; a request that
 *   failed validation saves nothing (Stripe's idempotent-requests guide). Keys expire after 24 hours.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FormBodyError, parseFormBody, type FormObject } from './form-body';
import { FakeStripeState, newId } from './fake-stripe-state';
import { ROUTES, type RouteResult } from './fake-stripe-routes';
import {
  StripeApiError,
  apiError,
  apiKeyInvalid,
  apiKeyMissing,
  idempotencyEndpointMismatch,
  idempotencyParamsMismatch,
  invalidRequest,
  rateLimited,
  unrecognizedUrl,
} from './stripe-errors';

export { FakeStripeState } from './fake-stripe-state';
export type {
  CustomerObject,
  InvoiceLineObject,
  InvoiceObject,
  MeterEventObject,
  MeterObject,
  PriceObject,
  ProductObject,
  SubscriptionItemObject,
  SubscriptionObject,
} from './fake-stripe-state';

/** The API version the fake reports when a request names none (stripe-node v23's pinned version). */
export const FAKE_STRIPE_DEFAULT_API_VERSION = '2026-10-28.endive';

const IDEMPOTENCY_KEY_TTL_MS = 24 * 3600 * 1000;
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * A fault to inject into the next matching request(s).
 * - `500`: answer 500 api_error without running the request (stripe-node retries 5xx).
 * - `429`: answer 429 with Stripe's rate-limit body without running the request.
 * - `drop`: destroy the socket without answering; `when: 'after'` (the default) runs the request
 *   first, as when Stripe accepted it but the client never heard; `when: 'before'` does not.
 * - `timeout`: never answer (the socket stays open until the client gives up or the fake closes);
 *   `when: 'before'` (the default) does not run the request, `when: 'after'` does.
 */
export interface FakeStripeFault {
  kind: '500' | '429' | 'drop' | 'timeout';
  /** How many matching requests it hits; default 1. Decremented as it fires. */
  count?: number;
  /** Matches the URL path without its query: a string exactly, a RegExp by test(). Default: any path. */
  path?: string | RegExp;
  /** Matches the HTTP method, case-insensitively. Default: any method. */
  method?: string;
  when?: 'before' | 'after';
  /** Sends `Stripe-Should-Retry: true|false` with a 500 or 429 answer. */
  shouldRetry?: boolean;
}

/** One request as the fake received it. */
export interface FakeStripeRequest {
  method: string;
  /** URL path without the query. */
  path: string;
  /** Parsed query string (GET params). */
  query: FormObject;
  /** Header names lowercased; repeated headers joined with `, `. */
  headers: Record<string, string>;
  idempotencyKey: string | undefined;
  stripeVersion: string | undefined;
  /** The form body as received. */
  rawBody: string;
  /** The form body with bracket params expanded. Empty for a body that did not parse. */
  body: FormObject;
  /** The status answered; undefined when the fault dropped or held the request. */
  status: number | undefined;
  /** True when an idempotent result was replayed. */
  replayed: boolean;
  /** The fault that hit this request, if any. */
  fault: FakeStripeFault['kind'] | undefined;
  receivedAt: Date;
}

export interface FakeStripeOptions {
  /** Port to listen on; default 0 (any free port). */
  port?: number;
  /** The one secret key accepted; default `sk_test_fake`. */
  apiKey?: string;
  /** The webhook endpoint secret signWebhook signs with; default `whsec_fake`. */
  webhookSecret?: string;
  /** The clock, in epoch milliseconds; default Date.now. Drives created, meter-event windows and periods. */
  now?: () => number;
}

/** A signed webhook delivery: post `body` with header `Stripe-Signature: <header>`. */
export interface SignedWebhook {
  body: string;
  header: string;
  timestamp: number;
}

export interface FakeStripe {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  host: string;
  apiKey: string;
  webhookSecret: string;
  state: FakeStripeState;
  /** Pending faults, consumed in order: push to inject. */
  faults: FakeStripeFault[];
  /** Every request received, oldest first. */
  requests: FakeStripeRequest[];
  /**
   * Signs `payload` like Stripe signs a webhook delivery: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
   * "<t>.<body>" keyed with the endpoint secret>`, so `stripe.webhooks.constructEvent(body, header,
   * secret)` accepts it. `body` is the JSON Stripe would post (pretty-printed, as Stripe sends it).
   */
  signWebhook(payload: object, options?: { timestamp?: number; secret?: string }): SignedWebhook;
  /** A Stripe `event` object wrapping `object` (for signWebhook). */
  event(type: string, object: object): Record<string, unknown>;
  /** Forgets all objects, idempotency keys, faults and logged requests. */
  reset(): void;
  /** Stops listening and destroys open connections (including held `timeout` requests). */
  close(): Promise<void>;
}

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/** Starts the fake on 127.0.0.1. */
export async function startFakeStripe(opts: FakeStripeOptions = {}): Promise<FakeStripe> {
  const apiKey = opts.apiKey ?? 'sk_test_fake';
  const webhookSecret = opts.webhookSecret ?? 'whsec_fake';
  const now = opts.now ?? Date.now;
  const host = '127.0.0.1';
  const state = new FakeStripeState();
  const faults: FakeStripeFault[] = [];
  const requests: FakeStripeRequest[] = [];
  const sockets = new Set<Socket>();

  const takeFault = (method: string, path: string): FakeStripeFault | undefined => {
    const index = faults.findIndex(
      (f) =>
        (f.method === undefined || f.method.toUpperCase() === method) &&
        (f.path === undefined || (typeof f.path === 'string' ? f.path === path : f.path.test(path))),
    );
    if (index < 0) return undefined;
    const fault = faults[index];
    const remaining = (fault.count ?? 1) - 1;
    if (remaining <= 0) faults.splice(index, 1);
    else fault.count = remaining;
    return fault;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, rawBody: string): void => {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://fake-stripe.invalid');
    const path = url.pathname;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const record: FakeStripeRequest = {
      method,
      path,
      query: {},
      headers,
      idempotencyKey: headers['idempotency-key'],
      stripeVersion: headers['stripe-version'],
      rawBody,
      body: {},
      status: undefined,
      replayed: false,
      fault: undefined,
      receivedAt: new Date(now()),
    };
    requests.push(record);
    let parseError: StripeApiError | undefined;
    try {
      record.query = parseFormBody(url.search.slice(1));
      record.body = method === 'POST' ? parseFormBody(rawBody) : {};
    } catch (error) {
      if (!(error instanceof FormBodyError)) throw error;
      parseError = invalidRequest(error.message, { param: error.param });
    }

    const fault = takeFault(method, path);
    record.fault = fault?.kind;
    const when = fault?.when ?? (fault?.kind === 'drop' ? 'after' : 'before');
    const shouldRetryHeader: Record<string, string> =
      fault?.shouldRetry === undefined ? {} : { 'Stripe-Should-Retry': String(fault.shouldRetry) };
    const send = (answer: Answer): void => {
      record.status = answer.status;
      res.writeHead(answer.status, {
        'Content-Type': 'application/json',
        'Request-Id': newId('req_'),
        'Stripe-Version': record.stripeVersion ?? FAKE_STRIPE_DEFAULT_API_VERSION,
        ...(record.idempotencyKey !== undefined && method === 'POST' ? { 'Idempotency-Key': record.idempotencyKey } : {}),
        ...answer.headers,
      });
      res.end(answer.body);
    };

    if (fault !== undefined && when === 'before') {
      switch (fault.kind) {
        case '500':
          return send(errorAnswer(apiError(shouldRetryHeader)));
        case '429':
          return send(errorAnswer(rateLimited(shouldRetryHeader)));
        case 'drop':
          req.socket.destroy();
          return;
        case 'timeout':
          return;
      }
    }

    const answer = parseError !== undefined ? errorAnswer(parseError) : run(method, path, headers, record);
    if (fault !== undefined) {
      // `when: 'after'`: the request ran (and its idempotent result is saved); the client hears nothing.
      switch (fault.kind) {
        case 'drop':
          req.socket.destroy();
          return;
        case 'timeout':
          return;
        case '500':
          return send(errorAnswer(apiError(shouldRetryHeader)));
        case '429':
          return send(errorAnswer(rateLimited(shouldRetryHeader)));
      }
    }
    send(answer);
  };

  const run = (method: string, path: string, headers: Record<string, string>, record: FakeStripeRequest): Answer => {
    const auth = headers.authorization;
    if (auth === undefined || auth.trim() === '') return errorAnswer(apiKeyMissing());
    const bearer = /^Bearer\s+(\S+)$/i.exec(auth.trim())?.[1];
    const basic = /^Basic\s+(\S+)$/i.exec(auth.trim())?.[1];
    // Stripe also takes the key as the basic-auth user name (curl -u sk_test_...:).
    const presented = bearer ?? (basic !== undefined ? Buffer.from(basic, 'base64').toString('utf8').split(':')[0] : auth);
    if (presented !== apiKey) return errorAnswer(apiKeyInvalid(presented));

    const route = ROUTES.find((r) => r.method === method && r.pattern.test(path));
    if (route === undefined) return errorAnswer(unrecognizedUrl(method, path));
    const params = method === 'POST' ? record.body : record.query;

    const idempotencyKey = method === 'POST' ? record.idempotencyKey : undefined;
    const endpoint = `${method} ${path}`;
    const canonicalParams = JSON.stringify(canonical(params));
    const storeKey = `${apiKey} ${idempotencyKey ?? ''}`;
    if (idempotencyKey !== undefined) {
      const saved = state.idempotency.get(storeKey);
      if (saved !== undefined && now() - saved.storedAt < IDEMPOTENCY_KEY_TTL_MS) {
        if (saved.endpoint !== endpoint) return errorAnswer(idempotencyEndpointMismatch(idempotencyKey, saved.endpoint, endpoint));
        if (saved.params !== canonicalParams) return errorAnswer(idempotencyParamsMismatch(idempotencyKey));
        record.replayed = true;
        return { status: saved.status, body: saved.body, headers: { 'Idempotent-Replayed': 'true' } };
      }
    }

    let result: RouteResult;
    try {
      const match = route.pattern.exec(path) as RegExpExecArray;
      result = route.handle({
        state,
        nowSeconds: Math.floor(now() / 1000),
        params,
        pathParams: match.slice(1).map((p) => decodeURIComponent(p)),
      });
    } catch (error) {
      // A refused request ran no endpoint logic that committed anything: nothing is saved under its key.
      if (error instanceof StripeApiError) return errorAnswer(error);
      throw error;
    }
    const answer: Answer = { status: result.status, body: JSON.stringify(result.body), headers: {} };
    if (idempotencyKey !== undefined) {
      state.idempotency.set(storeKey, { endpoint, params: canonicalParams, status: answer.status, body: answer.body, storedAt: now() });
    }
    return answer;
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.socket.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        handle(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (error) {
        // A bug in the fake: answer like Stripe's own 500 so the test sees it, and keep the cause.
        const cause = error instanceof Error ? error.message : String(error);
        if (!res.headersSent) {
          const failure = new StripeApiError(500, 'api_error', `The fake Stripe server failed: ${cause}`);
          res.writeHead(500, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify(failure.body));
        }
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${host}:${port}`,
    port,
    host,
    apiKey,
    webhookSecret,
    state,
    faults,
    requests,
    signWebhook(payload, options = {}) {
      const timestamp = options.timestamp ?? Math.floor(now() / 1000);
      const body = JSON.stringify(payload, null, 2);
      const signature = createHmac('sha256', options.secret ?? webhookSecret).update(`${timestamp}.${body}`, 'utf8').digest('hex');
      return { body, header: `t=${timestamp},v1=${signature}`, timestamp };
    },
    event(type, object) {
      return {
        id: newId('evt_', 24),
        object: 'event',
        api_version: FAKE_STRIPE_DEFAULT_API_VERSION,
        created: Math.floor(now() / 1000),
        data: { object },
        livemode: false,
        pending_webhooks: 1,
        request: { id: null, idempotency_key: null },
        type,
      };
    },
    reset() {
      state.clear();
      faults.length = 0;
      requests.length = 0;
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        for (const socket of sockets) socket.destroy();
        server.close((error) => (error ? reject(error) : resolve()));
      });
    },
  };
}

function errorAnswer(error: StripeApiError): Answer {
  return { status: error.status, body: JSON.stringify(error.body), headers: { ...error.headers } };
}

/** Params with object keys sorted, so equal params compare equal whatever order they arrived in. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) sorted[key] = canonical((value as Record<string, unknown>)[key]);
    return sorted;
  }
  return value;
}
