import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { forbidden, notSignedIn } from '../errors/console.errors';
import { sameSecret, SessionService } from './session.service';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CSRF protection for every state-changing request made with the session cookie: the session's token must
 * come back in the `x-csrf-token` header (JSON calls) or the `_csrf` form field (pages). A cross-site form
 * cannot read the token; SameSite=Lax keeps the cookie off cross-site POSTs as a second line.
 */
@Injectable()
export class CsrfGuard implements CanActivate {
  constructor(private readonly sessions: SessionService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<FastifyRequest>();
    if (SAFE.has(req.method)) return true;
    const session = await this.sessions.current(req);
    if (session === null) throw notSignedIn();
    const header = req.headers['x-csrf-token'];
    const body = req.body as Record<string, unknown> | undefined;
    const sent = typeof header === 'string' ? header : typeof body?._csrf === 'string' ? body._csrf : '';
    if (!sent || !sameSecret(sent, session.csrfToken)) {
      throw forbidden('Missing or wrong CSRF token: send the csrfToken of GET /api/me in an x-csrf-token header.');
    }
    return true;
  }
}
