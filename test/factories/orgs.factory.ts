import { randomBytes } from 'node:crypto';

/** An org slug no other test (or test run) uses: `<base>-<10 random chars>`, valid for the slug rule. */
export function uniqueSlug(base = 'org'): string {
  return `${base}-${randomBytes(5).toString('hex')}`;
}

/** A Redis key prefix of its own for one test file, so that files sharing one Redis never see each other. */
export function uniqueRedisPrefix(name: string): string {
  return `test:${name}:${randomBytes(4).toString('hex')}:`;
}
