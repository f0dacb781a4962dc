import { EventEmitter } from 'node:events';
import { SpanKind } from '@opentelemetry/api';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { loadConfig } from '@spot/config';
import { tracingOptions } from '@spot/telemetry';
import type { UsageEvent } from '@spot/usage';
import type { Dispatcher } from 'undici';
import { createTracing } from '../../../../libs/telemetry/src/otel-sdk';
import type { AuthedKey } from '../auth/authed-key';
import type { Reservation } from '../limits/reservation';
import type { CheckedRequest } from '../proxy/openai-request';
import type { StreamRelay } from '../proxy/protocol-adapter';
import type { Candidate } from '../routing/upstream-pool';
import { RequestTracer } from './request-trace';

// the SDK with an in-memory exporter, flushed at shutdown: the spans of one request as the gateway makes them
async function traced(scenario: (tracer: RequestTracer, res: ServerResponse) => Promise<void> | void): Promise<ReadableSpan[]> {
  // (the SDK's InMemorySpanExporter forgets its spans when shut down)
  const finished: ReadableSpan[] = [];
  const exporter: SpanExporter = {
    export: (spans, done) => {
      finished.push(...spans);
      done({ code: 0 });
    },
    shutdown: async () => undefined,
  };
  const options = tracingOptions(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' }), 'test')!;
  const tracing = createTracing(options, exporter);
  const res = Object.assign(new EventEmitter(), { statusCode: 200 }) as unknown as ServerResponse;
  await scenario(new RequestTracer(tracing), res);
  await tracing.shutdown();
  return finished;
}

const req = { url: '/v1/chat/completions?x=1', headers: { host: 'gw:8080' }, httpVersion: '1.1', socket: { remoteAddress: '10.0.0.9' } } as unknown as IncomingMessage;
const key = { id: 'key-1', orgId: 'org-1' } as AuthedKey;
const checked = { body: { model: 'm', max_tokens: 9, n: 2, stop: ['\n'] }, model: 'm', stream: true } as unknown as CheckedRequest;
const candidate = { route: { tier: 'spot', kind: 'spot', upstreamModel: 'up/m' }, endpoint: { origin: 'http://10.1.2.3:8000', replica: 'r0' } } as unknown as Candidate;
const controller = {} as Dispatcher.DispatchController;

function handler(relay: Partial<StreamRelay> | null): Dispatcher.DispatchHandler & { relay: StreamRelay | null; events: string[] } {
  const events: string[] = [];
  return {
    relay: relay as StreamRelay | null,
    events,
    onRequestStart: () => events.push('start'),
    onResponseStart: (_c, status) => events.push(`head ${status}`),
    onResponseData: (_c, chunk) => events.push(`data ${chunk.length}`),
    onResponseEnd: () => events.push('end'),
    onResponseError: (_c, err) => events.push(`error ${err.message}`),
  };
}

const named = (spans: ReadableSpan[], name: string) => spans.find((s) => s.name === name)!;
const serverOf = (spans: ReadableSpan[]) => spans.find((s) => s.kind === SpanKind.SERVER)!;

describe('RequestTrace', () => {
  it('wake and admission spans under the model call; the attempt is passed through and gets the traceparent', async () => {
    let inner: ReturnType<typeof handler> | null = null;
    const headers: Record<string, string> = {};
    const spans = await traced(async (tracer, res) => {
      const trace = tracer.begin('chat', 'req-1', req, res);
      trace.request(checked, key, '/v1/chat/completions');
      await trace.wake(Promise.resolve('woken'));
      let admit!: (v: null) => void;
      trace.admission({ verdict: new Promise<null>((r) => (admit = r)) } as unknown as Reservation);
      trace.exchangeStarted();
      inner = handler({ sawDone: true });
      const h = trace.attempt(inner, candidate, headers);
      h.onRequestStart!(controller, {});
      h.onResponseStart!(controller, 200, {}, 'OK');
      h.onResponseData!(controller, Buffer.from('data: {"id":"cmpl-9","model":"up/m","choices":[{"finish_reason":"stop"}]}\n\n'));
      h.onResponseEnd!(controller, {});
      admit(null);
      await new Promise((r) => setImmediate(r));
      trace.usage({ promptTokens: 4, completionTokens: 2, cachedTokens: 1, tier: 'spot', estimated: false } as UsageEvent);
      trace.finished(200);
      res.emit('close');
    });
    expect(inner!.events).toEqual(['start', 'head 200', 'data 75', 'end']);
    const server = serverOf(spans);
    const model = named(spans, 'chat m');
    const attempt = spans.find((s) => s.name === 'POST /v1/chat/completions' && s.kind === SpanKind.CLIENT)!;
    expect(server.attributes).toMatchObject({ 'url.path': '/v1/chat/completions', 'server.address': 'gw', 'server.port': 8080, 'client.address': '10.0.0.9', 'http.response.status_code': 200 });
    expect(model.attributes).toMatchObject({
      'gen_ai.request.max_tokens': 9,
      'gen_ai.request.choice.count': 2,
      'gen_ai.request.stop_sequences': ['\n'],
      'gen_ai.response.id': 'cmpl-9',
      'gen_ai.response.model': 'up/m',
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.usage.input_tokens': 4,
      'gen_ai.usage.output_tokens': 2,
      'gen_ai.usage.cache_read.input_tokens': 1,
      'server.address': '10.1.2.3',
      'server.port': 8000,
    });
    for (const name of ['wake', 'admission']) expect(named(spans, name).parentSpanContext?.spanId).toBe(model.spanContext().spanId);
    expect(named(spans, 'admission').attributes['spot.admitted']).toBe(true);
    expect(attempt.parentSpanContext?.spanId).toBe(model.spanContext().spanId);
    expect(attempt.attributes).toMatchObject({ 'spot.replica': 'r0', 'spot.attempt_role': 'attempt', 'http.response.status_code': 200 });
    expect(headers.traceparent).toBe(`00-${attempt.spanContext().traceId}-${attempt.spanContext().spanId}-01`);
  });

  it('a stream without its end, a client that left (499), a refused admission and a failed wake are errors', async () => {
    let finishedAt = 0;
    const spans = await traced(async (tracer, res) => {
      const trace = tracer.begin('chat', 'req-2', req, res);
      trace.request(checked, key, '/v1/chat/completions');
      trace.admission({ verdict: Promise.resolve({ status: 429, code: 'rate_limit_exceeded', message: 'slow down' }) } as unknown as Reservation);
      await trace.wake(Promise.reject(Object.assign(new Error('asleep'), { code: 'tier_waking' }))).catch(() => undefined);
      trace.exchangeStarted();
      const cut = trace.attempt(handler({ sawDone: false }), candidate, {});
      cut.onResponseStart!(controller, 200, {}, 'OK');
      cut.onResponseEnd!(controller, {});
      const continued = trace.attempt(handler({ sawDone: false }), candidate, {}, 'continuation');
      continued.onResponseError!(controller, Object.assign(new Error('client disconnected'), { code: 'client_gone' }));
      // the client left first: the spans end when the exchange does
      res.emit('close');
      await new Promise((r) => setTimeout(r, 20));
      finishedAt = Date.now();
      trace.finished(499);
    });
    const attempts = spans.filter((s) => s.attributes['spot.attempt_role'] !== undefined);
    expect(attempts.map((s) => [s.attributes['spot.attempt_role'], s.attributes['error.type'], s.attributes['http.request.resend_count']])).toEqual([
      ['attempt', 'incomplete_stream', undefined],
      ['continuation', 'client_gone', 1],
    ]);
    expect(named(spans, 'admission').attributes).toMatchObject({ 'error.type': 'rate_limit_exceeded', 'spot.admitted': false });
    expect(named(spans, 'wake').attributes['error.type']).toBe('tier_waking');
    expect(named(spans, 'chat m').attributes).toMatchObject({ 'error.type': '499', 'http.response.status_code': 499 });
    // 499 is not the server's failure
    const server = serverOf(spans);
    expect(server.status.code).toBe(0);
    expect(server.attributes['http.response.status_code']).toBe(499);
    // the server span ended with the exchange, after the client had left
    expect(server.endTime[0] * 1000 + server.endTime[1] / 1e6).toBeGreaterThanOrEqual(finishedAt - 2);
  });
});
