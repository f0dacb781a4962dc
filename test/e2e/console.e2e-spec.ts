import { PrismaService } from '@spot/db';
import { KEY_CHANGED_CHANNEL, KEY_REVOCATION_CHANNEL, ORG_CHANGED_CHANNEL } from '@spot/keys';
import { Redis } from 'ioredis';
import { createSignedInUser } from '../factories/users.factory';
import { Browser, type ConsoleRoute, type ConsoleStack, newGitHubUser, oauthDance, startConsoleStack } from '../support/console-stack';
import { CHAT_MODEL } from '../support/gateway-stack';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();
const slugOf = (tag: string) => `${tag}-${Math.random().toString(36).slice(2, 10)}`;
const STATE_CHANGING = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);
/** Routes a session does not authenticate: signed by Stripe, not sent by browsers. */
const NOT_COOKIE_AUTHENTICATED = new Set(['POST /stripe/webhook']);

/** A route's URL with its parameters filled in (`:org`, `:id`, `:login`, `:flash`, anything else: x). */
function fill(route: ConsoleRoute, params: Record<string, string>): string {
  return route.url.replace(/:(\w+)/g, (_m, name: string) => encodeURIComponent(params[name] ?? 'x'.repeat(22)));
}

describe('console: GitHub sign-in', () => {
  let s: ConsoleStack;
  let prisma: PrismaService;

  beforeAll(async () => {
    s = await startConsoleStack();
    prisma = s.app.get(PrismaService);
  });
  afterAll(async () => {
    await s?.close();
  });

  it('signs in through the OAuth web flow with state and PKCE, keyed by the GitHub id; a renamed login stays the same user', async () => {
    const gh = newGitHubUser('dance');
    const browser = await s.signIn(gh);
    const me = await j(browser.fetch('/api/me'));
    expect(me.user).toMatchObject({ login: gh.login, githubId: String(gh.id), email: gh.email });
    expect(me.csrfToken).toEqual(expect.any(String));

    const authorize = s.github.requests.filter((r) => r.endpoint === 'authorize').at(-1)!;
    expect(authorize.query).toMatchObject({ scope: 'read:user,user:email', code_challenge_method: 'S256', client_id: s.github.clientId });
    expect(authorize.query.state).toMatch(/^[\w-]{20,}$/);
    const token = s.github.requests.filter((r) => r.endpoint === 'token').at(-1)!;
    expect(token.body?.code_verifier).toMatch(/^[\w.~-]{43,128}$/);

    const renamed = { ...gh, login: `${gh.login}-new` };
    await s.signIn(renamed);
    const rows = await prisma.user.findMany({ where: { githubId: BigInt(gh.id) } });
    expect(rows).toHaveLength(1);
    expect(rows[0].login).toBe(renamed.login);
  });

  it('sets the session cookie HttpOnly, SameSite=Lax, not Secure over http; sign-out ends the session server-side', async () => {
    const gh = newGitHubUser('cookie');
    s.github.addUser(gh);
    const browser = new Browser(s.base);
    const res = await oauthDance(browser, gh.login);
    const cookie = browser.lastSetCookies.find((c) => c.startsWith('spot_session='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).toMatch(/Path=\//);
    expect(cookie).not.toMatch(/Secure/i);
    expect(res.headers.get('location')).toBe('/orgs');
    const me = await j(browser.fetch('/api/me'));
    browser.csrfToken = me.csrfToken;
    const oldCookie = browser.cookies.get('spot_session')!;

    expect((await browser.api('POST', '/auth/logout')).status).toBe(204);
    expect(browser.cookies.has('spot_session')).toBe(false);
    // the old cookie, replayed, is worthless: the session row is gone
    const replay = await fetch(`${s.base}/api/me`, { headers: { cookie: `spot_session=${oldCookie}` } });
    expect(replay.status).toBe(401);
    expect(await j(replay)).toMatchObject({ error: { code: 'unauthenticated' } });
  });

  it('an expired session is refused: 401 for the API, sign-in for pages', async () => {
    const live = await createSignedInUser(prisma, { tag: 'live' });
    const expired = await createSignedInUser(prisma, { tag: 'expired', expiresAt: new Date(Date.now() - 1000) });
    const me = await fetch(`${s.base}/api/me`, { headers: { cookie: live.cookie } });
    expect(await j(me)).toMatchObject({ user: { login: live.login }, csrfToken: live.csrfToken });
    expect((await fetch(`${s.base}/api/me`, { headers: { cookie: expired.cookie } })).status).toBe(401);
    const page = await fetch(`${s.base}/orgs`, { headers: { cookie: expired.cookie, accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/signin?next=%2Forgs');
  });

  it('sets Secure cookies when the console is served over https', async () => {
    const https = await startConsoleStack({ CONSOLE_PUBLIC_URL: 'https://console.example.test' });
    try {
      const gh = newGitHubUser('secure');
      https.github.addUser(gh);
      const browser = new Browser(https.base);
      await browser.fetch('/auth/github');
      expect(browser.lastSetCookies.find((c) => c.startsWith('spot_oauth='))).toMatch(/Secure/);
      const res = await oauthDance(browser, gh.login);
      expect(res.status).toBe(303);
      expect(browser.lastSetCookies.find((c) => c.startsWith('spot_session='))).toMatch(/;\s*Secure/i);
    } finally {
      await https.close();
    }
  });

  it('with a GitHub OAuth app configured, signs in at github.com and labels nothing as a demo', async () => {
    const real = await startConsoleStack({
      GITHUB_CLIENT_ID: 'Iv1.realclientid',
      GITHUB_AUTHORIZE_URL: 'https://github.com/login/oauth/authorize',
      GITHUB_TOKEN_URL: 'https://github.com/login/oauth/access_token',
      GITHUB_API_URL: 'https://api.github.com',
    });
    try {
      const signin = await (await fetch(`${real.base}/signin`)).text();
      expect(/<main[\s\S]*<\/main>/.exec(signin)![0]).not.toMatch(/demo/i);
      const start = await new Browser(real.base).fetch('/auth/github');
      const to = new URL(start.headers.get('location')!);
      expect(`${to.origin}${to.pathname}`).toBe('https://github.com/login/oauth/authorize');
      expect(Object.fromEntries(to.searchParams)).toMatchObject({
        client_id: 'Iv1.realclientid',
        response_type: 'code',
        scope: 'read:user,user:email',
        redirect_uri: `${real.base}/auth/github/callback`,
        code_challenge_method: 'S256',
      });
    } finally {
      await real.close();
    }
  });

  it('rejects a forged state, and a valid state replayed from another browser: no session', async () => {
    const gh = newGitHubUser('forge');
    s.github.addUser(gh);
    const victim = new Browser(s.base);
    const start = await victim.fetch('/auth/github');
    const authorize = new URL(start.headers.get('location')!);
    authorize.searchParams.set('login', gh.login);
    const cb = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location')!);

    // forged: the right code, a made-up state
    const forged = new URL(cb);
    forged.searchParams.set('state', 'forged-state-value-0123456789');
    const r1 = await victim.fetch(`${forged.pathname}${forged.search}`);
    expect(r1.status).toBe(303);
    expect(r1.headers.get('location')).toBe('/signin?error=state');
    expect(victim.cookies.has('spot_session')).toBe(false);

    // login CSRF: the attacker's valid callback URL opened in another browser (no nonce cookie)
    const attacker = new Browser(s.base);
    const r2 = await attacker.fetch(`${cb.pathname}${cb.search}`);
    expect(r2.headers.get('location')).toBe('/signin?error=state');
    expect(attacker.cookies.has('spot_session')).toBe(false);
    expect(await prisma.user.count({ where: { githubId: BigInt(gh.id) } })).toBe(0);
  });

  it('a denied consent returns to the sign-in page with a message and no session', async () => {
    const gh = newGitHubUser('deny');
    s.github.addUser(gh);
    s.github.setNextDecision('deny');
    const browser = new Browser(s.base);
    const res = await oauthDance(browser, gh.login);
    expect(res.status).toBe(303);
    const location = res.headers.get('location')!;
    expect(location).toBe('/signin?error=denied');
    expect(browser.cookies.has('spot_session')).toBe(false);
    const page = await (await browser.fetch(location)).text();
    expect(page).toMatch(/<p class="error" role="alert">Sign-in was cancelled/);
    expect(await prisma.user.count({ where: { githubId: BigInt(gh.id) } })).toBe(0);
  });

  it('GitHub failing at the token endpoint ends on the sign-in page with an error, not a crash', async () => {
    const gh = newGitHubUser('tokenfail');
    s.github.addUser(gh);
    s.github.faults.tokenError(500);
    const browser = new Browser(s.base);
    const res = await oauthDance(browser, gh.login);
    expect(res.headers.get('location')).toBe('/signin?error=github');
    expect(browser.cookies.has('spot_session')).toBe(false);
  });

  it('after signing in, the browser lands on the page that asked for it; only local paths are followed', async () => {
    const gh = newGitHubUser('next');
    s.github.addUser(gh);
    const browser = new Browser(s.base);
    const asked = await browser.fetch('/orgs/some-org/members?x=1', { headers: { accept: 'text/html' } });
    expect(asked.headers.get('location')).toBe('/signin?next=%2Forgs%2Fsome-org%2Fmembers%3Fx%3D1');
    const signin = await (await browser.fetch(asked.headers.get('location')!)).text();
    expect(signin).toContain('href="/auth/github?next=%2Forgs%2Fsome-org%2Fmembers%3Fx%3D1"');
    const start = await browser.fetch('/auth/github?next=%2Forgs%2Fsome-org%2Fmembers%3Fx%3D1');
    const authorize = new URL(start.headers.get('location')!);
    authorize.searchParams.set('login', gh.login);
    const cb = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location')!);
    const done = await browser.fetch(`${cb.pathname}${cb.search}`);
    expect(done.headers.get('location')).toBe('/orgs/some-org/members?x=1');
    // signed in already: the sign-in page sends the browser on
    expect((await browser.fetch('/signin?next=%2Ftiers')).headers.get('location')).toBe('/tiers');
    expect((await browser.fetch('/signin')).headers.get('location')).toBe('/orgs');

    for (const evil of ['//evil.example/x', '/\\evil.example/x', 'https://evil.example/', '/auth/logout']) {
      const b = new Browser(s.base);
      expect(await (await b.fetch(`/signin?next=${encodeURIComponent(evil)}`)).text()).toContain('href="/auth/github"');
      const st = await b.fetch(`/auth/github?next=${encodeURIComponent(evil)}`);
      const az = new URL(st.headers.get('location')!);
      az.searchParams.set('login', gh.login);
      const back = new URL((await fetch(az, { redirect: 'manual' })).headers.get('location')!);
      expect({ evil, location: (await b.fetch(`${back.pathname}${back.search}`)).headers.get('location') }).toEqual({ evil, location: '/orgs' });
    }
  });

  it('the sign-in page shows fixed messages for error codes, never text from the URL', async () => {
    const page = await (await fetch(`${s.base}/signin?error=${encodeURIComponent('Your account is locked: call +1 555 0100')}`)).text();
    expect(page).not.toContain('555');
    expect(page).toContain('Sign-in did not complete');
  });

  it('pages need a session: a signed-out browser is sent to sign in; the API answers 401', async () => {
    const b = new Browser(s.base);
    const page = await b.fetch('/orgs', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/signin?next=%2Forgs');
    expect((await b.fetch('/api/orgs')).status).toBe(401);
    expect((await b.fetch('/healthz')).status).toBe(200);
    const unknown = await b.fetch('/api/no-such-route');
    expect(unknown.status).toBe(404);
    expect(await j(unknown)).toEqual({ error: { message: 'Not found.', code: 'not_found', param: null } });
  });
});

describe('console: orgs, members, keys', () => {
  let s: ConsoleStack;
  let prisma: PrismaService;
  let alice: Browser;
  let bob: Browser;
  const aliceUser = newGitHubUser('alice');
  const bobUser = newGitHubUser('bob');
  const orgA = slugOf('org-a');
  const orgB = slugOf('org-b');
  let keyA: { id: string; key: string };
  let keyB: { id: string; key: string };

  beforeAll(async () => {
    s = await startConsoleStack();
    prisma = s.app.get(PrismaService);
    alice = await s.signIn(aliceUser);
    bob = await s.signIn(bobUser);
    expect((await alice.api('POST', '/api/orgs', { slug: orgA, name: 'Org A' })).status).toBe(201);
    expect((await bob.api('POST', '/api/orgs', { slug: orgB, name: 'Org B' })).status).toBe(201);
    keyA = await j(alice.api('POST', `/api/orgs/${orgA}/keys`, { name: 'a-key' }));
    keyB = await j(bob.api('POST', `/api/orgs/${orgB}/keys`, { name: 'b-key' }));
  });
  afterAll(async () => {
    await s?.close();
  });

  it('creates an org with its creator as owner and lists it in /api/me', async () => {
    const me = await j(alice.fetch('/api/me'));
    expect(me.orgs).toEqual([expect.objectContaining({ slug: orgA, name: 'Org A', role: 'owner', monthlyBudgetUsd: null })]);
    const dup = await bob.api('POST', '/api/orgs', { slug: orgA, name: 'Again' });
    expect(dup.status).toBe(409);
    expect(await j(dup)).toMatchObject({ error: { code: 'slug_taken' } });
  });

  it('shows a new key once: POST returns it whole, lists show only its public prefix', async () => {
    expect(keyA.key).toMatch(/^sk-spot-[0-9A-Za-z]{12}-[0-9A-Za-z]{40}$/);
    const list = await j(alice.fetch(`/api/orgs/${orgA}/keys`));
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: keyA.id, name: 'a-key', createdBy: aliceUser.login, revokedAt: null, lastUsedAt: null });
    expect(keyA.key.startsWith(list[0].prefix)).toBe(true);
    expect(JSON.stringify(list)).not.toContain(keyA.key);
    expect(JSON.stringify(list)).not.toMatch(/secretHash|secret_hash/);
    const stored = await prisma.apiKey.findUniqueOrThrow({ where: { id: keyA.id } });
    expect(stored.secretHash).not.toContain(keyA.key.slice(-20));
  });

  it('validates input with 400 naming the field', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/api/orgs', { slug: 'Bad Slug!', name: 'x' }, 'slug'],
      ['POST', '/api/orgs', { slug: slugOf('ok'), name: '' }, 'name'],
      ['POST', '/api/orgs', { slug: slugOf('ok'), name: 'x', extra: 1 }, 'extra'],
      ['PATCH', `/api/orgs/${orgA}`, { monthlyBudgetUsd: -5 }, 'monthlyBudgetUsd'],
      ['POST', `/api/orgs/${orgA}/keys`, { name: 'k', rpmLimit: 0 }, 'rpmLimit'],
      ['POST', `/api/orgs/${orgA}/keys`, { name: 'k', allowedModels: ['no-such-model'] }, 'allowedModels'],
      ['POST', `/api/orgs/${orgA}/keys`, { name: 'k', expiresAt: '2001-01-01T00:00:00Z' }, 'expiresAt'],
      ['POST', `/api/orgs/${orgA}/members`, { login: 'not a login!' }, 'login'],
    ];
    for (const [method, path, body, param] of cases) {
      const res = await alice.api(method, path, body);
      expect({ path, param, status: res.status }).toEqual({ path, param, status: 400 });
      const err = (await j(res)).error;
      expect(err).toMatchObject({ code: 'invalid_request', param });
      expect(err.message).toContain(param);
    }
    const bad = await alice.fetch('/api/orgs', { method: 'POST', body: '{nope', headers: { 'content-type': 'application/json', 'x-csrf-token': alice.csrfToken } });
    expect(bad.status).toBe(400);
  });

  /** Valid JSON bodies for API routes whose schema needs fields (so a 404 is not hidden behind a 400). */
  const apiBodies: Record<string, unknown> = {
    'PATCH /api/orgs/:org': { monthlyBudgetUsd: 1 },
    'POST /api/orgs/:org/members': { role: 'owner', login: 'intruder-login' },
    'PATCH /api/orgs/:org/members/:login': { role: 'member' },
    'POST /api/orgs/:org/keys': { name: 'intruder' },
    'PATCH /api/orgs/:org/keys/:id': { name: 'stolen', rpmLimit: 1 },
  };
  const formBody = (token: string | null) => {
    const form: Record<string, string> = { name: 'intruder', login: 'intruder-login', role: 'owner', monthlyBudgetUsd: '1', rpmLimit: '1', slug: slugOf('f') };
    if (token !== null) form._csrf = token;
    return form;
  };
  /** Sends `route` as bob would, with his CSRF token unless told otherwise (null: none): JSON for /api, forms for pages. */
  const asBob = (route: ConsoleRoute, url: string, token: string | null = bob.csrfToken) => {
    const headers: Record<string, string> = { accept: url.startsWith('/api/') ? 'application/json' : 'text/html' };
    if (!STATE_CHANGING.has(route.method)) return bob.fetch(url, { method: route.method, headers });
    if (url.startsWith('/api/') || url.startsWith('/auth/')) {
      if (token !== null) headers['x-csrf-token'] = token;
      return bob.fetch(url, { method: route.method, headers, json: apiBodies[`${route.method} ${route.url}`] ?? {} });
    }
    return bob.fetch(url, { method: route.method, headers, form: formBody(token) });
  };

  it('isolates tenants on every org-scoped route (all of them, as registered): the other org answers 404 and nothing changes', async () => {
    const scoped = s.routes.filter((r) => r.url.includes(':org'));
    expect(scoped.length).toBeGreaterThan(25);
    // org A's slug, ids and logins, from a member of org B only
    for (const route of scoped) {
      const res = await asBob(route, fill(route, { org: orgA, id: keyA.id, login: aliceUser.login }));
      expect({ route, status: res.status }).toEqual({ route, status: 404 });
    }
    // org A's key ids and members through bob's own org
    for (const route of scoped.filter((r) => r.url.includes(':id') || r.url.includes(':login'))) {
      const res = await asBob(route, fill(route, { org: orgB, id: keyA.id, login: aliceUser.login }));
      expect({ route, status: res.status }).toEqual({ route, status: 404 });
    }

    const key = await prisma.apiKey.findUniqueOrThrow({ where: { id: keyA.id } });
    expect(key).toMatchObject({ name: 'a-key', revokedAt: null, rpmLimit: null });
    const org = await prisma.org.findUniqueOrThrow({ where: { slug: orgA }, include: { memberships: true, apiKeys: true, invitations: true } });
    expect(org.monthlyBudgetMicros).toBeNull();
    expect(org.memberships).toHaveLength(1);
    expect(org.apiKeys).toHaveLength(1);
    expect(org.invitations).toHaveLength(0);
  });

  it('refuses every state-changing route (all of them, as registered) without the CSRF token or with a wrong one', async () => {
    const routes = s.routes.filter((r) => STATE_CHANGING.has(r.method) && !NOT_COOKIE_AUTHENTICATED.has(`${r.method} ${r.url}`));
    expect(routes.length).toBeGreaterThan(15);
    for (const token of [null, 'wrong-token', `${bob.csrfToken.slice(0, -1)}${bob.csrfToken.endsWith('x') ? 'y' : 'x'}`]) {
      for (const route of routes) {
        const res = await asBob(route, fill(route, { org: orgB, id: keyB.id, login: bobUser.login }), token);
        expect({ token, route, status: res.status }).toEqual({ token, route, status: 403 });
      }
    }
    // alice's token is not bob's
    const other = routes.find((r) => r.url === '/api/orgs/:org/keys' && r.method === 'POST')!;
    expect((await asBob(other, `/api/orgs/${orgB}/keys`, alice.csrfToken)).status).toBe(403);
    const members = await prisma.membership.count({ where: { org: { slug: orgB } } });
    expect(members).toBe(1);
    expect(await prisma.invitation.count({ where: { org: { slug: orgB } } })).toBe(0);
    expect((await prisma.apiKey.findUniqueOrThrow({ where: { id: keyB.id } })).name).toBe('b-key');
    expect((await bob.fetch('/api/me')).status).toBe(200);
    const org = await prisma.org.findUniqueOrThrow({ where: { slug: orgB }, include: { apiKeys: true } });
    expect(org.monthlyBudgetMicros).toBeNull();
    expect(org.apiKeys).toHaveLength(1);
    expect(org.apiKeys[0].revokedAt).toBeNull();
    // and the same calls with the token work
    expect((await bob.api('PATCH', `/api/orgs/${orgB}`, { monthlyBudgetUsd: 5 })).status).toBe(200);
  });

  it('invites by GitHub login: the invitee joins with that role at the next sign-in', async () => {
    const carol = newGitHubUser('carol');
    const inv = await alice.api('POST', `/api/orgs/${orgA}/members`, { login: carol.login.toUpperCase(), role: 'admin' });
    expect(inv.status).toBe(201);
    const listed = await j(alice.fetch(`/api/orgs/${orgA}/members`));
    expect(listed.invitations).toEqual([expect.objectContaining({ login: carol.login, role: 'admin' })]);

    const carolBrowser = await s.signIn(carol);
    const me = await j(carolBrowser.fetch('/api/me'));
    expect(me.orgs).toEqual([expect.objectContaining({ slug: orgA, role: 'admin' })]);
    const after = await j(alice.fetch(`/api/orgs/${orgA}/members`));
    expect(after.invitations).toEqual([]);
    expect(after.members.map((m: { login: string; role: string }) => [m.login, m.role])).toEqual([
      [aliceUser.login, 'owner'],
      [carol.login, 'admin'],
    ]);
    // an admin cannot make owners; the last owner cannot leave
    expect((await carolBrowser.api('POST', `/api/orgs/${orgA}/members`, { login: 'someone-else', role: 'owner' })).status).toBe(403);
    const leave = await alice.api('DELETE', `/api/orgs/${orgA}/members/${aliceUser.login}`);
    expect(leave.status).toBe(409);
    expect(await j(leave)).toMatchObject({ error: { code: 'last_owner' } });
    // an admin cannot promote anyone (herself included) to owner
    expect((await carolBrowser.api('PATCH', `/api/orgs/${orgA}/members/${carol.login}`, { role: 'owner' })).status).toBe(403);
    // members see and mint keys, but change only their own
    expect((await alice.api('PATCH', `/api/orgs/${orgA}/members/${carol.login}`, { role: 'member' })).status).toBe(204);
    expect((await carolBrowser.api('DELETE', `/api/orgs/${orgA}/keys/${keyA.id}`)).status).toBe(403);
    const own = await j(carolBrowser.api('POST', `/api/orgs/${orgA}/keys`, { name: 'carol' }));
    expect((await carolBrowser.api('DELETE', `/api/orgs/${orgA}/keys/${own.id}`)).status).toBe(200);
  });

  it('a budget change is stored in micro-USD and announced to the gateways', async () => {
    const sub = new Redis(s.config.REDIS_URL);
    try {
      const messages: string[] = [];
      await sub.subscribe(`${s.config.REDIS_PREFIX}${ORG_CHANGED_CHANNEL}`);
      sub.on('message', (_c, m) => messages.push(m));
      const res = await bob.api('PATCH', `/api/orgs/${orgB}`, { monthlyBudgetUsd: 12.34 });
      expect(await j(res)).toMatchObject({ monthlyBudgetUsd: 12.34 });
      const org = await prisma.org.findUniqueOrThrow({ where: { slug: orgB } });
      expect(org.monthlyBudgetMicros).toBe(12_340_000n);
      for (let i = 0; i < 50 && messages.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(messages).toEqual([JSON.stringify({ orgId: org.id })]);
    } finally {
      await sub.quit();
    }
  });

  it('key settings: PATCH changes limits and allowed models, DELETE revokes (the key stays listed as revoked); each is announced to the gateways', async () => {
    const sub = new Redis(s.config.REDIS_URL);
    try {
      const heard: Array<[string, string]> = [];
      await sub.subscribe(`${s.config.REDIS_PREFIX}${KEY_CHANGED_CHANNEL}`, `${s.config.REDIS_PREFIX}${KEY_REVOCATION_CHANNEL}`);
      sub.on('message', (channel: string, m: string) => heard.push([channel.slice(s.config.REDIS_PREFIX.length), m]));
      const k = await j(bob.api('POST', `/api/orgs/${orgB}/keys`, { name: 'patchme', allowedModels: [CHAT_MODEL], rpmLimit: 5 }));
      expect(k).toMatchObject({ allowedModels: [CHAT_MODEL], rpmLimit: 5, tpmLimit: null });
      const patched = await j(bob.api('PATCH', `/api/orgs/${orgB}/keys/${k.id}`, { rpmLimit: null, tpmLimit: 1000, name: 'patched' }));
      expect(patched).toMatchObject({ name: 'patched', rpmLimit: null, tpmLimit: 1000, allowedModels: [CHAT_MODEL] });
      const revoked = await j(bob.api('DELETE', `/api/orgs/${orgB}/keys/${k.id}`));
      expect(revoked.revokedAt).toEqual(expect.any(String));
      const list = await j(bob.fetch(`/api/orgs/${orgB}/keys`));
      expect(list.find((x: { id: string }) => x.id === k.id).revokedAt).toBe(revoked.revokedAt);

      const { secretHash } = await prisma.apiKey.findUniqueOrThrow({ where: { id: k.id } });
      const message = JSON.stringify({ secretHash, keyId: k.id });
      for (let i = 0; i < 100 && heard.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toEqual([
        [KEY_CHANGED_CHANNEL, message],
        [KEY_REVOCATION_CHANNEL, message],
      ]);
    } finally {
      await sub.quit();
    }
  });

  it('pages work without JavaScript: edit a key (name, models, limits, expiry) and change a member\'s role by form', async () => {
    const k = await j(bob.api('POST', `/api/orgs/${orgB}/keys`, { name: 'edit-me', allowedModels: [CHAT_MODEL] }));
    const page = await (await bob.fetch(`/orgs/${orgB}/keys/${k.id}`)).text();
    expect(page).toContain('value="edit-me"');
    expect(page).toMatch(new RegExp(`value="${CHAT_MODEL}"[^>]*checked`));
    const saved = await bob.fetch(`/orgs/${orgB}/keys/${k.id}`, {
      method: 'POST',
      form: { _csrf: bob.csrfToken, name: 'edited', modelsShown: '1', rpmLimit: '9', tpmLimit: '', expires: '30' },
    });
    expect(saved.status).toBe(303);
    expect(saved.headers.get('location')).toBe(`/orgs/${orgB}/keys/${k.id}?saved=1`);
    expect(await (await bob.fetch(saved.headers.get('location')!)).text()).toContain('role="status">Saved.');
    const row = await prisma.apiKey.findUniqueOrThrow({ where: { id: k.id } });
    expect(row).toMatchObject({ name: 'edited', allowedModels: [], rpmLimit: 9, tpmLimit: null });
    expect(row.expiresAt!.getTime() - row.createdAt.getTime()).toBeGreaterThan(29 * 86_400_000);
    // "keep" leaves the expiry alone; without the model checkboxes the allow-list is left alone too
    await bob.api('PATCH', `/api/orgs/${orgB}/keys/${k.id}`, { allowedModels: [CHAT_MODEL] });
    await bob.fetch(`/orgs/${orgB}/keys/${k.id}`, { method: 'POST', form: { _csrf: bob.csrfToken, name: 'edited', rpmLimit: '', tpmLimit: '5', expires: 'keep' } });
    expect(await prisma.apiKey.findUniqueOrThrow({ where: { id: k.id } })).toMatchObject({ allowedModels: [CHAT_MODEL], rpmLimit: null, tpmLimit: 5, expiresAt: row.expiresAt });

    const dave = newGitHubUser('dave');
    expect((await bob.api('POST', `/api/orgs/${orgB}/members`, { login: dave.login })).status).toBe(201);
    await s.signIn(dave);
    const members = await (await bob.fetch(`/orgs/${orgB}/members`)).text();
    expect(members).toContain(`action="/orgs/${orgB}/members/${dave.login}/role"`);
    const changed = await bob.fetch(`/orgs/${orgB}/members/${dave.login}/role`, { method: 'POST', form: { _csrf: bob.csrfToken, role: 'admin' } });
    expect(changed.status).toBe(303);
    const m = await prisma.membership.findFirstOrThrow({ where: { org: { slug: orgB }, user: { login: dave.login } } });
    expect(m.role).toBe('admin');
    const removed = await bob.fetch(`/orgs/${orgB}/members/${dave.login}/remove`, { method: 'POST', form: { _csrf: bob.csrfToken } });
    expect(removed.status).toBe(303);
    expect(await prisma.membership.count({ where: { org: { slug: orgB }, user: { login: dave.login } } })).toBe(0);
  });

  it('pages work without JavaScript: create a key by form, see it once, revoke it after confirming', async () => {
    const keysPage = await (await bob.fetch(`/orgs/${orgB}/keys`)).text();
    expect(keysPage).toContain('<main');
    expect(keysPage).toContain('name="_csrf"');
    const created = await bob.fetch(`/orgs/${orgB}/keys`, { method: 'POST', form: { _csrf: bob.csrfToken, name: 'by-form', allowedModels: [CHAT_MODEL], rpmLimit: '7', tpmLimit: '' } });
    expect(created.status).toBe(303);
    const shownAt = created.headers.get('location')!;
    const shown = await (await bob.fetch(shownAt)).text();
    const key = /value="(sk-spot-[^"]+)"/.exec(shown)![1];
    expect(shown).toContain('you will not see it again');
    const again = await bob.fetch(shownAt);
    expect(again.status).toBe(410);
    expect(await again.text()).not.toContain(key);
    const row = await prisma.apiKey.findFirstOrThrow({ where: { name: 'by-form', org: { slug: orgB } } });
    expect(row).toMatchObject({ rpmLimit: 7, tpmLimit: null, allowedModels: [CHAT_MODEL] });
    // someone else's session cannot open the flash either
    const confirm = await (await bob.fetch(`/orgs/${orgB}/keys/${row.id}/revoke`)).text();
    expect(confirm).toContain('Revoke key');
    const revoked = await bob.fetch(`/orgs/${orgB}/keys/${row.id}/revoke`, { method: 'POST', form: { _csrf: bob.csrfToken } });
    expect(revoked.status).toBe(303);
    expect((await prisma.apiKey.findUniqueOrThrow({ where: { id: row.id } })).revokedAt).not.toBeNull();
    const limits = await bob.fetch(`/orgs/${orgB}/budget`, { method: 'POST', form: { _csrf: bob.csrfToken, monthlyBudgetUsd: '3.5' } });
    expect(limits.status).toBe(303);
    expect((await prisma.org.findUniqueOrThrow({ where: { slug: orgB } })).monthlyBudgetMicros).toBe(3_500_000n);
  });
});
