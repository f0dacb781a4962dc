import type {} from '@fastify/cookie';
import type { User } from '@spot/db';

/** The signed-in user of a request, as the guards leave it on the request. */
export interface ConsoleSession {
  /** SHA-256 of the cookie's token (the sessions row id). */
  readonly id: string;
  readonly csrfToken: string;
  readonly user: User;
}

declare module 'fastify' {
  interface FastifyRequest {
    consoleSession?: ConsoleSession;
  }
}

export const SESSION_COOKIE = 'spot_session';
export const OAUTH_COOKIE = 'spot_oauth';
