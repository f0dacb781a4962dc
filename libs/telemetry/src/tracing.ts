import type { Attributes, Context, Span, SpanKind, TextMapPropagator, Tracer } from '@opentelemetry/api';
import type { TracingOptions } from './tracing-options';

/**
 * A started tracing SDK: the tracer, the W3C trace-context propagator, and the few OpenTelemetry values code
 * outside this library needs, so that nothing else has to load `@opentelemetry/*` (those modules load only
 * when tracing is on: see {@link startTracing}).
 */
export interface Tracing {
  readonly tracer: Tracer;
  /** W3C `traceparent` / `tracestate`. */
  readonly propagator: TextMapPropagator;
  /** The context with no span: where a trace without an incoming parent starts. */
  readonly root: Context;
  readonly kind: { readonly server: SpanKind; readonly client: SpanKind; readonly internal: SpanKind; readonly consumer: SpanKind };
  /** `parent`'s context with `span` as its active span. */
  withSpan(parent: Context, span: Span): Context;
  /** The context an incoming request's headers carry (its `traceparent`), or {@link root}. */
  extract(headers: Readonly<Record<string, string | string[] | undefined>>): Context;
  /** Writes `traceparent` (and `tracestate`) of `span` into `headers`. */
  inject(span: Span, headers: Record<string, string>): void;
  /** Ends `span` as failed: status ERROR with `message`, and `error.type`. */
  fail(span: Span, errorType: string, message?: string): void;
  /** Runs `fn` in a span of its own (status and `error.type` from what it throws); the span ends when it settles. */
  run<T>(name: string, kind: SpanKind, attributes: Attributes, fn: () => Promise<T>): Promise<T>;
  /** Exports what is queued and stops. */
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK (a tracer provider with a batch processor and the OTLP/HTTP exporter of
 * `options.protocol`). The SDK's modules are loaded here, on the first call: a process with tracing off never
 * loads them.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const { createTracing } = await import('./otel-sdk');
  return createTracing(options);
}
