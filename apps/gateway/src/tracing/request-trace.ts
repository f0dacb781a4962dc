import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Span } from '@opentelemetry/api';
import type { Tracing } from '@spot/telemetry';
import type { UsageEvent } from '@spot/usage';
import type { Dispatcher } from 'undici';
import type { AuthedKey } from '../auth/authed-key';
import type { Reservation } from '../limits/reservation';
import type { Candidate } from '../routing/upstream-pool';
import { type CheckedRequest, PROXIED_PATHS, type ProxyKind } from '../proxy/openai-request';
import type { AttemptHandler, AttemptRole, ExchangeTrace } from './exchange-trace';
import { FINISH_REASON, ResponseFields, STOP_REASON } from './response-fields';

/** `gen_ai.operation.name` of each proxied operation (the spec's names where it has one). */
const OPERATION: Readonly<Record<ProxyKind, string>> = {
  chat: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  responses: 'chat',
  messages: 'chat',
  count_tokens: 'count_tokens',
  rerank: 'rerank',
  rerank_v2: 'rerank',
  score: 'score',
  transcriptions: 'transcription',
  translations: 'translation',
};
/** The first path of each operation (its canonical one; the others are vLLM's aliases). */
const ROUTE_OF = Object.fromEntries(
  Object.entries(PROXIED_PATHS)
    .reverse()
    .map(([path, kind]) => [kind, path]),
) as Readonly<Record<ProxyKind, string>>;
/** `gen_ai.provider.name`: the engines behind every tier speak vLLM's OpenAI-compatible API. */
const PROVIDER = 'vllm';

/** The sampling parameters of a request body that the GenAI conventions name. */
const NUMERIC_PARAMS: ReadonlyArray<readonly [string, string]> = [
  ['temperature', 'gen_ai.request.temperature'],
  ['top_p', 'gen_ai.request.top_p'],
  ['top_k', 'gen_ai.request.top_k'],
  ['frequency_penalty', 'gen_ai.request.frequency_penalty'],
  ['presence_penalty', 'gen_ai.request.presence_penalty'],
  ['seed', 'gen_ai.request.seed'],
];

function maxTokens(body: Record<string, unknown>): number | undefined {
  for (const k of ['max_tokens', 'max_completion_tokens', 'max_output_tokens']) {
    const v = body[k];
    if (typeof v === 'number' && Number.isInteger(v)) return v;
  }
  return undefined;
}

function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/**
 * Makes the trace of each proxied request (only while tracing is on: the routes hold null otherwise). One trace is
 * a SERVER span for the client's request (an incoming `traceparent` is its parent), a CLIENT span for the model
 * call with the GenAI semantic conventions, and their children: `auth` (a key looked up in Postgres), `admission`
 * (the limiter's round trip), `wake` (a sleeping tier), and one CLIENT span per engine request, whose
 * `traceparent` the engine receives.
 */
export class RequestTracer {
  constructor(private readonly tracing: Tracing) {}

  begin(kind: ProxyKind, requestId: string, req: IncomingMessage, res: ServerResponse): RequestTrace {
    return new RequestTrace(this.tracing, kind, requestId, req, res);
  }
}

/** One proxied request's spans: see {@link RequestTracer}. */
export class RequestTrace implements ExchangeTrace {
  private readonly server: Span;
  private readonly serverContext: Context;
  private model: Span | null = null;
  private modelContext: Context | null = null;
  private upstreamPath = '';
  private attempts = 0;
  private last: TracedAttempt | null = null;
  private exchangeLive = false;
  private status = 0;
  private responseClosed = false;
  private ended = false;

