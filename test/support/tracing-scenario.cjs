// Runs one tracing scenario with the built libs/telemetry (dist/) against the OTLP endpoint of its environment, in
// a process of its own: the OTLP exporter loads node:http with a dynamic import, which Jest's module VM refuses.
//   node tracing-scenario.cjs spans|sampler|one   (OTEL_* variables as the apps read them)
'use strict';
const { resolve } = require('node:path');
const dist = resolve(__dirname, '../../dist/libs');
const { loadConfig } = require(`${dist}/config/src/index.js`);
const { startTracing, tracingOptions } = require(`${dist}/telemetry/src/index.js`);

async function main() {
  const options = tracingOptions(loadConfig(process.env), 'svc');
  if (options === null) throw new Error('tracing is off');
  const tracing = await startTracing(options);
  const t = tracing.tracer;
  switch (process.argv[2]) {
    case 'spans': {
      const parent = t.startSpan('parent', { kind: tracing.kind.server, attributes: { n: 3, ok: true, list: ['a', 'b'], ratio: 0.25 } }, tracing.root);
      const child = t.startSpan('child', { kind: tracing.kind.client }, tracing.withSpan(tracing.root, parent));
      const headers = {};
      tracing.inject(child, headers);
      child.setAttribute('injected', headers.traceparent);
      tracing.fail(child, '503', 'the engine answered 503');
      child.end();
      parent.end();
      await tracing.run('job', tracing.kind.consumer, { 'spot.job.name': 'j' }, () => Promise.reject(new TypeError('boom'))).catch(() => undefined);
      break;
    }
    case 'sampler': {
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      t.startSpan('sampled', {}, tracing.extract({ traceparent: `00-${traceId}-b7ad6b7169203331-01` })).end();
      t.startSpan('unsampled', {}, tracing.extract({ traceparent: `00-${traceId}-b7ad6b7169203332-00` })).end();
      t.startSpan('root', {}, tracing.extract({})).end();
      break;
    }
    case 'one':
      t.startSpan('one', {}, tracing.root).end();
      break;
    default:
      throw new Error(`unknown scenario ${process.argv[2]}`);
  }
  await tracing.shutdown();
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
