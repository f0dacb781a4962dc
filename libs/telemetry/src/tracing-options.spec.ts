import { ConfigError, loadConfig } from '@spot/config';
import { tracingOptions } from './tracing-options';

describe('tracingOptions', () => {
  it('off without an OTLP endpoint, whatever else is set', () => {
    expect(tracingOptions(loadConfig({}), 'svc')).toBeNull();
    expect(tracingOptions(loadConfig({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on', OTEL_EXPORTER_OTLP_ENDPOINT: '' }), 'svc')).toBeNull();
  });

  it('off when disabled, exporter none, or sampling nothing', () => {
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
    expect(tracingOptions(loadConfig({ ...on, OTEL_SDK_DISABLED: 'true' }), 'svc')).toBeNull();
    expect(tracingOptions(loadConfig({ ...on, OTEL_TRACES_EXPORTER: 'none' }), 'svc')).toBeNull();
    expect(tracingOptions(loadConfig({ ...on, OTEL_TRACES_SAMPLER: 'always_off' }), 'svc')).toBeNull();
  });

  it('the traces URL: <endpoint>/v1/traces, or the traces endpoint as it is', () => {
    expect(tracingOptions(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), 'svc')!.url).toBe('http://collector:4318/v1/traces');
    expect(tracingOptions(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t.example/otlp' }), 'svc')!.url).toBe(
      'https://t.example/otlp',
    );
  });

  it('defaults, and the standard variables', () => {
    const d = tracingOptions(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), 'spotinference-gateway')!;
    expect(d).toMatchObject({ protocol: 'http/protobuf', serviceName: 'spotinference-gateway', sampler: 'parentbased_always_on', ratio: 1, timeoutMs: 10_000, scheduledDelayMs: 5_000, headers: {} });
    const o = tracingOptions(
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc, x-team = infra',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-team=ml',
        OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs,deployment.environment.name=prod',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '3000',
      }),
      'svc',
    )!;
    expect(o).toMatchObject({
      protocol: 'http/json',
      headers: { authorization: 'Bearer abc', 'x-team': 'ml' },
      serviceName: 'from-attrs',
      resourceAttributes: { 'deployment.environment.name': 'prod' },
      sampler: 'parentbased_traceidratio',
      ratio: 0.25,
      timeoutMs: 3000,
    });
    expect(tracingOptions(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SERVICE_NAME: 'named', OTEL_RESOURCE_ATTRIBUTES: 'service.name=x' }), 'svc')!.serviceName).toBe('named');
  });

  it('refuses what it cannot honour, naming the variable, and never prints the headers (secrets)', () => {
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL="grpc": grpc is not supported: use http\/protobuf/);
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(/OTEL_TRACES_SAMPLER_ARG="2"/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": expected a http: or https: URL/);
    let err: unknown;
    try {
      loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: 'Bearer s3cret-token' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/OTEL_EXPORTER_OTLP_HEADERS=\(value hidden\): expected key=value pairs/);
    expect((err as Error).message).not.toContain('s3cret');
  });
});
