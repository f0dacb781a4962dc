import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import type { GitHubIdentity } from '@spot/db';
import { REDIS, RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import { type GitHubProfile, Strategy as GitHubStrategy } from 'passport-github2';

const STATE_TTL_S = 600;

/** What one step of the OAuth dance asks of the controller. */
export type OAuthOutcome =
  | { kind: 'redirect'; url: string }
  | { kind: 'signed-in'; identity: GitHubIdentity }
  | { kind: 'refused'; message: string }
  | { kind: 'error'; error: Error };

/** The parts of a request the strategy reads, plus the browser's binding nonce (from its cookie). */
export interface OAuthRequest {
  query: Record<string, string | undefined>;
  headers: Record<string, string | string[] | undefined>;
  /** The random value of this browser's `spot_oauth` cookie: state is only valid in the browser that started. */
  nonce: string | undefined;
}

type Callback = (err: Error | null, ok?: string | false, state?: unknown) => void;

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
      .set(this.keys.key(`oauth:${handle}`), JSON.stringify({ verifier, nonce: req.nonce }), 'EX', STATE_TTL_S)
      .then(() => callback(null, handle), (err: Error) => callback(err));
  }

  verify(req: OAuthRequest, handle: string | undefined, callback: Callback): void {
    const refuse = () => callback(null, false, { message: 'Sign-in could not be verified (expired, reused or forged state). Please try again.' });
    if (typeof handle !== 'string' || handle.length > 100 || !req.nonce) {
      refuse();
      return;
    }
    this.redis.getdel(this.keys.key(`oauth:${handle}`)).then(
      (raw) => {
        const saved = raw === null ? null : (JSON.parse(raw) as { verifier: string; nonce: string });
        if (saved === null || saved.nonce !== req.nonce) refuse();
        else callback(null, saved.verifier);
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
  /** True when the endpoints are not github.com's: the labelled local demo identity provider. */
  readonly demo: boolean;

  constructor(@Inject(APP_CONFIG) config: AppConfig, @Inject(REDIS) redis: Redis, keys: RedisKeys) {
    this.demo = new URL(config.GITHUB_AUTHORIZE_URL).hostname !== 'github.com';
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
    if (strategy === null) return Promise.resolve({ kind: 'refused', message: 'GitHub sign-in is not configured on this console.' });
    return new Promise<OAuthOutcome>((resolve) => {
      const step = Object.create(strategy) as GitHubStrategy & Record<string, unknown>;
      step.redirect = (url: string) => resolve({ kind: 'redirect', url });
      step.success = (identity: GitHubIdentity) => resolve({ kind: 'signed-in', identity });
      step.fail = (challenge?: { message?: string } | string) =>
        resolve({ kind: 'refused', message: (typeof challenge === 'string' ? challenge : challenge?.message) || 'Sign-in was cancelled.' });
      step.error = (error: Error) => {
        this.logger.warn(`GitHub sign-in failed: ${error.message}`);
        resolve({ kind: 'error', error });
      };
      step.pass = () => resolve({ kind: 'refused', message: 'Sign-in was not completed.' });
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
