import { createHash, randomBytes } from 'node:crypto';
import type { PrismaService } from '@spot/db';

let seq = 0;

/** A console user with a session, made straight in Postgres (no OAuth dance): for tests about what comes after sign-in. */
export interface SignedInUser {
  userId: string;
  githubId: bigint;
  login: string;
  /** `spot_session=<token>`: send it as the `cookie` header. */
  cookie: string;
  /** The session's CSRF token, for the `x-csrf-token` header or the `_csrf` form field. */
  csrfToken: string;
}

/**
 * Creates a user (a GitHub id and login no other test uses) and a session for it, stored as the console stores
 * sessions (the SHA-256 of the cookie's token). `expiresAt` defaults to an hour from now.
 */
export async function createSignedInUser(prisma: PrismaService, opts: { tag?: string; expiresAt?: Date } = {}): Promise<SignedInUser> {
  seq++;
  const githubId = BigInt(900_000_000 + Math.floor(Math.random() * 90_000_000) + seq);
  const login = `${opts.tag ?? 'user'}-${githubId.toString(36)}`;
  const user = await prisma.user.create({ data: { githubId, login, name: `Test ${login}`, email: `${login}@example.com` } });
  const token = randomBytes(32).toString('base64url');
  const csrfToken = randomBytes(24).toString('base64url');
  await prisma.session.create({
    data: {
      id: createHash('sha256').update(token).digest('hex'),
      userId: user.id,
      csrfToken,
      expiresAt: opts.expiresAt ?? new Date(Date.now() + 3_600_000),
    },
  });
  return { userId: user.id, githubId, login, cookie: `spot_session=${token}`, csrfToken };
}
