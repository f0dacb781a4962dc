import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEMO_LABEL, startFakeGitHub, type FakeGitHub, type FakeGitHubUser } from './fake-github';
import { s256 } from '../../../apps/demo-idp/src/oauth-grants';

// passport and passport-github2 ship no types and this tree has no @types for them; these are the shapes used here.
interface GitHubProfile {
  provider: string;
  id: string;
  username: string;
  displayName?: string;
  profileUrl?: string;
  emails?: { value: string }[];
  photos?: { value: string }[];
  _json: Record<string, unknown>;
}
type VerifyDone = (err: Error | null, user?: unknown, info?: unknown) => void;
type Verify = (accessToken: string, refreshToken: string | undefined, profile: GitHubProfile, done: VerifyDone) => void;
type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;
interface PassportInstance {
  use(strategy: unknown): void;
  initialize(): Middleware;
  authenticate(name: string, options: object, callback?: (err: unknown, user: unknown, info: unknown) => void): Middleware;
}
const { Passport } = require('passport') as { Passport: new () => PassportInstance };
const { Strategy: GitHubStrategy } = require('passport-github2') as { Strategy: new (options: object, verify: Verify) => unknown };

const ALICE: FakeGitHubUser = {
  id: 583231,
  login: 'octocat',
  name: 'The Octocat',
  email: 'octocat@github.com',
  emails: [
    { email: 'octocat@users.noreply.github.com', primary: false, verified: true, visibility: null },
    { email: 'octocat@github.com', primary: true, verified: true, visibility: 'public' },
  ],
};
const BOB: FakeGitHubUser = { id: 9_919, login: 'hubot', name: 'Hubot', email: null, emails: [{ email: 'hubot@example.com', primary: true, verified: true, visibility: 'private' }] };
const SCOPE = ['read:user', 'user:email'];

/** What the consumer app's callback route answers: passport's outcome, as JSON. */
interface CallbackOutcome {
  user: { id: string; login: string } | false | null;
  info: { message?: string; state?: unknown } | null;
  error: { name: string; message: string; code?: string; status?: number; data?: string } | null;
}

interface Verified {
  accessToken: string;
  profile: GitHubProfile;
}

/**
 * A tiny consumer app: node:http, passport.initialize() and passport.authenticate('github') on
 * /auth/github and /auth/github/callback, an in-memory session per `sid` cookie, and req.query parsed by hand.
 * The callback route reports passport's (err, user, info) as JSON.
 */
class ConsumerApp {
  readonly verified: Verified[] = [];
  readonly sessions = new Map<string, Record<string, unknown>>();
  url = '';
  private server: Server | undefined;

  constructor(
    private readonly fake: FakeGitHub,
    private readonly strategyOptions: object = {},
  ) {}

  get callbackUrl(): string {
    return `${this.url}/auth/github/callback`;
  }

