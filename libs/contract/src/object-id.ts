import { randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** An id in OpenAI's style: `prefix` then 24 random letters and digits (`file-…`, `batch_…`). */
export function objectId(prefix: string): string {
  const bytes = randomBytes(24);
  let out = prefix;
  // 256 % 62 leaves a slight bias; ids need uniqueness, not uniformity
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}
