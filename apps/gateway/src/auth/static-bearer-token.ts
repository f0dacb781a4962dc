import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * A fixed operator token (ADMIN_TOKEN, METRICS_TOKEN) checked against an `Authorization: Bearer …` header in
 * constant time: both sides are hashed first, so neither the content nor the length of the token leaks.
 */
export class StaticBearerToken {
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = digest(token);
  }

  /** Whether the header carries this token. */
  matches(authorization: string | undefined): boolean {
    const given = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1] ?? '';
    return timingSafeEqual(digest(given), this.expected);
  }
}