  async start(): Promise<this> {
    const passport = new Passport();
    const server = createServer((req, res) => this.handle(passport, req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    passport.use(
      new GitHubStrategy(
        { ...this.fake.strategyOptions, callbackURL: this.callbackUrl, scope: SCOPE, state: true, ...this.strategyOptions },
        (accessToken, _refreshToken, profile, done) => {
          this.verified.push({ accessToken, profile });
          done(null, { id: profile.id, login: profile.username });
        },
      ),
    );
    return this;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private handle(passport: PassportInstance, req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    let sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    if (!sid || !this.sessions.has(sid)) {
      sid = randomBytes(12).toString('hex');
      this.sessions.set(sid, {});
      res.setHeader('Set-Cookie', `sid=${sid}; Path=/; HttpOnly`);
    }
    Object.assign(req, { query: Object.fromEntries(url.searchParams), session: this.sessions.get(sid) });
    const fail = (err: unknown): void => {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(err));
    };
    passport.initialize()(req, res, (err) => {
      if (err) return fail(err);
      if (url.pathname === '/auth/github') {
        passport.authenticate('github', { session: false })(req, res, fail);
      } else if (url.pathname === '/auth/github/callback') {
        passport.authenticate('github', { session: false }, (error, user, info) => {
          const e = error as (Error & { code?: string; oauthError?: { statusCode?: number; data?: string } }) | null;
          const outcome: CallbackOutcome = {
            user: (user as CallbackOutcome['user']) ?? null,
            info: (info as CallbackOutcome['info']) ?? null,
            error: e ? { name: e.name, message: e.message, code: e.code, status: e.oauthError?.statusCode, data: e.oauthError?.data } : null,
          };
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(outcome));
        })(req, res, fail);
      } else {
        res.writeHead(404).end();
      }
    });
  }
}

function location(res: Response): URL {
  expect(res.status).toBe(302);
  const loc = res.headers.get('location');
  if (!loc) throw new Error('302 without Location');
  return new URL(loc);
}

/** Step 1: the app sends the browser to the authorize URL (and sets its session cookie). */
async function begin(app: ConsumerApp): Promise<{ cookie: string; authorize: URL }> {
  const res = await fetch(`${app.url}/auth/github`, { redirect: 'manual' });
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0];
  return { cookie, authorize: location(res) };
}

/** Step 3: the browser lands on the app's callback; passport exchanges the code. */
async function callback(cookie: string, to: URL): Promise<CallbackOutcome> {
  const res = await fetch(to, { headers: { cookie }, redirect: 'manual' });
  expect(res.status).toBe(200);
  return (await res.json()) as CallbackOutcome;
}

/** The whole flow with an auto-approving fake. */
async function signIn(app: ConsumerApp): Promise<{ authorize: URL; back: URL; outcome: CallbackOutcome }> {
  const { cookie, authorize } = await begin(app);
  const back = location(await fetch(authorize, { redirect: 'manual' }));
  return { authorize, back, outcome: await callback(cookie, back) };
}

const CALLBACK = 'http://127.0.0.1:9/cb';

/** An authorize request made by hand, auto-approved: the code it yields. */
async function codeFrom(fake: FakeGitHub, extra: Record<string, string> = {}): Promise<string> {
  const q = new URLSearchParams({ client_id: fake.clientId, redirect_uri: CALLBACK, scope: SCOPE.join(','), state: 's1', ...extra });
  const code = location(await fetch(`${fake.authorizeUrl}?${q}`, { redirect: 'manual' })).searchParams.get('code');
  if (!code) throw new Error('no code');
  return code;
}

