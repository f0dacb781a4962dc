import { createHash } from 'node:crypto';
import { API_KEY_PREFIX, hashApiKey, isWellFormedApiKey, mintApiKey } from './api-key';

describe('api keys', () => {
  it('mints a well-formed key whose prefix is its public part and whose hash is SHA-256 of the key', () => {
    const { key, prefix, secretHash } = mintApiKey();
    expect(key.startsWith(`${prefix}-`)).toBe(true);
    expect(prefix.startsWith(API_KEY_PREFIX)).toBe(true);
    expect(isWellFormedApiKey(key)).toBe(true);
    expect(secretHash).toBe(createHash('sha256').update(key).digest('hex'));
    expect(secretHash).not.toContain(key.slice(prefix.length + 1));
  });

  it('never mints the same key twice', () => {
    const keys = new Set(Array.from({ length: 2000 }, () => mintApiKey().key));
    expect(keys.size).toBe(2000);
  });

  it('rejects malformed keys', () => {
    const { key } = mintApiKey();
    expect(isWellFormedApiKey(key.slice(0, -1))).toBe(false);
    expect(isWellFormedApiKey(`${key}x`)).toBe(false);
    expect(isWellFormedApiKey(key.replace(API_KEY_PREFIX, 'sk-proj-'))).toBe(false);
    expect(isWellFormedApiKey('')).toBe(false);
    expect(hashApiKey('a')).not.toBe(hashApiKey('b'));
  });
});
