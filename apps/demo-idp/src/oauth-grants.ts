import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { BAD_VERIFICATION_CODE, INCORRECT_CLIENT_CREDENTIALS, TOKEN_REDIRECT_URI_MISMATCH, type OAuthErrorBody } from './github-wire';

/** GitHub's authorization codes expire after ten minutes. */
export const CODE_TTL_MS = 10 * 60_000;
/** How long a consent page stays answerable. */
const PENDING_TTL_MS = 10 * 60_000;

/** A validated authorize request, waiting for the user's answer on the consent page. */
export interface AuthorizationRequest {
  clientId: string;
  /** Where the answer goes: the request's redirect_uri, else the registered callback URL. */
  redirectUri: string;
  scopes: string[];
  state: string | undefined;
  codeChallenge: string | undefined;
  loginHint: string | undefined;
}

interface Pending {
  request: AuthorizationRequest;
  expiresAt: number;
}

interface IssuedCode {
  request: AuthorizationRequest;
  userId: number;
  expiresAt: number;
}

/** What an access token stands for. */
export interface TokenGrant {
  userId: number;
  clientId: string;
  scopes: string[];
}

export type Exchange = { ok: true; token: string; grant: TokenGrant } | { ok: false; error: OAuthErrorBody };

export interface ExchangeParams {
  clientId: string | undefined;
  clientSecret: string | undefined;
  code: string | undefined;
  redirectUri: string | undefined;
  codeVerifier: string | undefined;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A GitHub-shaped OAuth app token: `gho_` and 36 base62 characters. */
function newAccessToken(): string {
  let s = 'gho_';
  for (let i = 0; i < 36; i++) s += ALNUM[randomInt(ALNUM.length)];
  return s;
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** RFC 7636 S256: base64url(sha256(verifier)), unpadded. */
export function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

/**
 * The fake's OAuth state: consent pages awaiting an answer, codes awaiting exchange (single use, ten
 * minutes, bound to client, redirect_uri and PKCE challenge) and the access tokens handed out.
 */
export class OAuthGrants {
  private readonly pending = new Map<string, Pending>();
  private readonly codes = new Map<string, IssuedCode>();
  private readonly tokens = new Map<string, TokenGrant>();

  constructor(
    private readonly client: { id: string; secret: string },
    private readonly now: () => number,
  ) {}

  /** Parks a validated authorize request behind an opaque handle the consent form posts back. */
  park(request: AuthorizationRequest): string {
    this.sweep();
    const handle = randomBytes(16).toString('hex');
    this.pending.set(handle, { request, expiresAt: this.now() + PENDING_TTL_MS });
    return handle;
  }

  /** Takes a parked request back (once); undefined when unknown or stale. */
  unpark(handle: string): AuthorizationRequest | undefined {
    const p = this.pending.get(handle);
    this.pending.delete(handle);
    if (!p || p.expiresAt <= this.now()) return undefined;
    return p.request;
  }

  /** Issues a code for the user's approval of this request. */
  issueCode(request: AuthorizationRequest, userId: number): string {
    this.sweep();
    const code = randomBytes(10).toString('hex');
    this.codes.set(code, { request, userId, expiresAt: this.now() + CODE_TTL_MS });
    return code;
  }

  /**
   * POST /login/oauth/access_token. Checks in GitHub's order: client credentials, then the code. A code is
   * spent by the first exchange that names it with the right credentials, whether that exchange succeeds or not.
   */
  exchange(p: ExchangeParams): Exchange {
    if (!p.clientId || !p.clientSecret || p.clientId !== this.client.id || !sameString(p.clientSecret, this.client.secret)) {
      return { ok: false, error: INCORRECT_CLIENT_CREDENTIALS };
    }
    const issued = p.code ? this.codes.get(p.code) : undefined;
    if (!issued) return { ok: false, error: BAD_VERIFICATION_CODE };
    this.codes.delete(p.code as string);
    const { request } = issued;
    if (issued.expiresAt <= this.now() || request.clientId !== p.clientId) {
      return { ok: false, error: BAD_VERIFICATION_CODE };
    }
    // GitHub makes redirect_uri optional here; when sent, it must be the one the code was issued for.
    if (p.redirectUri !== undefined && p.redirectUri !== request.redirectUri) {
      return { ok: false, error: TOKEN_REDIRECT_URI_MISMATCH };
    }
    if (request.codeChallenge !== undefined) {
      if (!p.codeVerifier || !sameString(s256(p.codeVerifier), request.codeChallenge)) {
        return { ok: false, error: BAD_VERIFICATION_CODE };
      }
    }
    const token = newAccessToken();
    const grant: TokenGrant = { userId: issued.userId, clientId: request.clientId, scopes: request.scopes };
    this.tokens.set(token, grant);
    return { ok: true, token, grant };
  }

  /** The grant behind an access token, if the fake issued it. */
  tokenGrant(token: string): TokenGrant | undefined {
    return this.tokens.get(token);
  }

  private sweep(): void {
    const t = this.now();
    for (const [k, v] of this.pending) if (v.expiresAt <= t) this.pending.delete(k);
    for (const [k, v] of this.codes) if (v.expiresAt <= t) this.codes.delete(k);
  }
}