  constructor(
    private readonly tracing: Tracing,
    private readonly kind: ProxyKind,
    requestId: string,
    req: IncomingMessage,
    res: ServerResponse,
  ) {
    const url = req.url ?? '';
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    // the route the path matched (a percent-escaped path, which Fastify's router took, is named by its operation's)
    const route = PROXIED_PATHS[path] === kind ? path : ROUTE_OF[kind];
    const host = req.headers.host;
    const colon = host === undefined ? -1 : host.lastIndexOf(':');
    this.server = tracing.tracer.startSpan(
      `POST ${route}`,
      {
        kind: tracing.kind.server,
        attributes: {
          'http.request.method': 'POST',
          'http.route': route,
          'url.path': path,
          'url.scheme': 'http',
          'network.protocol.version': req.httpVersion,
          'server.address': host === undefined ? undefined : colon > 0 && !host.endsWith(']') ? host.slice(0, colon) : host,
          'server.port': colon > 0 && host !== undefined && !host.endsWith(']') ? Number(host.slice(colon + 1)) || undefined : undefined,
          'client.address': req.socket.remoteAddress,
          'user_agent.original': req.headers['user-agent'],
          'spot.request_id': requestId,
        },
      },
      tracing.extract(req.headers),
    );
    this.serverContext = tracing.withSpan(tracing.root, this.server);
    res.once('close', () => {
      this.responseClosed = true;
      if (!this.exchangeLive) this.end(this.status || res.statusCode);
    });
  }

  /** The key was not in memory: a span for its lookup (Postgres) until `lookup` settles. */
  auth(lookup: Promise<AuthedKey>): void {
    const span = this.tracing.tracer.startSpan('auth', { kind: this.tracing.kind.internal, attributes: { 'spot.key_cache': 'miss' } }, this.serverContext);
    lookup.then(
      () => span.end(),
      (err: unknown) => {
        this.tracing.fail(span, codeOf(err));
        span.end();
      },
    );
  }

  /** The body is checked and the key known: opens the model-call span `{operation} {model}`. */
  request(req: CheckedRequest, key: AuthedKey, upstreamPath: string): void {
    this.upstreamPath = upstreamPath;
    this.server.setAttribute('spot.org_id', key.orgId);
    this.server.setAttribute('spot.key_id', key.id);
    const operation = OPERATION[this.kind];
    const body = req.body;
    const span = this.tracing.tracer.startSpan(
      `${operation} ${req.model}`,
      {
        kind: this.tracing.kind.client,
        attributes: {
          'gen_ai.operation.name': operation,
          'gen_ai.provider.name': PROVIDER,
          'gen_ai.request.model': req.model,
          'gen_ai.request.max_tokens': maxTokens(body),
          'spot.org_id': key.orgId,
          'spot.key_id': key.id,
          'spot.stream': req.stream,
        },
      },
      this.serverContext,
    );
    for (const [param, attribute] of NUMERIC_PARAMS) {
      const v = body[param];
      if (typeof v === 'number') span.setAttribute(attribute, v);
    }
    if (typeof body.n === 'number' && body.n !== 1) span.setAttribute('gen_ai.request.choice.count', body.n);
    const stop = body.stop ?? body.stop_sequences;
    if (typeof stop === 'string') span.setAttribute('gen_ai.request.stop_sequences', [stop]);
    else if (Array.isArray(stop) && stop.every((s) => typeof s === 'string')) span.setAttribute('gen_ai.request.stop_sequences', stop as string[]);
    this.model = span;
    this.modelContext = this.tracing.withSpan(this.serverContext, span);
  }

  /** The exchange owns the response from now on: the spans end when it finishes. */
  exchangeStarted(): void {
    this.exchangeLive = true;
  }

  /** The limiter's verdict is awaited: a span until it is in. */
  admission(reservation: Reservation): void {
    const verdict = reservation.verdict;
    if (verdict === null) return;
    const span = this.child('admission');
    void verdict.then((refusal) => {
      if (refusal !== null) this.tracing.fail(span, refusal.code ?? String(refusal.status), refusal.message);
      span.setAttribute('spot.admitted', refusal === null);
      span.end();
    });
  }

  wake<T>(waking: Promise<T>): Promise<T> {
    const span = this.child('wake');
    waking.then(
      () => span.end(),
      (err: unknown) => {
        this.tracing.fail(span, codeOf(err));
        span.end();
      },
    );
    return waking;
  }

