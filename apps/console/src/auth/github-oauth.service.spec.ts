import { safeNext } from './github-oauth.service';

describe('safeNext (where the browser goes after signing in)', () => {
  it.each(['/orgs', '/orgs/acme/keys?x=1&y=%2F', '/tiers#top'])('keeps the local path %s', (path) => {
    expect(safeNext(path)).toBe(path);
  });

  it.each([
    ['another host', '//evil.example/orgs'],
    ['a backslash host', '/\\evil.example'],
    ['a backslash anywhere', '/orgs\\x'],
    ['an absolute URL', 'https://evil.example/'],
    ['a javascript: URL', 'javascript:alert(1)'],
    ['a relative path', 'orgs'],
    ['whitespace', '/orgs /x'],
    ['a control character', '/orgs\n/x'],
    ['the auth routes', '/auth/logout'],
    ['a very long path', `/${'a'.repeat(600)}`],
    ['not a string', ['/orgs']],
  ])('drops %s', (_what, next) => {
    expect(safeNext(next)).toBeNull();
  });
});
