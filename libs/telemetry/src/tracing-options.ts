import type { AppConfig } from '@spot/config';

/** The samplers of OTEL_TRACES_SAMPLER. */
export type SamplerName = AppConfig['OTEL_TRACES_SAMPLER'];

/** Everything the tracing SDK is started with, read from the validated config (never from the environment). */
export interface TracingOptions {
  /** Where spans are POSTed: the traces endpoint, or `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces`. */
  readonly url: string;
  readonly protocol: 'http/protobuf' | 'http/json';
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly serviceName: string;
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly sampler: SamplerName;
  /** The traceidratio samplers' ratio. */
  readonly ratio: number;
  readonly scheduledDelayMs: number;
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
}

/**
 * The tracing options of this process, or null when tracing is off: no OTLP endpoint set, OTEL_SDK_DISABLED,
 * OTEL_TRACES_EXPORTER=none, or a sampler that records nothing (always_off). `serviceName` is the default of
 * OTEL_SERVICE_NAME.
 */
export function tracingOptions(config: AppConfig, serviceName: string): TracingOptions | null {
  const base = config.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base === undefined ? undefined : `${base.replace(/\/+$/, '')}/v1/traces`);
  if (url === undefined || config.OTEL_SDK_DISABLED || config.OTEL_TRACES_EXPORTER === 'none' || config.OTEL_TRACES_SAMPLER === 'always_off') return null;
  // OTEL_RESOURCE_ATTRIBUTES may name the service too; OTEL_SERVICE_NAME wins (as the spec says)
  const resourceAttributes = { ...config.OTEL_RESOURCE_ATTRIBUTES };
  const named = resourceAttributes['service.name'];
  return {
    url,
    protocol: config.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? config.OTEL_EXPORTER_OTLP_PROTOCOL,
    headers: { ...config.OTEL_EXPORTER_OTLP_HEADERS, ...config.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
    timeoutMs: config.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? config.OTEL_EXPORTER_OTLP_TIMEOUT,
    serviceName: config.OTEL_SERVICE_NAME ?? named ?? serviceName,
    resourceAttributes,
    sampler: config.OTEL_TRACES_SAMPLER,
    ratio: config.OTEL_TRACES_SAMPLER_ARG ?? 1,
    scheduledDelayMs: config.OTEL_BSP_SCHEDULE_DELAY,
    maxQueueSize: config.OTEL_BSP_MAX_QUEUE_SIZE,
    maxExportBatchSize: config.OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
  };
}
