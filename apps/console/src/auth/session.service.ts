import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { SessionsRepository, type User } from '@spot/db';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type ConsoleSession, SESSION_COOKIE } from './console-session';

const sha256 = (token: string) => createHash('sha256').update(token).digest('hex');

/** Constant-time comparison of two strings (false when lengths differ). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Server-side sessions: the cookie holds 32 random bytes, Postgres holds their SHA-256, the user and a CSRF
 * token. Cookies are HttpOnly, SameSite=Lax, and Secure when the console is served over https.
 */
@Injectable()
export class SessionService implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly secureCookies: boolean;
  private readonly ttlMs: number;
  private readonly logger = new Logger('Sessions');
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly sessions: SessionsRepository,
  ) {
    this.secureCookies = new URL(config.CONSOLE_PUBLIC_URL).protocol === 'https:';
    this.ttlMs = config.SESSION_TTL_HOURS * 3_600_000;
  }

  /** Expired sessions are refused at once; their rows are swept hourly (and at boot). */
  onApplicationBootstrap(): void {
    const sweep = () => {
      this.sessions.deleteExpired(new Date()).catch((err: unknown) => this.logger.warn(`could not sweep expired sessions: ${String(err)}`));
    };
    sweep();
    this.sweeper = setInterval(sweep, 3_600_000);
    this.sweeper.unref();
  }

  onApplicationShutdown(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
  }

  /** Starts a session for `user`, ending the browser's previous one (no session fixation). */
  async signIn(req: FastifyRequest, reply: FastifyReply, user: User): Promise<void> {
    const previous = req.cookies[SESSION_COOKIE];
    if (previous) await this.sessions.delete(sha256(previous));
    const token = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + this.ttlMs);
    await this.sessions.create({ id: sha256(token), userId: user.id, csrfToken: randomBytes(24).toString('base64url'), expiresAt });
    reply.setCookie(SESSION_COOKIE, token, {
      httpOnly: true,
      sameSite: 'lax',
      secure: this.secureCookies,
      path: '/',
      expires: expiresAt,
    });
  }

  /** The request's live session, or null. */
  async current(req: FastifyRequest): Promise<ConsoleSession | null> {
    if (req.consoleSession) return req.consoleSession;
    const token = req.cookies[SESSION_COOKIE];
    if (!token || token.length > 100) return null;
    const row = await this.sessions.findLive(sha256(token), new Date());
    if (row === null) return null;
    req.consoleSession = { id: row.id, csrfToken: row.csrfToken, user: row.user };
    return req.consoleSession;
  }

  /** Ends the session (the row is deleted: the old cookie is worthless) and clears the cookie. */
  async signOut(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = req.cookies[SESSION_COOKIE];
    if (token) await this.sessions.delete(sha256(token));
    reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax', secure: this.secureCookies });
  }
}
