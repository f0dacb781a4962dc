import { randomUUID } from 'node:crypto';
import { PrismaService } from '@spot/db';
import { type Browser, CapturingLogger, type ConsoleRoute, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();
const slugOf = (tag: string) => `${tag}-${Math.random().toString(36).slice(2, 10)}`;

function fill(route: ConsoleRoute, params: Record<string, string>): string {
  return route.url.replace(/:(\w+)/g, (_m, name: string) => encodeURIComponent(params[name] ?? 'x'.repeat(22)));
}

/** The console as curl, scripts, SDKs and browsers see it on the wire. */
describe('console over HTTP: empty JSON bodies, errors for non-browsers, security headers', () => {
  const logger = new CapturingLogger();
  let s: ConsoleStack;
  let prisma: PrismaService;
  let alice: Browser;
  let bob: Browser;
  const orgA = slugOf('http-a');
  const orgB = slugOf('http-b');
  let keyA: { id: string };

  beforeAll(async () => {
    s = await startConsoleStack({}, { logger });
    prisma = s.app.get(PrismaService);
    alice = await s.signIn(newGitHubUser('http-alice'));
    bob = await s.signIn(newGitHubUser('http-bob'));
    expect((await alice.api('POST', '/api/orgs', { slug: orgA, name: 'A' })).status).toBe(201);
    expect((await bob.api('POST', '/api/orgs', { slug: orgB, name: 'B' })).status).toBe(201);
    keyA = await j(alice.api('POST', `/api/orgs/${orgA}/keys`, { name: 'a-key' }));
  });
  afterAll(async () => {
    await s?.close();
  });

  /** A body-less call with `Content-Type: application/json`, as many HTTP clients send every call. */
  const bodyless = (b: Browser, method: string, path: string) =>
    b.fetch(path, { method, headers: { 'content-type': 'application/json', 'x-csrf-token': b.csrfToken, accept: 'application/json' } });

  it('takes an empty JSON body as {}: DELETE of a key and POST /auth/logout without a body succeed', async () => {
    const k = await j(alice.api('POST', `/api/orgs/${orgA}/keys`, { name: 'bodyless' }));
    const del = await bodyless(alice, 'DELETE', `/api/orgs/${orgA}/keys/${k.id}`);
    expect(del.status).toBe(200);
    expect(await j(del)).toMatchObject({ id: k.id, revokedAt: expect.any(String) });
    expect((await prisma.apiKey.findUniqueOrThrow({ where: { id: k.id } })).revokedAt).not.toBeNull();

    const k2 = await j(alice.api('POST', `/api/orgs/${orgA}/keys`, { name: 'bodyless-charset' }));
    const withCharset = await alice.fetch(`/api/orgs/${orgA}/keys/${k2.id}`, {
      method: 'DELETE',
      headers: { 'content-type': 'application/json; charset=utf-8', 'x-csrf-token': alice.csrfToken, accept: 'application/json' },
    });
    expect(withCharset.status).toBe(200);

    // still CSRF-checked, and a malformed body is still refused
    const noToken = await alice.fetch(`/api/orgs/${orgA}/keys/${keyA.id}`, { method: 'DELETE', headers: { 'content-type': 'application/json' } });
    expect(noToken.status).toBe(403);
    const bad = await alice.fetch('/api/orgs', { method: 'POST', body: '{nope', headers: { 'content-type': 'application/json', 'x-csrf-token': alice.csrfToken } });
    expect(bad.status).toBe(400);
    const blank = await alice.fetch('/api/orgs', { method: 'POST', body: '  ', headers: { 'content-type': 'application/json', 'x-csrf-token': alice.csrfToken } });
    expect(blank.status).toBe(400);
    expect((await prisma.apiKey.findUniqueOrThrow({ where: { id: keyA.id } })).revokedAt).toBeNull();

    const other = await s.signIn(newGitHubUser('http-logout'));
    const out = await bodyless(other, 'POST', '/auth/logout');
    expect(out.status).toBe(204);
    expect(other.cookies.has('spot_session')).toBe(false);
    expect((await other.fetch('/api/me')).status).toBe(401);
  });

  it('org and key pages asked for without Accept: text/html answer 404 in JSON for other orgs, unknown slugs and bad ids: no 500, nothing logged', async () => {
    const pages = s.routes.filter((r) => r.method === 'GET' && r.url.startsWith('/orgs/:org'));
    expect(pages.length).toBeGreaterThan(8);
    const withId = pages.filter((r) => r.url.includes(':id'));
    expect(withId.length).toBeGreaterThan(1);
    const cases: Array<{ route: ConsoleRoute; params: Record<string, string> }> = [];
    for (const route of pages) {
      cases.push({ route, params: { org: orgA, id: keyA.id } }); // another tenant's org and key
      cases.push({ route, params: { org: 'no-such-org-anywhere', id: keyA.id } });
      cases.push({ route, params: { org: 'Not A Slug!', id: keyA.id } });
    }
    for (const route of withId) {
      for (const id of ['not-a-uuid', randomUUID(), keyA.id, "1' OR '1'='1", '%00']) cases.push({ route, params: { org: orgB, id } });
    }
    logger.lines.length = 0;
    for (const { route, params } of cases) {
      for (const accept of [undefined, 'application/json', '*/*']) {
        const url = fill(route, params);
        const res = await bob.fetch(url, { headers: accept === undefined ? {} : { accept } });
        const body = await res.text();
        expect({ url, accept, status: res.status, type: res.headers.get('content-type') }).toEqual({
          url,
          accept,
          status: 404,
          type: 'application/json; charset=utf-8',
        });
        expect(JSON.parse(body)).toEqual({ error: { message: expect.any(String), code: 'not_found', param: null } });
      }
    }
    expect(logger.lines.filter((l) => l.level === 'error' || l.level === 'fatal' || /\n\s+at /.test(l.text))).toEqual([]);

    // a browser still gets the HTML error page
    const html = await bob.fetch(fill(pages[0], { org: orgA }), { headers: { accept: 'text/html' } });
    expect(html.status).toBe(404);
    expect(html.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await html.text()).toContain('<main');
  });

  const expectSecurityHeaders = (what: string, res: Response) => {
    const h = (name: string) => res.headers.get(name);
    expect({ what, csp: h('content-security-policy'), xfo: h('x-frame-options'), referrer: h('referrer-policy'), nosniff: h('x-content-type-options') }).toEqual({
      what,
      csp: expect.stringMatching(/(^|; )frame-ancestors 'none'(;|$)/),
      xfo: 'DENY',
      referrer: 'same-origin',
      nosniff: 'nosniff',
    });
    const csp = h('content-security-policy')!;
    expect(csp).toMatch(/(^|; )script-src 'self'(;|$)/);
    expect(csp).toMatch(/(^|; )style-src 'self'(;|$)/);
    expect(csp).toMatch(/(^|; )default-src 'none'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
  };

  /** What the CSP would block: an inline script, style element or attribute, an event handler, a javascript: URL. */
  const inlineCode = (html: string): string[] =>
    [
      ...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>/gi),
      ...html.matchAll(/<style\b[^>]*>/gi),
      ...html.matchAll(/<[^>]+\sstyle=["'][^>]*>/gi),
      ...html.matchAll(/<[^>]+\son[a-z]+=["'][^>]*>/gi),
      ...html.matchAll(/javascript:/gi),
    ].map((m) => m[0]);

  it('sends a CSP with no inline script or style, frame-ancestors none, X-Frame-Options DENY, Referrer-Policy and nosniff on every page and answer', async () => {
    const pages = s.routes.filter((r) => r.method === 'GET');
    expect(pages.length).toBeGreaterThan(12);
    const invited = newGitHubUser('http-member');
    expect((await alice.api('POST', `/api/orgs/${orgA}/members`, { login: invited.login })).status).toBe(201);
    const created = await alice.fetch(`/orgs/${orgA}/keys`, { method: 'POST', form: { _csrf: alice.csrfToken, name: 'csp-key' } });
    const flashUrl = created.headers.get('location')!;
    const flash = flashUrl.split('/').at(-1)!;
    // the bill (with billing off), the usage chart and the key pages have content too
    const at = new Date(Date.now() - 3_600_000);
    const org = await prisma.org.findUniqueOrThrow({ where: { slug: orgA } });
    await prisma.$executeRaw`
      INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, cached_tokens, duration_ms, status, estimated, cost_nanos)
      VALUES (${`csp-${randomUUID()}`}, ${at}, ${org.id}::uuid, ${keyA.id}::uuid, 'm', 't', 10, 5, 0, 5, 200, false, 100)`;
    let htmlPages = 0;
    for (const route of pages) {
      const url = fill(route, { org: orgA, id: keyA.id, flash, login: invited.login });
      for (const accept of ['text/html', 'application/json']) {
        const res = await alice.fetch(url, { headers: { accept } });
        expectSecurityHeaders(`${url} (${accept}) ${res.status}`, res);
        const body = await res.text();
        if ((res.headers.get('content-type') ?? '').startsWith('text/html')) {
          htmlPages++;
          expect({ url, inline: inlineCode(body) }).toEqual({ url, inline: [] });
        }
      }
    }
    expect(htmlPages).toBeGreaterThan(8);
    // the new key's page (its flash is spent by the walk above, so mint another) and its copy button's script
    const again = await alice.fetch(`/orgs/${orgA}/keys`, { method: 'POST', form: { _csrf: alice.csrfToken, name: 'csp-key-2' } });
    const shown = await alice.fetch(again.headers.get('location')!);
    const html = await shown.text();
    expect(html).toContain('id="copy"');
    expect(inlineCode(html)).toEqual([]);
    const assets = [...html.matchAll(/<(?:script src|link rel="stylesheet" href)="([^"]+)"/g)].map((m) => m[1]);
    expect(assets).toHaveLength(2);
    for (const asset of assets) {
      const res = await fetch(`${s.base}${asset}`);
      expect({ asset, status: res.status }).toEqual({ asset, status: 200 });
      expect(res.headers.get('content-type')).toMatch(asset.includes('.css') ? /^text\/css/ : /^text\/javascript/);
      expectSecurityHeaders(asset, res);
      expect((await res.text()).length).toBeGreaterThan(100);
    }

    // the sign-in page, an error page, an unknown route, JSON, a redirect, a refused form and a sign-out
    const anonymous = new (alice.constructor as new (base: string) => Browser)(s.base);
    for (const [what, res] of [
      ['sign-in', await anonymous.fetch('/signin')],
      ['error page', await alice.fetch('/orgs/no-such-org/keys', { headers: { accept: 'text/html' } })],
      ['unknown route', await anonymous.fetch('/no/such/page')],
      ['api', await alice.fetch('/api/me')],
      ['401', await anonymous.fetch('/api/me')],
      ['redirect', await anonymous.fetch('/')],
      ['csrf refused', await alice.fetch(`/orgs/${orgA}/keys`, { method: 'POST', form: { name: 'x' } })],
      ['bad json', await alice.fetch('/api/orgs', { method: 'POST', body: '{nope', headers: { 'content-type': 'application/json', 'x-csrf-token': alice.csrfToken } })],
      ['healthz', await anonymous.fetch('/healthz')],
    ] as const) {
      expectSecurityHeaders(what, res);
      const body = await res.text();
      if ((res.headers.get('content-type') ?? '').startsWith('text/html')) expect({ what, inline: inlineCode(body) }).toEqual({ what, inline: [] });
    }
  });
});
