// The only module that loads the OpenTelemetry SDK: imported by startTracing (tracing.ts) when tracing is on.
import { hostname } from 'node:os';
import { type Attributes, type Context, diag, DiagLogLevel, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { Tracing } from './tracing';
import type { TracingOptions } from './tracing-options';

const SCOPE = 'spotinference';
/** A collector that is down makes every export fail: one line a minute says so, not one per batch. */
const DIAG_EVERY_MS = 60_000;

function sampler(options: TracingOptions): Sampler {
  switch (options.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(options.ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.ratio) });
  }
}

let diagnosticsReported = false;

/** The SDK's own warnings (failed exports, dropped spans) on stderr, at most one a minute (set up once a process). */
function reportDiagnostics(serviceName: string): void {
  if (diagnosticsReported) return;
  diagnosticsReported = true;
  let last = -DIAG_EVERY_MS;
  let skipped = 0;
  const write = (message: string, ...args: unknown[]) => {
    const now = Date.now();
    if (now - last < DIAG_EVERY_MS) {
      skipped++;
      return;
    }
    last = now;
    const more = skipped > 0 ? ` (${skipped} more since the last one)` : '';
    skipped = 0;
    const detail = args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
    process.stderr.write(`${serviceName}: tracing: ${message}${detail === '' ? '' : ` ${detail}`}${more}\n`);
  };
  const quiet = () => undefined;
  diag.setLogger({ error: write, warn: write, info: quiet, debug: quiet, verbose: quiet }, DiagLogLevel.WARN);
}

function otlpExporter(options: TracingOptions): SpanExporter {
  const config = { url: options.url, headers: { ...options.headers }, timeoutMillis: options.timeoutMs };
  return options.protocol === 'http/json' ? new OtlpJsonExporter(config) : new OtlpProtobufExporter(config);
}

/** What a thrown value is called in `error.type`: its code when it has one, else its class. */
function errorType(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    return (err as object).constructor?.name ?? 'Error';
  }
  return typeof err;
}

/** See {@link Tracing}. `exporter` replaces the OTLP exporter (unit tests: an in-memory one). */
export function createTracing(options: TracingOptions, exporter: SpanExporter = otlpExporter(options)): Tracing {
  reportDiagnostics(options.serviceName);
  const resource = defaultResource().merge(
    resourceFromAttributes({
      'host.name': hostname(),
      'process.pid': process.pid,
      'process.runtime.name': 'nodejs',
      'process.runtime.version': process.versions.node,
      ...options.resourceAttributes,
      'service.name': options.serviceName,
    }),
  );
  const provider = new TracerProvider({
    resource,
    sampler: sampler(options),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        scheduledDelayMillis: options.scheduledDelayMs,
        maxQueueSize: options.maxQueueSize,
        maxExportBatchSize: Math.min(options.maxExportBatchSize, options.maxQueueSize),
        exportTimeoutMillis: options.timeoutMs,
      }),
    ],
  });
  const tracer = provider.getTracer(SCOPE);
  const propagator = new W3CTraceContextPropagator();
  const fail = (span: Span, type: string, message?: string) => {
    span.setAttribute('error.type', type);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
  };
  return {
    tracer,
    propagator,
    root: ROOT_CONTEXT,
    kind: { server: SpanKind.SERVER, client: SpanKind.CLIENT, internal: SpanKind.INTERNAL, consumer: SpanKind.CONSUMER },
    withSpan: (parent: Context, span: Span) => trace.setSpan(parent, span),
    extract: (headers) => propagator.extract(ROOT_CONTEXT, headers, { get: (h, key) => h[key], keys: (h) => Object.keys(h) }),
    inject: (span, headers) => propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, { set: (h, key, value) => (h[key] = value) }),
    fail,
    run: async <T>(name: string, kind: SpanKind, attributes: Attributes, fn: () => Promise<T>): Promise<T> => {
      const span = tracer.startSpan(name, { kind, attributes }, ROOT_CONTEXT);
      try {
        return await fn();
      } catch (err) {
        if (err instanceof Error) span.recordException(err);
        fail(span, errorType(err), err instanceof Error ? err.message : String(err));
        throw err;
      } finally {
        span.end();
      }
    },
    shutdown: () => provider.shutdown(),
  };
}
