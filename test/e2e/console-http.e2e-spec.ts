import { randomUUID } from 'node:crypto';
import { PrismaService } from '@spot/db';
import { type Browser, CapturingLogger, type ConsoleRoute, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();
const slugOf = (tag: string) => `${tag}-${Math.random().toString(36).slice(2, 10)}`;

function fill(route: ConsoleRoute, params: Record<string, string>): string {
  return route.url.replace(/:(\w+)/g, (_m, name: string) => encodeURIComponent(params[name] ?? 'x'.repeat(22)));
}

/** What HTTP clients other than browsers do: the console as curl, scripts and SDKs see it. */
describe('console: HTTP clients that are not browsers', () => {
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
});
