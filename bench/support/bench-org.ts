/** The org and key a bench sends its requests with, made through the product's own CLI, and its usage events. */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const root = path.resolve(__dirname, '../../..');
const dist = path.join(root, 'dist');

/** Applies the migrations to DATABASE_URL (creating the database if missing). */
export function migrate(env: NodeJS.ProcessEnv): void {
  execFileSync(process.execPath, [path.join(root, 'scripts/prisma-wasm-migrate.mjs'), 'deploy'], { env, stdio: 'ignore' });
}

/** Runs the product CLI; returns the last line it printed. */
export function cli(args: string[], env: NodeJS.ProcessEnv): string {
  const out = execFileSync(process.execPath, [path.join(dist, 'apps/cli/src/main.js'), ...args], { env, encoding: 'utf8' });
  return out.trim().split('\n').pop() ?? '';
}

export interface BenchKey {
  slug: string;
  key: string;
  /** The key's public prefix (`sk-spot-xxxx`), as stored in api_keys.prefix. */
  prefix: string;
}

/**
 * A fresh org with one key. With `limits` the key has RPM/TPM limits far above any bench rate, so the
 * gateway's Redis check runs on every request without ever refusing one.
 */
export function createBenchKey(env: NodeJS.ProcessEnv, limits: boolean): BenchKey {
  const slug = `bench-${Math.random().toString(36).slice(2, 10)}`;
  cli(['org', 'create', slug], env);
  const key = cli(['key', 'create', '--org', slug, '--name', 'bench', ...(limits ? ['--rpm', '100000000', '--tpm', '2000000000'] : [])], env);
  return { slug, key, prefix: key.split('-').slice(0, 3).join('-') };
}

/** Usage events of a key in Postgres: all of them, and those of requests answered 200. */
export async function countUsageEvents(db: pg.Client, prefix: string): Promise<{ all: number; ok: number }> {
  const { rows } = await db.query<{ all: string; ok: string }>(
    'SELECT count(*)::text AS all, count(*) FILTER (WHERE e.status = 200)::text AS ok FROM usage_events e JOIN api_keys k ON k.id = e.key_id WHERE k.prefix = $1',
    [prefix],
  );
  return { all: Number(rows[0].all), ok: Number(rows[0].ok) };
}

/** Deletes a key's usage events (a soak writes hundreds of thousands). */
export async function deleteUsageEvents(db: pg.Client, prefix: string): Promise<number> {
  const r = await db.query('DELETE FROM usage_events e USING api_keys k WHERE k.id = e.key_id AND k.prefix = $1', [prefix]);
  return r.rowCount ?? 0;
}

/** A tiers file with one spot tier on `simUrl` serving `bench-model` as `bench-upstream`. */
export function benchTiersYaml(simUrl: string): string {
  return `tiers:\n  - name: bench\n    kind: spot\n    endpoints: [${simUrl}]\n    models:\n      - id: bench-model\n        upstream: bench-upstream\n        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }\n`;
}

/**
 * A temp folder with the bench tiers file (one spot tier on `simUrl`, or `tiersYaml` when given) and the environment
 * a bench's gateway runs with: its port, its own Redis prefix and spool, quiet logs, production mode.
 */
export function benchGatewayEnv(name: string, simUrl: string, gwPort: number, databaseUrl: string, tiersYaml?: string): { tmp: string; env: NodeJS.ProcessEnv } {
  const tmp = mkdtempSync(path.join(os.tmpdir(), `bench-${name}-`));
  const tiersFile = path.join(tmp, 'tiers.yaml');
  writeFileSync(tiersFile, tiersYaml ?? benchTiersYaml(simUrl));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    TIERS_FILE: tiersFile,
    GATEWAY_PORT: String(gwPort),
    GATEWAY_HOST: '127.0.0.1',
    REDIS_PREFIX: `bench:${randomUUID()}:`,
    USAGE_SPOOL_DIR: path.join(tmp, 'spool'),
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
  };
  return { tmp, env };
}
