import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import type { GitHubIdentity } from '@spot/db';
import { REDIS, RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import { type GitHubProfile, Strategy as GitHubStrategy } from 'passport-github2';

const STATE_TTL_S = 600;

/**
 * Why a sign-in did not happen, as a stable code: the sign-in page shows a fixed message per code (never text
 * taken from the URL, so a crafted link cannot put words on our page).
 */
export type SignInFailure = 'denied' | 'state' | 'github' | 'unconfigured' | 'incomplete';

/** What one step of the OAuth dance asks of the controller. */
export type OAuthOutcome =
  | { kind: 'redirect'; url: string }
  | { kind: 'signed-in'; identity: GitHubIdentity; next: string | null }
  | { kind: 'refused'; reason: SignInFailure }
  | { kind: 'error'; error: Error };

/** A local path to return to after sign-in, or null: no scheme, no host, no `//` or `/\\`, not /auth/*. */
export function safeNext(next: unknown): string | null {
  if (typeof next !== 'string' || next.length > 500) return null;
  if (!/^\/(?![/\\])[\x21-\x5b\x5d-\x7e]*$/.test(next) || next.startsWith('/auth/')) return null;
  return next;
}

/** The parts of a request the strategy reads, plus the browser's binding nonce (from its cookie). */
export interface OAuthRequest {
  query: Record<string, string | undefined>;
  headers: Record<string, string | string[] | undefined>;
  /** The random value of this browser's `spot_oauth` cookie: state is only valid in the browser that started. */
  nonce: string | undefined;
  /** Where to go after signing in (kept with the state at the start). */
  next?: string | null;
}

type Callback = (err: Error | null, ok?: string | false, state?: unknown) => void;

/** What the strategy's `fail` carries when our state store refuses the callback. */
const STATE_REFUSED = { message: 'state refused', reason: 'state' } as const;

/**
 * passport-oauth2's state store (the PKCE variant): the `state` sent to GitHub is a random handle; Redis keeps
 * the PKCE verifier and the browser's nonce under it for ten minutes, and a handle is good once.
 */
class RedisStateStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  store(req: OAuthRequest, verifier: string, _state: unknown, _meta: unknown, callback: (err: Error | null, handle?: string) => void): void {
    if (!req.nonce) {
      callback(new Error('no OAuth nonce cookie'));
      return;
    }
    const handle = randomBytes(24).toString('base64url');
    this.redis
      .set(this.keys.key(`oauth:${handle}`), JSON.stringify({ verifier, nonce: req.nonce, next: req.next ?? null }), 'EX', STATE_TTL_S)
      .then(() => callback(null, handle), (err: Error) => callback(err));
  }

  verify(req: OAuthRequest, handle: string | undefined, callback: Callback): void {
    const refuse = () => callback(null, false, STATE_REFUSED);
    if (typeof handle !== 'string' || handle.length > 100 || !req.nonce) {
      refuse();
      return;
    }
    this.redis.getdel(this.keys.key(`oauth:${handle}`)).then(
      (raw) => {
        const saved = raw === null ? null : (JSON.parse(raw) as { verifier: string; nonce: string; next: string | null });
        if (saved === null || saved.nonce !== req.nonce) refuse();
        else callback(null, saved.verifier, { next: saved.next });
      },
      (err: Error) => callback(err),
    );
  }
}

/**
 * GitHub sign-in through the real passport-github2 strategy (scopes read:user and user:email, state and
 * PKCE S256), driven without Express: each call runs the strategy once and turns its verdict into an
 * {@link OAuthOutcome}. The endpoints come from config, so tests and the demo point it at a local fake.
 */
@Injectable()
export class GitHubOAuthService {
  private readonly logger = new Logger('GitHubOAuth');
  private readonly strategy: GitHubStrategy | null;
  /**
   * True when the authorize endpoint is on this machine: the local demo identity provider (`npm start`
   * without credentials), which the sign-in page labels as such. GitHub Enterprise hosts are not demos.
   */
  readonly demo: boolean;

  constructor(@Inject(APP_CONFIG) config: AppConfig, @Inject(REDIS) redis: Redis, keys: RedisKeys) {
    this.demo = ['localhost', '127.0.0.1', '[::1]'].includes(new URL(config.GITHUB_AUTHORIZE_URL).hostname);
    if (!config.GITHUB_CLIENT_ID || !config.GITHUB_CLIENT_SECRET) {
      this.strategy = null;
      return;
    }
    const api = config.GITHUB_API_URL.replace(/\/+$/, '');
    this.strategy = new GitHubStrategy(
      {
        clientID: config.GITHUB_CLIENT_ID,
        clientSecret: config.GITHUB_CLIENT_SECRET,
        callbackURL: new URL('/auth/github/callback', config.CONSOLE_PUBLIC_URL).toString(),
        authorizationURL: config.GITHUB_AUTHORIZE_URL,
        tokenURL: config.GITHUB_TOKEN_URL,
        userProfileURL: `${api}/user`,
        userEmailURL: `${api}/user/emails`,
        scope: ['read:user', 'user:email'],
        state: true,
        pkce: true,
        store: new RedisStateStore(redis, keys),
        userAgent: 'spotinference-console',
      },
      (_accessToken, _refreshToken, profile, done) => {
        try {
          done(null, toIdentity(profile));
        } catch (err) {
          done(err as Error);
        }
      },
    );
  }

  /** False when no GitHub OAuth app is configured (GITHUB_CLIENT_ID / GITHUB_CLIENT_SECRET). */
  get configured(): boolean {
    return this.strategy !== null;
  }

  /** Runs one step: the start (a redirect to GitHub) or the callback (code → token → profile). */
  run(req: OAuthRequest): Promise<OAuthOutcome> {
    const strategy = this.strategy;
    if (strategy === null) return Promise.resolve({ kind: 'refused', reason: 'unconfigured' });
    return new Promise<OAuthOutcome>((resolve) => {
      const step = Object.create(strategy) as GitHubStrategy & Record<string, unknown>;
      step.redirect = (url: string) => resolve({ kind: 'redirect', url });
      step.success = (identity: GitHubIdentity, info?: { state?: { next?: unknown } }) =>
        resolve({ kind: 'signed-in', identity, next: safeNext(info?.state?.next) });
      // passport-oauth2 fails for two reasons: our store refused the state, or the user denied consent
      step.fail = (challenge?: unknown) => resolve({ kind: 'refused', reason: challenge === STATE_REFUSED ? 'state' : req.query.error === 'access_denied' ? 'denied' : 'incomplete' });
      step.error = (error: Error) => {
        this.logger.warn(`GitHub sign-in failed: ${error.message}`);
        resolve({ kind: 'error', error });
      };
      step.pass = () => resolve({ kind: 'refused', reason: 'incomplete' });
      step.authenticate(req);
    });
  }
}

function toIdentity(profile: GitHubProfile): GitHubIdentity {
  if (!/^\d{1,19}$/.test(profile.id)) throw new Error(`GitHub returned an unexpected user id ${JSON.stringify(profile.id)}`);
  const login = profile.username ?? String(profile._json?.login ?? '');
  if (!login) throw new Error('GitHub returned a user without a login');
  const primary = profile.emails?.find((e) => e.primary) ?? profile.emails?.[0];
  return {
    githubId: BigInt(profile.id),
    login,
    name: profile.displayName || null,
    email: primary?.value ?? null,
    avatarUrl: profile.photos?.[0]?.value ?? null,
  };
}
