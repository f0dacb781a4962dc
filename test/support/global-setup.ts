import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** Migrates the test database once per run (creating it if missing), with the project's own migrate command. */
export default function globalSetup(): void {
  const root = path.resolve(__dirname, '../..');
  const env = { ...process.env, DATABASE_URL: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference_test' };
  execFileSync(process.execPath, [path.join(root, 'scripts/prisma-wasm-migrate.mjs'), 'deploy'], { cwd: root, env, stdio: 'inherit' });
}
