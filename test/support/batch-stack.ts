import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { objectId } from '@spot/contract';
import { BatchesRepository, FilesRepository, type PrismaService } from '@spot/db';
import { freePort } from './free-port';

const DIST = resolve(__dirname, '../../dist/apps');
export const WORKER_MAIN = join(DIST, 'worker/src/main.js');
export const SIM_MAIN = join(DIST, 'vllm-sim/src/main.js');
export const BATCH_ADMIN_TOKEN = 'admin-token-for-batch-tests-00000';
export const BATCH_UPSTREAM = 'meta-llama/Llama-3.1-8B-Instruct';

/** A vllm-sim process on a fixed port, that can be SIGKILLed and started again on the same port. */
export class SimProcess {
  child: ChildProcess | null = null;

  constructor(
    readonly port: number,
    private readonly args: string[] = [],
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (!existsSync(SIM_MAIN)) throw new Error(`${SIM_MAIN} is missing: run \`npm run build\``);
    const child = spawn(process.execPath, [SIM_MAIN, '--port', String(this.port), '--models', BATCH_UPSTREAM, ...this.args], { stdio: 'ignore' });
    this.child = child;
    for (let i = 0; i < 200; i++) {
      if (await fetch(`${this.url}/health`).then((r) => r.ok, () => false)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`vllm-sim on ${this.port} did not start`);
  }

  /** SIGKILL, like a reclaimed spot instance; resolves once it is gone. */
  async kill(): Promise<void> {
    const c = this.child;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((r) => {
      c.once('exit', () => r());
      c.kill('SIGKILL');
    });
  }
}

export async function simProcess(args: string[] = []): Promise<SimProcess> {
  const sim = new SimProcess(await freePort(), args);
  await sim.start();
  return sim;
}

/** A worker process from the build (kill it with `SIGKILL` to test crashes). */
export function spawnWorker(env: Record<string, string>): ChildProcess {
  if (!existsSync(WORKER_MAIN)) throw new Error(`${WORKER_MAIN} is missing: run \`npm run build\``);
  return spawn(process.execPath, [WORKER_MAIN], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
}

export async function killProcess(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  await new Promise<void>((r) => {
    c.once('exit', () => r());
    c.kill('SIGKILL');
  });
}

/** A tiers file of a spot tier over `spot` (batch work, by default) and an on-demand tier over `onDemand`. */
export function batchTiersFile(spot: string[], onDemand: string[], model: string, extraSpot = ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'batch-tiers-'));
  const path = join(dir, 'tiers.yaml');
  writeFileSync(
    path,
    `tiers:
  - name: spot
    kind: spot
    endpoints: [${spot.join(', ')}]
${extraSpot}    models:
      - { id: ${model}, upstream: ${BATCH_UPSTREAM}, price: { input_per_mtok: 40, output_per_mtok: 80 } }
  - name: od
    kind: on-demand
    endpoints: [${onDemand.join(', ')}]
    models:
      - { id: ${model}, upstream: ${BATCH_UPSTREAM}, price: { input_per_mtok: 60, output_per_mtok: 120 } }
`,
  );
  return path;
}

/** A JSONL batch input of `n` chat lines for `model`. */
export function chatLines(n: number, model: string, url = '/v1/chat/completions'): string {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url, body: { model, messages: [{ role: 'user', content: `line ${i}: say something` }], max_tokens: 8 } }),
  ).join('\n');
}

/**
 * A batch stored through the repositories as validation leaves it: `in_progress`, its chunks marked queued (so that
 * no worker's sweep runs its lines), `done` of its `lines` recorded (unbilled, 1,234 nano-USD each). Returns its id.
 */
export async function seedRunningBatch(
  prisma: PrismaService,
  o: { orgId: string; keyId: string; lines: number; done: number; metadata?: Record<string, string> | null; model?: string },
): Promise<string> {
  const files = new FilesRepository(prisma);
  const batches = new BatchesRepository(prisma);
  const fileId = objectId('file-');
  const text = Array.from({ length: o.lines }, (_, i) =>
    JSON.stringify({ custom_id: `seed-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: o.model ?? 'seeded-model', messages: [] } }),
  ).join('\n');
  await files.createUploading(fileId, o.orgId, 'seed.jsonl', 'pending');
  await files.appendChunk(fileId, 0, new Uint8Array(Buffer.from(text)));
  await files.markProcessed(fileId, Buffer.byteLength(text), 'batch');
  const id = objectId('batch_');
  await batches.create({ id, orgId: o.orgId, keyId: o.keyId, endpoint: '/v1/chat/completions', inputFileId: fileId, completionWindow: '24h', metadata: o.metadata ?? null, expiresAt: new Date(Date.now() + 86_400_000) });
  await batches.startLines(
    id,
    (async function* () {
      yield Array.from({ length: o.lines }, (_, i) => ({ line: i + 1, customId: `seed-${i}`, body: '{}' }));
    })(),
  );
  await batches.markChunksQueued(id);
  for (let line = 1; line <= o.done; line++) await batches.recordLine({ batchId: id, line, status: 200, body: '{"ok":true}', costNanos: 1_234, usage: null });
  return id;
}