async function postToken(fake: FakeGitHub, fields: Record<string, string>, accept?: string): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
  if (accept) headers.Accept = accept;
  const res = await fetch(fake.tokenUrl, { method: 'POST', headers, body: new URLSearchParams(fields) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

function exchangeFields(fake: FakeGitHub, code: string, extra: Record<string, string> = {}): Record<string, string> {
  return { client_id: fake.clientId, client_secret: fake.clientSecret, code, redirect_uri: CALLBACK, ...extra };
}

describe('fake GitHub driven by the real passport-github2 strategy', () => {
  let fake: FakeGitHub;
  let app: ConsumerApp;

  beforeAll(async () => {
    fake = await startFakeGitHub({ users: [ALICE, BOB], autoApprove: true, clientId: 'Iv1.testclient', clientSecret: 'test-secret' });
    app = await new ConsumerApp(fake).start();
  });
  afterAll(async () => {
    await app.close();
    await fake.close();
  });

  it('signs in: GitHub-shaped authorize URL, state round-trips, profile carries the numeric id, login and primary email', async () => {
    const { authorize, back, outcome } = await signIn(app);

    expect(`${authorize.origin}${authorize.pathname}`).toBe(fake.authorizeUrl);
    expect(authorize.searchParams.get('client_id')).toBe('Iv1.testclient');
    expect(authorize.searchParams.get('redirect_uri')).toBe(app.callbackUrl);
    expect(authorize.searchParams.get('scope')).toBe('read:user,user:email');
    const state = authorize.searchParams.get('state');
    expect(state).toMatch(/^\S{24}$/);
    expect(back.searchParams.get('state')).toBe(state);
    expect(back.searchParams.get('code')).toMatch(/^[0-9a-f]{20}$/);

    expect(outcome.error).toBeNull();
    expect(outcome.user).toEqual({ id: '583231', login: 'octocat' });
    const { profile, accessToken } = app.verified.at(-1) as Verified;
    expect(accessToken).toMatch(/^gho_[A-Za-z0-9]{36}$/);
    expect(profile.provider).toBe('github');
    expect(profile._json.id).toBe(583231);
    expect(profile._json.type).toBe('User');
    expect(profile.username).toBe('octocat');
    expect(profile.displayName).toBe('The Octocat');
    expect(profile.emails).toEqual([{ value: 'octocat@github.com' }]);
    expect(profile.photos?.[0].value).toBe(`${fake.url}/avatars/u/583231?v=4`);

    // passport-oauth2 sent no Accept header, so the fake answered form-encoded, GitHub's default.
    const tokenCall = fake.requests.filter((r) => r.endpoint === 'token').at(-1);
    expect(tokenCall?.headers.accept).toBeUndefined();
    expect(tokenCall?.body).toMatchObject({ grant_type: 'authorization_code', client_id: 'Iv1.testclient', redirect_uri: app.callbackUrl });
    const userCall = fake.requests.filter((r) => r.endpoint === 'user').at(-1);
    expect(userCall?.headers.authorization).toBe(`Bearer ${accessToken}`);
    expect(userCall?.headers['user-agent']).toBe('passport-github');
  });

  it('refuses a callback whose state was tampered with (passport, not the fake, checks it)', async () => {
    const { cookie, authorize } = await begin(app);
    const back = location(await fetch(authorize, { redirect: 'manual' }));
    back.searchParams.set('state', 'forged');
    const outcome = await callback(cookie, back);
    expect(outcome.user).toBe(false);
    expect(outcome.info).toEqual({ message: 'Invalid authorization request state.' });
  });

  it('answers Cancel with GitHub exact access_denied parameters, which passport turns into a failure', async () => {
    fake.setNextDecision('deny');
    const { cookie, authorize } = await begin(app);
    const back = location(await fetch(authorize, { redirect: 'manual' }));
    expect(`${back.origin}${back.pathname}`).toBe(app.callbackUrl);
    expect([...back.searchParams.keys()]).toEqual(['error', 'error_description', 'error_uri', 'state']);
    expect(back.searchParams.get('error')).toBe('access_denied');
    expect(back.search).toContain('error_description=The+user+has+denied+your+application+access.');
    expect(back.searchParams.get('error_uri')).toBe('https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied');
    expect(back.searchParams.get('state')).toBe(authorize.searchParams.get('state'));

    const outcome = await callback(cookie, back);
    expect(outcome.user).toBe(false);
    expect(outcome.info).toEqual({ message: 'The user has denied your application access.' });
    // the decision was one-shot
    expect((await signIn(app)).outcome.user).toEqual({ id: '583231', login: 'octocat' });
  });

  it('spends a code once: the second exchange gets bad_verification_code with HTTP 200', async () => {
    const { back, outcome } = await signIn(app);
    expect(outcome.error).toBeNull();
    const code = back.searchParams.get('code') as string;
    const again = await postToken(fake, { client_id: fake.clientId, client_secret: fake.clientSecret, code, redirect_uri: app.callbackUrl }, 'application/json');
    expect(again.status).toBe(200);
    expect(JSON.parse(again.text)).toEqual({
      error: 'bad_verification_code',
      error_description: 'The code passed is incorrect or expired.',
      error_uri: 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code',
    });
  });

  it('refuses a wrong client secret: incorrect_client_credentials, and passport fails to obtain a token', async () => {
    const wrong = await new ConsumerApp(fake, { clientSecret: 'not-the-secret' }).start();
    try {
      const { outcome } = await signIn(wrong);
      expect(outcome.user).toBeNull();
      expect(outcome.error?.message).toBe('Failed to obtain access token');
      expect(wrong.verified).toHaveLength(0);
    } finally {
      await wrong.close();
    }
    const direct = await postToken(fake, exchangeFields(fake, await codeFrom(fake), { client_secret: 'nope' }), 'application/json');
    expect(direct.status).toBe(200);
    expect(JSON.parse(direct.text)).toMatchObject({ error: 'incorrect_client_credentials', error_description: 'The client_id and/or client_secret passed are incorrect.' });
  });

  it('parses JSON token responses too (Accept: application/json through passport)', async () => {
    const jsonApp = await new ConsumerApp(fake, { customHeaders: { Accept: 'application/json' } }).start();
    try {
      const { outcome } = await signIn(jsonApp);
      expect(outcome.error).toBeNull();
      expect(outcome.user).toEqual({ id: '583231', login: 'octocat' });
      expect(fake.requests.filter((r) => r.endpoint === 'token').at(-1)?.headers.accept).toBe('application/json');
    } finally {
      await jsonApp.close();
    }
  });

  it('does PKCE with passport (pkce: true): S256 challenge at authorize, verifier at the token endpoint', async () => {
    const pkceApp = await new ConsumerApp(fake, { pkce: true }).start();
    try {
      const { authorize, outcome } = await signIn(pkceApp);
      expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
      const challenge = authorize.searchParams.get('code_challenge') as string;
      expect(challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(outcome.error).toBeNull();
      expect(outcome.user).toEqual({ id: '583231', login: 'octocat' });
      const verifier = fake.requests.filter((r) => r.endpoint === 'token').at(-1)?.body?.code_verifier as string;
      expect(s256(verifier)).toBe(challenge);
    } finally {
      await pkceApp.close();
    }
  });

  it('refuses a wrong or missing PKCE verifier, and accepts the right one', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const pkce = { code_challenge: s256(verifier), code_challenge_method: 'S256' };
    const wrongOrMissing: Record<string, string>[] = [{ code_verifier: 'x'.repeat(43) }, {}];
    for (const bad of wrongOrMissing) {
      const res = await postToken(fake, exchangeFields(fake, await codeFrom(fake, pkce), bad), 'application/json');
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text)).toMatchObject({ error: 'bad_verification_code' });
    }
    const good = await postToken(fake, exchangeFields(fake, await codeFrom(fake, pkce), { code_verifier: verifier }), 'application/json');
    expect(JSON.parse(good.text)).toMatchObject({ token_type: 'bearer', access_token: expect.stringMatching(/^gho_/) });
  });

  it('encodes the token response by Accept: JSON, form (default) and XML', async () => {
    const json = await postToken(fake, exchangeFields(fake, await codeFrom(fake)), 'application/json');
    expect(json.type).toBe('application/json; charset=utf-8');
    const j = JSON.parse(json.text) as Record<string, string>;
    expect(Object.keys(j)).toEqual(['access_token', 'token_type', 'scope']);
    expect(j).toMatchObject({ token_type: 'bearer', scope: 'read:user,user:email' });

    const form = await postToken(fake, exchangeFields(fake, await codeFrom(fake)));
    expect(form.type).toBe('application/x-www-form-urlencoded; charset=utf-8');
    expect(form.text).toMatch(/^access_token=gho_[A-Za-z0-9]{36}&scope=read%3Auser%2Cuser%3Aemail&token_type=bearer$/);

    const formError = await postToken(fake, exchangeFields(fake, 'nope'));
    expect(formError.text).toBe(
      'error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired.&error_uri=https%3A%2F%2Fdocs.github.com%2Fapps%2Fmanaging-oauth-apps%2Ftroubleshooting-oauth-app-access-token-request-errors%2F%23bad-verification-code',
    );

    const xml = await postToken(fake, exchangeFields(fake, await codeFrom(fake)), 'application/xml');
    expect(xml.text).toMatch(/^<OAuth><access_token>gho_\w{36}<\/access_token><token_type>bearer<\/token_type><scope>read:user,user:email<\/scope><\/OAuth>$/);
  });

  it('takes a JSON body at the token endpoint', async () => {
    const res = await fetch(fake.tokenUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(exchangeFields(fake, await codeFrom(fake))),
    });
    expect(await res.json()).toMatchObject({ token_type: 'bearer', scope: 'read:user,user:email' });
  });

  it('binds a code to its redirect_uri: another one gets redirect_uri_mismatch', async () => {
    const res = await postToken(fake, exchangeFields(fake, await codeFrom(fake), { redirect_uri: 'http://127.0.0.1:9/elsewhere' }), 'application/json');
    expect(JSON.parse(res.text)).toEqual({
      error: 'redirect_uri_mismatch',
      error_description: 'The redirect_uri MUST match the registered callback URL for this application.',
      error_uri: 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch2',
    });
  });

  it('serves /user and /user/emails as GitHub does, and 401 Bad credentials for a bad token', async () => {
    const { access_token: token } = JSON.parse((await postToken(fake, exchangeFields(fake, await codeFrom(fake, { login: 'hubot' })), 'application/json')).text) as { access_token: string };

    const user = await fetch(fake.userProfileUrl, { headers: { Authorization: `token ${token}` } });
    expect(user.status).toBe(200);
    expect(user.headers.get('x-oauth-scopes')).toBe('read:user, user:email');
    expect(await user.json()).toMatchObject({ id: 9919, login: 'hubot', name: 'Hubot', email: null, type: 'User', site_admin: false, node_id: 'MDQ6VXNlcjk5MTk=' });

    const emails = await fetch(fake.userEmailUrl, { headers: { Authorization: `Bearer ${token}` } });
    expect(await emails.json()).toEqual([{ email: 'hubot@example.com', primary: true, verified: true, visibility: 'private' }]);

    const bad = await fetch(fake.userProfileUrl, { headers: { Authorization: 'Bearer gho_000000000000000000000000000000000000' } });
    expect(bad.status).toBe(401);
    expect(await bad.json()).toEqual({ message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });

    const none = await fetch(fake.userProfileUrl);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ message: 'Requires authentication' });
  });

  it('hides /user/emails (404) from a token without the user or user:email scope', async () => {
    const { access_token: token } = JSON.parse((await postToken(fake, exchangeFields(fake, await codeFrom(fake, { scope: 'read:user' })), 'application/json')).text) as { access_token: string };
    const res = await fetch(fake.userEmailUrl, { headers: { Authorization: `token ${token}` } });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ message: 'Not Found' });
  });

  it('answers an unknown client_id with a 404 page, not a redirect', async () => {
    const res = await fetch(`${fake.authorizeUrl}?client_id=nobody&redirect_uri=${encodeURIComponent(CALLBACK)}`, { redirect: 'manual' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await res.text()).toContain(DEMO_LABEL);
  });

  it('auto-approves as the user named by a login hint', async () => {
    const res = await postToken(fake, exchangeFields(fake, await codeFrom(fake, { login: 'HUBOT' })), 'application/json');
    const { access_token: token } = JSON.parse(res.text) as { access_token: string };
    const user = (await (await fetch(fake.userProfileUrl, { headers: { Authorization: `token ${token}` } })).json()) as { id: number };
    expect(user.id).toBe(9919);
  });

  describe('faults', () => {
    it('a token endpoint 500 fails one sign-in; the next one works', async () => {
      fake.faults.tokenError();
      const failed = await signIn(app);
      expect(failed.outcome.error).toMatchObject({ name: 'InternalOAuthError', message: 'Failed to obtain access token', status: 500 });
      expect(fake.faults.pending).toHaveLength(0);
      expect((await signIn(app)).outcome.user).toEqual({ id: '583231', login: 'octocat' });
    });

    it('a /user 500 fails one sign-in at the profile step', async () => {
      fake.faults.userError();
      const failed = await signIn(app);
      expect(failed.outcome.error).toMatchObject({ name: 'InternalOAuthError', message: 'Failed to fetch user profile', status: 500 });
      expect((await signIn(app)).outcome.user).toEqual({ id: '583231', login: 'octocat' });
    });

    it('a slow endpoint outlasts a client timeout; a dropped connection fails the request', async () => {
      fake.faults.slow(5_000, 'user');
      await expect(fetch(fake.userProfileUrl, { signal: AbortSignal.timeout(100) })).rejects.toThrow();
      fake.faults.enqueue({ kind: 'drop', endpoint: 'token' });
      await expect(fetch(fake.tokenUrl, { method: 'POST' })).rejects.toThrow('fetch failed');
      expect(fake.faults.pending).toHaveLength(0);
    });
  });
});

