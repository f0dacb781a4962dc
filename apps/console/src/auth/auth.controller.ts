import { randomBytes } from 'node:crypto';
import { Controller, Get, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { UsersRepository } from '@spot/db';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { OrgsService } from '../orgs/orgs.service';
import { OAUTH_COOKIE, type ConsoleSession } from './console-session';
import { CsrfGuard } from './csrf.guard';
import { CurrentSession } from './current-user.decorator';
import { GitHubOAuthService, safeNext } from './github-oauth.service';
import { SessionGuard } from './session.guard';
import { SessionService } from './session.service';

/** Sign-in with GitHub, sign-out, and who am I. */
@Controller()
export class AuthController {
  constructor(
    private readonly oauth: GitHubOAuthService,
    private readonly sessions: SessionService,
    private readonly users: UsersRepository,
    private readonly orgs: OrgsService,
  ) {}

  /**
   * Starts the OAuth web flow: binds a nonce to this browser, then redirects to GitHub's authorize page.
   * `?next=/local/path` is where the browser lands after signing in (kept with the state, local paths only).
   */
  @Get('auth/github')
  async start(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const nonce = randomBytes(16).toString('base64url');
    const next = safeNext((req.query as Record<string, unknown>).next);
    const outcome = await this.oauth.run({ query: {}, headers: req.headers, nonce, next });
    if (outcome.kind !== 'redirect') {
      void reply.status(303).header('location', `/signin?error=${outcome.kind === 'refused' ? outcome.reason : 'github'}`).send();
      return;
    }
    reply.setCookie(OAUTH_COOKIE, nonce, { httpOnly: true, sameSite: 'lax', secure: this.sessions.secureCookies, path: '/auth/github', maxAge: 600 });
    void reply.status(302).header('location', outcome.url).send();
  }

  /** GitHub's redirect back: checks state (bound to this browser) and PKCE, then starts a session. */
  @Get('auth/github/callback')
  async callback(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const query = req.query as Record<string, string | undefined>;
    const outcome = await this.oauth.run({ query, headers: req.headers, nonce: req.cookies[OAUTH_COOKIE] });
    reply.clearCookie(OAUTH_COOKIE, { path: '/auth/github' });
    if (outcome.kind !== 'signed-in') {
      // a callback without code or state (kind 'redirect') is an incomplete sign-in, not a new one
      const reason = outcome.kind === 'refused' ? outcome.reason : outcome.kind === 'error' ? 'github' : 'incomplete';
      void reply.status(303).header('location', `/signin?error=${reason}`).send();
      return;
    }
    const { user } = await this.users.signIn(outcome.identity);
    await this.sessions.signIn(req, reply, user);
    void reply.status(303).header('location', outcome.next ?? '/orgs').send();
  }

  /** Ends the session. JSON callers get 204; forms are sent to the sign-in page. */
  @Post('auth/logout')
  @UseGuards(SessionGuard, CsrfGuard)
  @HttpCode(204)
  async logout(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    await this.sessions.signOut(req, reply);
    const form = String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
    if (form) void reply.status(303).header('location', '/signin?signedOut=1').send();
    else void reply.status(204).send();
  }

  /** The signed-in user, their orgs, and the CSRF token to send back on state-changing calls. */
  @Get('api/me')
  @UseGuards(SessionGuard)
  async me(@CurrentSession() session: ConsoleSession) {
    const u = session.user;
    return {
      user: { id: u.id, githubId: u.githubId.toString(), login: u.login, name: u.name, email: u.email, avatarUrl: u.avatarUrl },
      orgs: await this.orgs.list(u),
      csrfToken: session.csrfToken,
    };
  }
}
