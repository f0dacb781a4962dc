export { tracingOptions } from './tracing-options';
export type { SamplerName, TracingOptions } from './tracing-options';
export { startTracing } from './tracing';
export type { Tracing } from './tracing';
export { Telemetry, TelemetryModule } from './telemetry.module';
