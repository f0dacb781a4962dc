import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { notSignedIn } from '../errors/console.errors';
import type { ConsoleSession } from './console-session';

/** The request's session (user and CSRF token); use behind {@link SessionGuard}. */
export const CurrentSession = createParamDecorator((_data: unknown, context: ExecutionContext): ConsoleSession => {
  const session = context.switchToHttp().getRequest<FastifyRequest>().consoleSession;
  if (!session) throw notSignedIn();
  return session;
});
