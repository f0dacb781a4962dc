import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { type FakeOtlpCollector, SPAN_KIND, STATUS_CODE, startFakeOtlpCollector } from '../fakes/otlp/fake-otlp-collector';

const MAIN = resolve(__dirname, '../../dist/apps/worker/src/main.js');

/** The built worker with an OTLP endpoint: each job it processes is a span. */
describe('worker process: tracing', () => {
  let collector: FakeOtlpCollector;
  let worker: ChildProcess | null = null;

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    collector = await startFakeOtlpCollector();
  });
  afterAll(async () => {
    if (worker !== null && worker.exitCode === null) worker.kill('SIGKILL');
    await collector.close();
  });

  it('one CONSUMER span per job (the usage rollup on its schedule), over OTLP/JSON', async () => {
    worker = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        REDIS_PREFIX: `test:${randomUUID()}:`,
        USAGE_ROLLUP_EVERY_MS: '300',
        LOG_LEVEL: 'warn',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'worker-under-test',
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const exited = new Promise<number | null>((r) => worker!.once('exit', (c) => r(c)));
    const spans = await collector.waitFor((all) => all.some((s) => s.name === 'process usage'), 20_000);
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    const rollup = spans.find((s) => s.name === 'process usage' && s.attributes['spot.job.name'] === 'usage.rollup') ?? spans.find((s) => s.name === 'process usage')!;
    expect(rollup.kind).toBe(SPAN_KIND.consumer);
    expect(rollup.parentSpanId).toBe('');
    expect(rollup.status.code).toBe(STATUS_CODE.unset);
    expect(rollup.attributes).toMatchObject({ 'messaging.system': 'bullmq', 'messaging.destination.name': 'usage', 'messaging.operation.type': 'process', 'spot.job.attempt': 1 });
    expect(typeof rollup.attributes['messaging.message.id']).toBe('string');
    expect(rollup.resource['service.name']).toBe('worker-under-test');
    expect(collector.requests.every((r) => r.contentType === 'application/json')).toBe(true);
  }, 40_000);
});
