import { execFileSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');

/**
 * Migrates the test database once per run (creating it if missing), with the project's own migrate command.
 * Several projects share this setup; the first to run it migrates, the others see the mark it leaves.
 */
export default function globalSetup(): void {
  const databaseUrl = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference_test';
  if (process.env.SPOT_TEST_MIGRATED === databaseUrl) return;
  const env = { ...process.env, DATABASE_URL: databaseUrl };
  execFileSync(process.execPath, [path.join(root, 'scripts/prisma-wasm-migrate.mjs'), 'deploy'], { cwd: root, env, stdio: 'inherit' });
  process.env.SPOT_TEST_MIGRATED = databaseUrl;
}
