import { API_KEY_PREFIX, isWellFormedApiKey } from './api-key';
import { InvalidArgumentError } from './keys.errors';

/** Longest key name we store. */
export const MAX_KEY_NAME_LENGTH = 100;
/** Longest key lifetime: ten years. */
export const MAX_KEY_LIFETIME_MS = 3650 * 24 * 60 * 60 * 1000;

// Hugging Face style ids (`org/Model-7B-Instruct`), tags (`qwen2.5:7b`), dots, underscores, `@` revisions.
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$/;
const DURATION = /^(\d{1,6})([mhdw])$/;
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KEY_PREFIX = new RegExp(`^${API_KEY_PREFIX}[0-9A-Za-z]{12}$`);
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * A key's display name: trimmed, 1 to {@link MAX_KEY_NAME_LENGTH} characters, no control characters.
 * @throws InvalidArgumentError
 */
export function parseKeyName(raw: string, argument = 'name'): string {
  const name = raw.trim();
  if (name.length === 0) throw new InvalidArgumentError(argument, 'must not be empty');
  if (name.length > MAX_KEY_NAME_LENGTH) {
    throw new InvalidArgumentError(argument, `must be at most ${MAX_KEY_NAME_LENGTH} characters, got ${name.length}`);
  }
  if (CONTROL_CHARS.test(name)) throw new InvalidArgumentError(argument, 'must not contain control characters');
  return name;
}

/**
 * Model ids a key may use: a comma-separated list or an array; trimmed, de-duplicated, order kept.
 * An empty result means "every model the org can reach".
 * @throws InvalidArgumentError naming the first malformed id.
 */
export function parseModelIds(raw: string | readonly string[], argument = 'models'): string[] {
  const parts = typeof raw === 'string' ? raw.split(',') : raw;
  const ids: string[] = [];
  for (const part of parts) {
    const id = part.trim();
    if (id === '' && typeof raw === 'string') continue;
    if (!MODEL_ID.test(id)) {
      throw new InvalidArgumentError(
        argument,
        `${JSON.stringify(id)} is not a model id (letters, digits and . _ : / @ + -, at most 128 characters)`,
      );
    }
    if (!ids.includes(id)) ids.push(id);
  }
  if (typeof raw === 'string' && raw.trim() !== '' && ids.length === 0) {
    throw new InvalidArgumentError(argument, 'expected a comma-separated list of model ids');
  }
  return ids;
}

/**
 * A lifetime like `90m`, `12h`, `30d` or `1w`, in milliseconds: greater than zero, at most ten years.
 * @throws InvalidArgumentError
 */
export function parseDuration(raw: string, argument = 'expires-in'): number {
  const match = DURATION.exec(raw.trim());
  if (!match) {
    throw new InvalidArgumentError(argument, `expected a duration like 90m, 12h, 30d or 1w, got ${JSON.stringify(raw)}`);
  }
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  if (ms === 0) throw new InvalidArgumentError(argument, 'must be greater than zero');
  if (ms > MAX_KEY_LIFETIME_MS) throw new InvalidArgumentError(argument, 'must be at most 3650d (ten years)');
  return ms;
}

/**
 * What identifies a key to revoke or show: its id (UUID), its public prefix, or the whole key (reduced to its
 * prefix, so the secret goes no further).
 * @throws InvalidArgumentError without echoing the input, which may be a secret.
 */
export function parseKeyReference(raw: string, argument = 'key'): string {
  const ref = raw.trim();
  if (UUID.test(ref)) return ref.toLowerCase();
  if (KEY_PREFIX.test(ref)) return ref;
  if (isWellFormedApiKey(ref)) return ref.slice(0, ref.lastIndexOf('-'));
  throw new InvalidArgumentError(argument, `expected a key id (UUID) or prefix (${API_KEY_PREFIX}XXXXXXXXXXXX)`);
}

/**
 * A per-key rate limit: a positive integer, or null for none.
 * @throws InvalidArgumentError
 */
export function parseLimit(raw: string | number | null | undefined, argument: string): number | null {
  if (raw === null || raw === undefined) return null;
  const n = typeof raw === 'number' ? raw : /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0 || n > 2_147_483_647) {
    throw new InvalidArgumentError(argument, `expected a positive integer, got ${JSON.stringify(raw)}`);
  }
  return n;
}
