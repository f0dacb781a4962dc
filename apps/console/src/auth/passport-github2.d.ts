declare module 'passport-github2' {
  /** The profile passport-github2 builds from GET /user (and /user/emails with the user:email scope). */
  export interface GitHubProfile {
    id: string;
    username?: string;
    displayName?: string | null;
    emails?: Array<{ value: string; primary?: boolean; verified?: boolean }>;
    photos?: Array<{ value: string }>;
    _json?: Record<string, unknown>;
  }

  export interface StrategyOptions {
    clientID: string;
    clientSecret: string;
    callbackURL: string;
    authorizationURL?: string;
    tokenURL?: string;
    userProfileURL?: string;
    userEmailURL?: string;
    scope?: string[];
    state?: boolean;
    pkce?: boolean;
    store?: unknown;
    userAgent?: string;
  }

  export type VerifyCallback = (err: Error | null, user?: unknown, info?: unknown) => void;

  export class Strategy {
    constructor(options: StrategyOptions, verify: (accessToken: string, refreshToken: string, profile: GitHubProfile, done: VerifyCallback) => void);
    name: string;
    authenticate(req: unknown, options?: Record<string, unknown>): void;
  }
}
