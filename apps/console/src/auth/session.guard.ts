import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { notSignedIn } from '../errors/console.errors';
import { SessionService } from './session.service';

/**
 * Lets through requests with a live session (left on `request.consoleSession`). Otherwise 401 for the JSON
 * API; pages are sent to the sign-in page by the exception filter.
 */
@Injectable()
export class SessionGuard implements CanActivate {
  constructor(private readonly sessions: SessionService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<FastifyRequest>();
    if ((await this.sessions.current(req)) === null) throw notSignedIn();
    return true;
  }
}
