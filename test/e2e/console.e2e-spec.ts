import { PrismaService } from '@spot/db';
import { ORG_CHANGED_CHANNEL } from '@spot/keys';
import { Redis } from 'ioredis';
import { Browser, type ConsoleStack, newGitHubUser, oauthDance, startConsoleStack } from '../support/console-stack';
import { CHAT_MODEL } from '../support/gateway-stack';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();
const slugOf = (tag: string) => `${tag}-${Math.random().toString(36).slice(2, 10)}`;

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
    expect(r1.headers.get('location')).toMatch(/^\/signin\?error=/);
    expect(victim.cookies.has('spot_session')).toBe(false);

    // login CSRF: the attacker's valid callback URL opened in another browser (no nonce cookie)
    const attacker = new Browser(s.base);
    const r2 = await attacker.fetch(`${cb.pathname}${cb.search}`);
    expect(r2.headers.get('location')).toMatch(/^\/signin\?error=/);
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
    expect(location).toMatch(/^\/signin\?error=/);
    expect(browser.cookies.has('spot_session')).toBe(false);
    const page = await (await browser.fetch(location)).text();
    expect(page).toContain('role="alert"');
  });

  it('GitHub failing at the token endpoint ends on the sign-in page with an error, not a crash', async () => {
    const gh = newGitHubUser('tokenfail');
    s.github.addUser(gh);
    s.github.faults.tokenError(500);
    const browser = new Browser(s.base);
    const res = await oauthDance(browser, gh.login);
    expect(res.headers.get('location')).toMatch(/^\/signin\?error=GitHub%20sign-in%20failed/);
    expect(browser.cookies.has('spot_session')).toBe(false);
  });

  it('pages need a session: a signed-out browser is sent to sign in; the API answers 401', async () => {
    const b = new Browser(s.base);
    const page = await b.fetch('/orgs', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/signin?next=%2Forgs');
    expect((await b.fetch('/api/orgs')).status).toBe(401);
    expect((await b.fetch('/healthz')).status).toBe(200);
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

  it('isolates tenants on every route: the other org answers 404 and nothing changes', async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['GET', `/api/orgs/${orgA}`],
      ['PATCH', `/api/orgs/${orgA}`, { monthlyBudgetUsd: 1 }],
      ['GET', `/api/orgs/${orgA}/members`],
      ['POST', `/api/orgs/${orgA}/members`, { login: bobUser.login, role: 'owner' }],
      ['PATCH', `/api/orgs/${orgA}/members/${aliceUser.login}`, { role: 'member' }],
      ['DELETE', `/api/orgs/${orgA}/members/${aliceUser.login}`],
      ['GET', `/api/orgs/${orgA}/keys`],
      ['POST', `/api/orgs/${orgA}/keys`, { name: 'intruder' }],
      ['GET', `/api/orgs/${orgA}/keys/${keyA.id}`],
      ['PATCH', `/api/orgs/${orgA}/keys/${keyA.id}`, { rpmLimit: 1 }],
      ['DELETE', `/api/orgs/${orgA}/keys/${keyA.id}`],
      // org A's key through bob's own org
      ['GET', `/api/orgs/${orgB}/keys/${keyA.id}`],
      ['PATCH', `/api/orgs/${orgB}/keys/${keyA.id}`, { name: 'stolen' }],
      ['DELETE', `/api/orgs/${orgB}/keys/${keyA.id}`],
    ];
    for (const [method, path, body] of routes) {
      const res = await bob.api(method, path, body);
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 404 });
    }
    const pages = [`/orgs/${orgA}/keys`, `/orgs/${orgA}/members`, `/orgs/${orgA}/limits`, `/orgs/${orgA}/keys/${keyA.id}/revoke`];
    for (const path of pages) expect({ path, status: (await bob.fetch(path, { headers: { accept: 'text/html' } })).status }).toEqual({ path, status: 404 });
    for (const path of [`/orgs/${orgA}/keys/${keyA.id}/revoke`, `/orgs/${orgB}/keys/${keyA.id}/revoke`, `/orgs/${orgA}/budget`]) {
      const res = await bob.fetch(path, { method: 'POST', form: { _csrf: bob.csrfToken, monthlyBudgetUsd: '1' }, headers: { accept: 'text/html' } });
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
    }

    const key = await prisma.apiKey.findUniqueOrThrow({ where: { id: keyA.id } });
    expect(key).toMatchObject({ name: 'a-key', revokedAt: null, rpmLimit: null });
    const org = await prisma.org.findUniqueOrThrow({ where: { slug: orgA }, include: { memberships: true, apiKeys: true, invitations: true } });
    expect(org.monthlyBudgetMicros).toBeNull();
    expect(org.memberships).toHaveLength(1);
    expect(org.apiKeys).toHaveLength(1);
    expect(org.invitations).toHaveLength(0);
  });

  it('refuses state-changing calls without the CSRF token, or with a wrong one', async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['POST', '/api/orgs', { slug: slugOf('csrf'), name: 'x' }],
      ['PATCH', `/api/orgs/${orgB}`, { monthlyBudgetUsd: 5 }],
      ['POST', `/api/orgs/${orgB}/members`, { login: 'someone' }],
      ['PATCH', `/api/orgs/${orgB}/members/${bobUser.login}`, { role: 'member' }],
      ['DELETE', `/api/orgs/${orgB}/members/${bobUser.login}`],
      ['POST', `/api/orgs/${orgB}/keys`, { name: 'x' }],
      ['PATCH', `/api/orgs/${orgB}/keys/${keyB.id}`, { name: 'x' }],
      ['DELETE', `/api/orgs/${orgB}/keys/${keyB.id}`],
      ['POST', '/auth/logout'],
    ];
    for (const token of [undefined, 'wrong-token']) {
      for (const [method, path, body] of routes) {
        const headers: Record<string, string> = token ? { 'x-csrf-token': token } : {};
        const res = await bob.fetch(path, { method, json: body, headers });
        expect({ token, method, path, status: res.status }).toEqual({ token, method, path, status: 403 });
      }
      for (const path of [`/orgs/${orgB}/keys`, `/orgs/${orgB}/keys/${keyB.id}/revoke`, `/orgs/${orgB}/budget`, '/orgs']) {
        const form: Record<string, string> = { name: 'x', slug: slugOf('f'), monthlyBudgetUsd: '5' };
        if (token) form._csrf = token;
        expect({ path, status: (await bob.fetch(path, { method: 'POST', form })).status }).toEqual({ path, status: 403 });
      }
    }
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

  it('key settings: PATCH changes limits and allowed models; DELETE revokes and the key stays listed as revoked', async () => {
    const k = await j(bob.api('POST', `/api/orgs/${orgB}/keys`, { name: 'patchme', allowedModels: [CHAT_MODEL], rpmLimit: 5 }));
    expect(k).toMatchObject({ allowedModels: [CHAT_MODEL], rpmLimit: 5, tpmLimit: null });
    const patched = await j(bob.api('PATCH', `/api/orgs/${orgB}/keys/${k.id}`, { rpmLimit: null, tpmLimit: 1000, name: 'patched' }));
    expect(patched).toMatchObject({ name: 'patched', rpmLimit: null, tpmLimit: 1000, allowedModels: [CHAT_MODEL] });
    const revoked = await j(bob.api('DELETE', `/api/orgs/${orgB}/keys/${k.id}`));
    expect(revoked.revokedAt).toEqual(expect.any(String));
    const list = await j(bob.fetch(`/api/orgs/${orgB}/keys`));
    expect(list.find((x: { id: string }) => x.id === k.id).revokedAt).toBe(revoked.revokedAt);
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
