import { InvalidArgumentError } from '@spot/keys';

const SLUG = /^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$/;
const MAX_ORG_NAME_LENGTH = 100;
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * An org slug: 3 to 40 characters, lowercase letters, digits and inner dashes.
 * @throws InvalidArgumentError
 */
export function parseOrgSlug(raw: string, argument = 'slug'): string {
  if (!SLUG.test(raw)) {
    throw new InvalidArgumentError(
      argument,
      `expected 3-40 lowercase letters, digits or dashes, not starting or ending with a dash, got ${JSON.stringify(raw)}`,
    );
  }
  return raw;
}

/**
 * An org's display name: trimmed, 1 to 100 characters, no control characters.
 * @throws InvalidArgumentError
 */
export function parseOrgName(raw: string, argument = 'name'): string {
  const name = raw.trim();
  if (name.length === 0) throw new InvalidArgumentError(argument, 'must not be empty');
  if (name.length > MAX_ORG_NAME_LENGTH) {
    throw new InvalidArgumentError(argument, `must be at most ${MAX_ORG_NAME_LENGTH} characters, got ${name.length}`);
  }
  if (CONTROL_CHARS.test(name)) throw new InvalidArgumentError(argument, 'must not contain control characters');
  return name;
}
