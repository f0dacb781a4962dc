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
