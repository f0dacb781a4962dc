import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PrismaService } from '@spot/db';
import { ApiKeysRepository, OrgsRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import { freePort } from './free-port';

/** The built gateway (npm test builds before Jest runs). */
export const GATEWAY_MAIN = resolve(__dirname, '../../dist/apps/gateway/src/main.js');

/** A real gateway process, spawned from the build. */
export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `<url>/v1`, for the SDKs */
  readonly baseURL: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** SIGTERM (or `signal`), then waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface SpawnGatewayOptions {
  /** A tiers file's text; written to a temp file and passed as TIERS_FILE (unless env names one). */
  tiersYaml?: string;
  /** Extra environment (wins over the defaults below). */
  env?: Record<string, string>;
  /** How long to wait for /readyz (default 20 s). */
  readyTimeoutMs?: number;
  /** Wait for /healthz instead of /readyz (for a start with Redis cut, say). */
  waitFor?: 'readyz' | 'healthz';
}

/**
 * Spawns the built gateway on a free loopback port with its own Redis prefix and spool dir (unless `env` says
 * otherwise) and waits until it is ready. Kill what you spawn: `stop()` in afterEach/afterAll.
 */
export async function spawnGateway(options: SpawnGatewayOptions = {}): Promise<GatewayProcess> {
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} is missing: run \`npm run build\` (npm test does it)`);
  const dir = mkdtempSync(join(tmpdir(), 'gw-proc-'));
  const env: Record<string, string> = {
    GATEWAY_HOST: '127.0.0.1',
    REDIS_PREFIX: `test:${randomUUID()}:`,
    USAGE_SPOOL_DIR: join(dir, 'spool'),
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  if (options.tiersYaml !== undefined && env.TIERS_FILE === undefined) {
    env.TIERS_FILE = join(dir, 'tiers.yaml');
    writeFileSync(env.TIERS_FILE, options.tiersYaml);
  }
  const port = env.GATEWAY_PORT !== undefined ? Number(env.GATEWAY_PORT) : await freePort();
  env.GATEWAY_PORT = String(port);
  const child = spawn(process.execPath, [GATEWAY_MAIN], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err += s;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
  const probe = `${url}/${options.waitFor ?? 'readyz'}`;
  for (;;) {
    if (await fetch(probe).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`gateway did not become ready on ${probe}: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    port,
    url,
    baseURL: `${url}/v1`,
    stderr: () => err,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** An org and a key for every model, made through the product's repositories. */
export async function seedOrgKey(prisma: PrismaService, opts: { slugPrefix?: string } = {}): Promise<{ orgId: string; keyId: string; key: string; secretHash: string }> {
  const org = await new OrgsRepository(prisma).create(`${opts.slugPrefix ?? 'gp'}-${randomUUID().slice(0, 12)}`, 'Gateway process test');
  const minted = mintApiKey();
  const row = await new ApiKeysRepository(prisma).create({
    orgId: org!.id,
    name: 'test',
    prefix: minted.prefix,
    secretHash: minted.secretHash,
    allowedModels: [],
    expiresAt: null,
    createdById: null,
  });
  return { orgId: org!.id, keyId: row.id, key: minted.key, secretHash: minted.secretHash };
}
