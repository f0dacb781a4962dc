import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const root = path.resolve(__dirname, '../..');

function adminUrl(url: string): string {
  const u = new URL(url);
  u.pathname = '/postgres';
  return u.href;
}

async function admin<T>(url: string, run: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: adminUrl(url) });
  await c.connect();
  try {
    return await run(c);
  } finally {
    await c.end();
  }
}

/**
 * Applies the project's migrations to `url` with the project's own migrate command; with `upTo`, only the
 * migrations up to and including that one (from a copy of prisma/ that holds just those).
 */
export function migrateDatabase(url: string, upTo?: string): void {
  let cwd = root;
  let tmp: string | null = null;
  if (upTo !== undefined) {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'spot-migrations-'));
    mkdirSync(path.join(tmp, 'prisma/migrations'), { recursive: true });
    cpSync(path.join(root, 'prisma/schema.prisma'), path.join(tmp, 'prisma/schema.prisma'));
    cpSync(path.join(root, 'prisma/migrations/migration_lock.toml'), path.join(tmp, 'prisma/migrations/migration_lock.toml'));
    const dirs = readdirSync(path.join(root, 'prisma/migrations'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    if (!dirs.includes(upTo)) throw new Error(`no migration ${upTo}`);
    for (const d of dirs.filter((x) => x <= upTo)) cpSync(path.join(root, 'prisma/migrations', d), path.join(tmp, 'prisma/migrations', d), { recursive: true });
    cwd = tmp;
  }
  try {
    execFileSync(process.execPath, [path.join(root, 'scripts/prisma-wasm-migrate.mjs'), 'deploy'], { cwd, env: { ...process.env, DATABASE_URL: url }, stdio: 'pipe' });
  } finally {
    if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * A database of a test file's own, next to the test database (`<test db>_<suffix>`), created anew and migrated
 * (up to `upTo` when given): for tests whose DDL (partitions created and dropped) must not reach other files.
 */
export async function freshDatabase(suffix: string, upTo?: string): Promise<string> {
  const base = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference_test';
  const u = new URL(base);
  const name = `${decodeURIComponent(u.pathname.slice(1))}_${suffix}`;
  u.pathname = `/${name}`;
  await dropDatabase(u.href);
  migrateDatabase(u.href, upTo);
  return u.href;
}

/** Drops a database {@link freshDatabase} made (connections still open to it are ended). */
export async function dropDatabase(url: string): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  await admin(url, (c) => c.query(`DROP DATABASE IF EXISTS "${name.replaceAll('"', '""')}" WITH (FORCE)`));
}
