import type { IncomingHttpHeaders } from 'node:http';
import { invalidApiKey } from '@spot/contract';

const NO_KEY =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";

/**
 * The API key a request presents, from its headers alone (nothing of the body is read before the key is
 * verified). OpenAI's protocol: `Authorization: Bearer <key>`. Another protocol (Anthropic's `x-api-key`)
 * gets its own function of this shape; {@link ApiKeyAuthService.authenticate} takes what it returns.
 * @throws the 401 for a missing header or another scheme.
 */
export function bearerCredential(headers: IncomingHttpHeaders): string {
  const authorization = headers.authorization;
  if (authorization === undefined || authorization.length < 8 || !/^bearer /i.test(authorization)) throw invalidApiKey(NO_KEY);
  return authorization.slice(7).trim();
}

const NO_ANTHROPIC_KEY = 'x-api-key header is required (or send the key as Authorization: Bearer YOUR_KEY).';

/**
 * The API key of an Anthropic Messages request: `x-api-key: <key>` (what Anthropic's clients send, beside
 * `anthropic-version`), else `Authorization: Bearer <key>` (what gateways and Claude Code's auth token send).
 * @throws the 401 for neither.
 */
export function anthropicCredential(headers: IncomingHttpHeaders): string {
  const key = headers['x-api-key'];
  if (typeof key === 'string') {
    const trimmed = key.trim();
    if (trimmed.length > 0) return trimmed;
  }
  if (headers.authorization === undefined) throw invalidApiKey(NO_ANTHROPIC_KEY);
  return bearerCredential(headers);
}