  attempt(handler: AttemptHandler, candidate: Candidate, headers: Record<string, string>, role: AttemptRole = 'attempt'): Dispatcher.DispatchHandler {
    const { route, endpoint } = candidate;
    const origin = new URL(endpoint.origin);
    const span = this.tracing.tracer.startSpan(
      `POST ${this.upstreamPath}`,
      {
        kind: this.tracing.kind.client,
        attributes: {
          'http.request.method': 'POST',
          'url.full': `${endpoint.origin}${this.upstreamPath}`,
          'server.address': origin.hostname,
          'server.port': portOf(origin),
          'http.request.resend_count': this.attempts > 0 ? this.attempts : undefined,
          'spot.tier': route.tier,
          'spot.tier_kind': route.kind,
          'spot.replica': endpoint.replica,
          'spot.upstream_model': route.upstreamModel,
          'spot.attempt_role': role,
        },
      },
      this.modelContext ?? this.serverContext,
    );
    this.attempts++;
    this.tracing.inject(span, headers);
    const traced = new TracedAttempt(handler, span, this.tracing, origin, new ResponseFields(this.kind === 'messages' ? STOP_REASON : FINISH_REASON));
    this.last = traced;
    return traced;
  }

  usage(event: UsageEvent): void {
    const span = this.model;
    if (span === null) return;
    span.setAttribute('gen_ai.usage.input_tokens', event.promptTokens);
    span.setAttribute('gen_ai.usage.output_tokens', event.completionTokens);
    if (event.cachedTokens > 0) span.setAttribute('gen_ai.usage.cache_read.input_tokens', event.cachedTokens);
    if (event.estimated) span.setAttribute('spot.usage.estimated', true);
    span.setAttribute('spot.tier', event.tier);
    this.server.setAttribute('spot.tier', event.tier);
  }

  finished(status: number): void {
    this.status = status;
    this.exchangeLive = false;
    if (this.responseClosed) this.end(status);
  }

  private child(name: string): Span {
    return this.tracing.tracer.startSpan(name, { kind: this.tracing.kind.internal }, this.modelContext ?? this.serverContext);
  }

  /** Ends the model-call span (its response fields from the last engine request) and the server span. */
  private end(status: number): void {
    if (this.ended) return;
    this.ended = true;
    const model = this.model;
    if (model !== null) {
      const last = this.last;
      if (last !== null) {
        const f = last.fields;
        if (f.id !== null) model.setAttribute('gen_ai.response.id', f.id);
        if (f.model !== null) model.setAttribute('gen_ai.response.model', f.model);
        if (f.finishReasons.length > 0) model.setAttribute('gen_ai.response.finish_reasons', f.finishReasons);
        model.setAttribute('server.address', last.origin.hostname);
        model.setAttribute('server.port', portOf(last.origin));
      }
      model.setAttribute('http.response.status_code', status);
      if (status >= 400) this.tracing.fail(model, String(status));
      model.end();
    }
    this.server.setAttribute('http.response.status_code', status);
    // a server span is in error for the server's failures only (HTTP conventions); 4xx is the client's
    if (status >= 500) this.tracing.fail(this.server, String(status));
    this.server.end();
  }
}

/**
 * An engine request's dispatch handler as the trace sees it: passes every event on to the exchange's
 * {@link Attempt} and keeps, for its span, the status, the response's fields and how it ended.
 */
class TracedAttempt implements Dispatcher.DispatchHandler {
  private status = 0;

  constructor(
    private readonly inner: AttemptHandler,
    private readonly span: Span,
    private readonly tracing: Tracing,
    readonly origin: URL,
    readonly fields: ResponseFields,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.inner.onRequestStart?.(controller, context);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode >= 200) {
      this.status = statusCode;
      this.span.setAttribute('http.response.status_code', statusCode);
    }
    this.inner.onResponseStart?.(controller, statusCode, headers as never, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.status < 300) this.fields.push(chunk);
    this.inner.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.inner.onResponseEnd?.(controller, trailers as never);
    const span = this.span;
    if (this.status >= 400) this.tracing.fail(span, String(this.status));
    else {
      const relay = this.inner.relay;
      if (relay !== null && !relay.sawDone) this.tracing.fail(span, 'incomplete_stream', 'the engine ended the stream before it was complete');
    }
    this.setResponse();
    span.end();
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    this.inner.onResponseError?.(controller, err);
    this.tracing.fail(this.span, codeOf(err), err.message);
    this.setResponse();
    this.span.end();
  }

  private setResponse(): void {
    const f = this.fields;
    if (f.id !== null) this.span.setAttribute('gen_ai.response.id', f.id);
    if (f.finishReasons.length > 0) this.span.setAttribute('gen_ai.response.finish_reasons', f.finishReasons);
  }
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : err instanceof Error ? err.constructor.name : 'Error';
}
