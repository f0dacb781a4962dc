import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { notSignedIn } from '../errors/console.errors';
import type { ConsoleSession } from './console-session';

/** The signed-in user as handlers see it, with the session's CSRF token (pages put it in their forms). */
export interface CurrentUserView {
  id: string;
  login: string;
  name: string | null;
  avatarUrl: string | null;
  csrfToken: string;
}

function sessionOf(context: ExecutionContext): ConsoleSession {
  const session = context.switchToHttp().getRequest<FastifyRequest>().consoleSession;
  if (!session) throw notSignedIn();
  return session;
}

/** The request's session (the whole user row and the CSRF token); use behind {@link SessionGuard}. */
export const CurrentSession = createParamDecorator((_data: unknown, context: ExecutionContext): ConsoleSession => sessionOf(context));

/** The signed-in user `{ id, login, name, avatarUrl, csrfToken }`; use behind {@link SessionGuard}. */
export const CurrentUser = createParamDecorator((_data: unknown, context: ExecutionContext): CurrentUserView => {
  const { user, csrfToken } = sessionOf(context);
  return { id: user.id, login: user.login, name: user.name, avatarUrl: user.avatarUrl, csrfToken };
});