describe('fake GitHub consent page (the demo identity provider)', () => {
  let fake: FakeGitHub;

  beforeAll(async () => {
    fake = await startFakeGitHub({ users: [ALICE, BOB] });
  });
  afterAll(async () => {
    await fake.close();
  });

  async function consent(state = 'st-1'): Promise<{ html: string; handle: string }> {
    const q = new URLSearchParams({ client_id: fake.clientId, redirect_uri: CALLBACK, scope: 'read:user,user:email', state });
    const res = await fetch(`${fake.authorizeUrl}?${q}`, { redirect: 'manual' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    const handle = /name="authorization_request" value="([0-9a-f]+)"/.exec(html)?.[1];
    if (!handle) throw new Error('no authorization_request in the page');
    return { html, handle };
  }

  function answer(fields: Record<string, string>): Promise<Response> {
    return fetch(fake.authorizeUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
      redirect: 'manual',
    });
  }

  it('is an HTML page labelled as the demo provider, with a form per user and a Cancel form, no script', async () => {
    const { html } = await consent();
    expect(html).toMatch(/^<!doctype html>\n<html lang="en">/);
    expect(html).toContain('Local demo identity provider (not GitHub)');
    expect(html).not.toMatch(/<script/i);
    const forms = html.match(/<form method="post" action="\/login\/oauth\/authorize">/g) ?? [];
    expect(forms).toHaveLength(3);
    expect(html).toContain('<button type="submit" class="approve" name="decision" value="approve">Authorize as The Octocat (@octocat)</button>');
    expect(html).toContain('<button type="submit" class="approve" name="decision" value="approve">Authorize as Hubot (@hubot)</button>');
    expect(html).toContain('<button type="submit" name="decision" value="deny">Cancel</button>');
    expect(html).toContain('<code>read:user</code>, <code>user:email</code>');
  });

  it('Authorize as a user redirects with a code for that user and the same state; the answer is single use', async () => {
    const { handle } = await consent('st-approve');
    const back = location(await answer({ authorization_request: handle, login: 'hubot', decision: 'approve' }));
    expect(`${back.origin}${back.pathname}`).toBe(CALLBACK);
    expect([...back.searchParams.keys()]).toEqual(['code', 'state']);
    expect(back.searchParams.get('state')).toBe('st-approve');

    const tok = await postToken(fake, exchangeFields(fake, back.searchParams.get('code') as string), 'application/json');
    const { access_token: token } = JSON.parse(tok.text) as { access_token: string };
    const user = (await (await fetch(fake.userProfileUrl, { headers: { Authorization: `token ${token}` } })).json()) as { id: number };
    expect(user.id).toBe(9919);

    const replay = await answer({ authorization_request: handle, login: 'hubot', decision: 'approve' });
    expect(replay.status).toBe(400);
  });

  it('Cancel redirects with access_denied and the state', async () => {
    const { handle } = await consent('st-cancel');
    const back = location(await answer({ authorization_request: handle, decision: 'deny' }));
    expect(back.searchParams.get('error')).toBe('access_denied');
    expect(back.searchParams.get('state')).toBe('st-cancel');
  });

  it('lists the login hint first, and shows users added later', async () => {
    fake.addUser({ id: 77, login: 'late-comer' });
    const q = new URLSearchParams({ client_id: fake.clientId, redirect_uri: CALLBACK, login: 'hubot' });
    const html = await (await fetch(`${fake.authorizeUrl}?${q}`)).text();
    expect(html.indexOf('@hubot')).toBeLessThan(html.indexOf('@octocat'));
    expect(html).toContain('Authorize as @late-comer');
  });
});

describe('fake GitHub codes and callback URL rules', () => {
  it('expires codes after ten minutes (driven clock)', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const fake = await startFakeGitHub({ autoApprove: true, now: () => now });
    try {
      const code = await codeFrom(fake);
      now += 10 * 60_000;
      const res = await postToken(fake, exchangeFields(fake, code), 'application/json');
      expect(JSON.parse(res.text)).toMatchObject({ error: 'bad_verification_code' });
      const fresh = await codeFrom(fake);
      now += 10 * 60_000 - 1;
      expect(JSON.parse((await postToken(fake, exchangeFields(fake, fresh), 'application/json')).text)).toMatchObject({ token_type: 'bearer' });
    } finally {
      await fake.close();
    }
  });

  it('with a registered callback URL: default redirect, subpaths and loopback ports allowed, others redirected with redirect_uri_mismatch', async () => {
    const fake = await startFakeGitHub({ autoApprove: true, callbackUrl: 'http://127.0.0.1:3000/auth/github/callback' });
    try {
      const go = async (redirect?: string): Promise<URL> => {
        const q = new URLSearchParams({ client_id: fake.clientId, state: 'z' });
        if (redirect) q.set('redirect_uri', redirect);
        return location(await fetch(`${fake.authorizeUrl}?${q}`, { redirect: 'manual' }));
      };
      expect((await go()).pathname).toBe('/auth/github/callback');
      expect((await go('http://127.0.0.1:4567/auth/github/callback/sub')).searchParams.has('code')).toBe(true);
      const bad = await go('http://evil.example/auth/github/callback');
      expect(bad.host).toBe('127.0.0.1:3000');
      expect(bad.searchParams.get('error')).toBe('redirect_uri_mismatch');
      expect(bad.searchParams.get('state')).toBe('z');
    } finally {
      await fake.close();
    }
  });

  it('defaults to demo credentials and demo users, and points passport-github2 at itself', async () => {
    const fake = await startFakeGitHub();
    try {
      expect(fake.strategyOptions).toEqual({
        clientID: 'demo-client-id',
        clientSecret: 'demo-client-secret',
        authorizationURL: `${fake.url}/login/oauth/authorize`,
        tokenURL: `${fake.url}/login/oauth/access_token`,
        userProfileURL: `${fake.url}/api/v3/user`,
        userEmailURL: `${fake.url}/api/v3/user/emails`,
      });
      const index = await (await fetch(fake.url)).text();
      expect(index).toContain(DEMO_LABEL);
      expect(fake.requests.at(-1)).toMatchObject({ method: 'GET', path: '/', status: 200 });
      const avatar = await fetch(`${fake.url}/avatars/u/90000001`);
      expect(avatar.headers.get('content-type')).toBe('image/svg+xml');
    } finally {
      await fake.close();
    }
  });
});
