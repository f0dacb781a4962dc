import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { type FakeOtlpCollector, SPAN_KIND, STATUS_CODE, startFakeOtlpCollector } from '../fakes/otlp/fake-otlp-collector';

const SCENARIO = resolve(__dirname, '../support/tracing-scenario.cjs');

/** The tracing SDK as libs/telemetry starts it (the build in dist/), against the fake OTLP/HTTP collector. */
describe('libs/telemetry: startTracing', () => {
  let collector: FakeOtlpCollector;

  beforeAll(async () => {
    if (!existsSync(resolve(__dirname, '../../dist/libs/telemetry/src/index.js'))) throw new Error('dist/ is missing: run `npm run build`');
    collector = await startFakeOtlpCollector();
  });
  afterEach(() => collector.reset());
  afterAll(async () => {
    await collector.close();
  });

  /** Runs a scenario in its own process (it exits once its shutdown flushed the spans; the collector answers meanwhile). */
  async function run(scenario: string, env: Record<string, string> = {}): Promise<void> {
    const child = spawn(process.execPath, [SCENARIO, scenario], { env: { PATH: process.env.PATH, OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const code = await new Promise<number | null>((done) => child.once('exit', done));
    if (code !== 0) throw new Error(`scenario ${scenario} failed (${code}): ${stderr}`);
  }

  it.each(['http/protobuf', 'http/json'])('%s: spans with their attributes, links, status, resource and the configured headers', async (protocol) => {
    await run('spans', { OTEL_EXPORTER_OTLP_PROTOCOL: protocol, OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cret', OTEL_RESOURCE_ATTRIBUTES: 'team=infra' });
    const spans = collector.spans;
    const byName = Object.fromEntries(spans.map((s) => [s.name, s]));
    expect(Object.keys(byName).sort()).toEqual(['child', 'job', 'parent']);
    expect(byName.parent.kind).toBe(SPAN_KIND.server);
    expect(byName.parent.attributes).toEqual({ n: 3, ok: true, list: ['a', 'b'], ratio: 0.25 });
    expect(byName.parent.resource).toMatchObject({ 'service.name': 'svc', team: 'infra', 'telemetry.sdk.language': 'nodejs' });
    expect(byName.child.parentSpanId).toBe(byName.parent.spanId);
    expect(byName.child.traceId).toBe(byName.parent.traceId);
    expect(byName.child.kind).toBe(SPAN_KIND.client);
    expect(byName.child.status).toEqual({ code: STATUS_CODE.error, message: 'the engine answered 503' });
    expect(byName.child.attributes['error.type']).toBe('503');
    expect(byName.child.attributes.injected).toBe(`00-${byName.child.traceId}-${byName.child.spanId}-01`);
    // a job that throws: ERROR, its class as error.type, the exception as an event
    expect(byName.job.kind).toBe(SPAN_KIND.consumer);
    expect(byName.job.status.code).toBe(STATUS_CODE.error);
    expect(byName.job.attributes['error.type']).toBe('TypeError');
    expect(byName.job.events.map((e) => e.name)).toEqual(['exception']);
    const contentType = protocol === 'http/json' ? 'application/json' : 'application/x-protobuf';
    expect(collector.requests.length).toBeGreaterThan(0);
    for (const r of collector.requests) {
      expect(r.contentType).toBe(contentType);
      expect(r.headers.authorization).toBe('Bearer s3cret');
    }
  });

  it('an incoming traceparent is the parent, and the parent-based sampler follows its sampled flag', async () => {
    await run('sampler', { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' });
    // the unsampled parent's child and the root (ratio 0) are not exported
    expect(collector.spans.map((s) => s.name)).toEqual(['sampled']);
    expect(collector.spans[0]).toMatchObject({ traceId: '0af7651916cd43dd8448eb211c80319c', parentSpanId: 'b7ad6b7169203331' });
  });

  it('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the URL itself; a collector answering 503 gets the batch again', async () => {
    collector.failNext(1, 503);
    await run('one', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${collector.url}/v1/traces` });
    expect(collector.spans.map((s) => s.name)).toEqual(['one']);
  });
});
