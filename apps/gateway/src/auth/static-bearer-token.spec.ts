import { StaticBearerToken } from './static-bearer-token';

describe('StaticBearerToken', () => {
  const token = new StaticBearerToken('operator-token-0123456789');

  it('accepts exactly `Bearer <token>` (scheme case-insensitive)', () => {
    expect(token.matches('Bearer operator-token-0123456789')).toBe(true);
    expect(token.matches('bearer operator-token-0123456789')).toBe(true);
  });

  it('refuses a missing header, another scheme, the bare token, a prefix or an extension of it', () => {
    for (const h of [undefined, '', 'Basic operator-token-0123456789', 'operator-token-0123456789', 'Bearer operator-token-012345678', 'Bearer operator-token-01234567890', 'Bearer ']) {
      expect(token.matches(h)).toBe(false);
    }
  });
});
