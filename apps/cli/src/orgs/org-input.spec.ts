import { InvalidArgumentError } from '@spot/keys';
import { parseOrgName, parseOrgSlug } from './org-input';

describe('parseOrgSlug', () => {
  it.each(['abc', 'acme', 'acme-inc', 'a1-b2-c3', '0rg', 'a'.repeat(40)])('accepts %j', (slug) => {
    expect(parseOrgSlug(slug)).toBe(slug);
  });

  it.each(['', 'ab', 'a'.repeat(41), 'Acme', '-acme', 'acme-', 'ac_me', 'ac me', 'acme.io', 'ünï'])('rejects %j', (slug) => {
    expect(() => parseOrgSlug(slug, '--org')).toThrow(InvalidArgumentError);
    expect(() => parseOrgSlug(slug, '--org')).toThrow(/^--org: expected 3-40 lowercase letters/);
  });
});

describe('parseOrgName', () => {
  it('trims, and rejects empty, long or control characters', () => {
    expect(parseOrgName('  Acme Inc ')).toBe('Acme Inc');
    expect(() => parseOrgName(' ', '--name')).toThrow('--name: must not be empty');
    expect(() => parseOrgName('x'.repeat(101))).toThrow('at most 100 characters');
    expect(() => parseOrgName('a\tb')).toThrow('control characters');
  });
});
