import { parseArgs } from 'node:util';
import { startSim, type SimOptions } from './sim-server';

const USAGE = `usage: vllm-sim --models m1[,m2...] [--port 8090] [--host 127.0.0.1] [--ttft-ms N] [--itl-ms N]
                [--output-tokens N] [--max-model-len N] [--embedding-dim N] [--error-shape current|flat]
                [--wake-up-ms N]   (how long POST /wake_up takes in sleep mode)
                [--prefix-caching] (report prefix-cache hits as cached_tokens, like --enable-prompt-tokens-details)
                [--max-num-seqs N] (requests generating at once; the others wait, in vllm:num_requests_waiting)`;

function fail(message: string): never {
  process.stderr.write(`vllm-sim: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function int(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, got "${value}"`);
  return n;
}

function parseOptions(argv: string[]): SimOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string', default: '8090' },
        host: { type: 'string', default: '127.0.0.1' },
        models: { type: 'string' },
        'ttft-ms': { type: 'string' },
        'itl-ms': { type: 'string' },
        'output-tokens': { type: 'string' },
        'max-model-len': { type: 'string' },
        'embedding-dim': { type: 'string' },
        'error-shape': { type: 'string' },
        'wake-up-ms': { type: 'string' },
        'prefix-caching': { type: 'boolean' },
        'max-num-seqs': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const models = (values.models ?? '').split(',').map((m) => m.trim()).filter(Boolean);
  if (models.length === 0) fail('--models is required (comma-separated served model names)');
  const shape = values['error-shape'];
  if (shape !== undefined && shape !== 'current' && shape !== 'flat') fail(`--error-shape must be current or flat, got "${shape}"`);
  const port = int('port', values.port, 0);
  if (port !== undefined && port > 65535) fail(`--port must be <= 65535, got "${values.port}"`);
  return {
    port,
    host: values.host,
    models,
    ttftMs: int('ttft-ms', values['ttft-ms'], 0),
    itlMs: int('itl-ms', values['itl-ms'], 0),
    outputTokens: int('output-tokens', values['output-tokens'], 1),
    maxModelLen: int('max-model-len', values['max-model-len'], 2),
    embeddingDim: int('embedding-dim', values['embedding-dim'], 1),
    errorShape: shape,
    wakeUpMs: int('wake-up-ms', values['wake-up-ms'], 0),
    prefixCaching: values['prefix-caching'] === true,
    maxNumSeqs: int('max-num-seqs', values['max-num-seqs'], 1),
  };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const sim = await startSim({
    ...opts,
    onCrash: () => {
      process.stderr.write('vllm-sim: crashed (a crash fault, or POST /sim/crash-at)\n');
      process.exit(1);
    },
  });
  process.stdout.write(`vllm-sim listening on ${sim.url} (models: ${opts.models.join(', ')})\n`);
  const stop = (): void => {
    sim.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`vllm-sim: close failed: ${String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`vllm-sim: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
