import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { avatarSvg, consentPage, errorPage, indexPage } from './consent-page';
import { FaultQueue, type FakeGitHubEndpoint, type FakeGitHubFaults } from './fault-queue';
import {
  ACCESS_DENIED,
  AUTHORIZE_REDIRECT_URI_MISMATCH,
  BAD_CREDENTIALS,
  EMAILS_NOT_FOUND,
  NOT_FOUND,
  REQUIRES_AUTHENTICATION,
  SERVER_ERROR,
  authenticatedUserJson,
  canReadEmails,
  emailsJson,
  encodeTokenEndpointBody,
  parseScopes,
  type OAuthErrorBody,
  type UserRecord,
} from './github-wire';
import { OAuthGrants, type AuthorizationRequest } from './oauth-grants';

export type { FakeGitHubEndpoint, FakeGitHubFault, FakeGitHubFaults } from './fault-queue';
export { DEMO_LABEL } from './consent-page';

/** A GitHub account the fake can sign in as. */
/**
 * A fake account: GitHub's numeric `id` (the stable identity; logins can be renamed), `login`, and the
 * public `email` shown on /user (null or absent when private, as on GitHub); `emails` is what /user/emails
 * lists (default: `email` as the primary address, or a noreply address).
 */
export type FakeGitHubUser = UserRecord;

export interface FakeGitHubOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Interface to listen on; 127.0.0.1 by default. */
  host?: string;
  /** The one OAuth app the fake knows; 'demo-client-id' by default. */
  clientId?: string;
  /** Its secret; 'demo-client-secret' by default. */
  clientSecret?: string;
  /** Accounts to offer; DEMO_USERS by default. */
  users?: FakeGitHubUser[];
  /** Approve at once, without the consent page (as GitHub does for an app the user already authorized). */
  autoApprove?: boolean;
  /**
   * The app's registered callback URL. When set, GitHub's rules apply: redirect_uri may be left out, and a
   * given one must have the same host and port (any port on loopback) and a path at or under this one.
   * When unset, any absolute http(s) redirect_uri is accepted.
   */
  callbackUrl?: string;
  /** Clock in epoch ms, for code expiry; Date.now by default. */
  now?: () => number;
}

/** One request the fake received. */
export interface FakeGitHubRequest {
  endpoint: FakeGitHubEndpoint | 'other';
  method: string;
  /** Path without the query string. */
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** Parsed form or JSON body, for POSTs. */
  body: Record<string, string> | undefined;
  /** Status answered; undefined while in flight or when dropped. */
  status: number | undefined;
}

/** The passport-github2 options that point a Strategy at a fake (add callbackURL and scope). */
export interface GitHubStrategyUrls {
  clientID: string;
  clientSecret: string;
  authorizationURL: string;
  tokenURL: string;
  userProfileURL: string;
  userEmailURL: string;
}

export interface FakeGitHub {
  /** Web root, GitHub's https://github.com: e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** `${url}/login/oauth/authorize` */
  readonly authorizeUrl: string;
  /** `${url}/login/oauth/access_token` */
  readonly tokenUrl: string;
  /** REST API root, GitHub's https://api.github.com: `${url}/api/v3` (GitHub Enterprise Server's layout). */
  readonly apiUrl: string;
  /** `${apiUrl}/user` */
  readonly userProfileUrl: string;
  /** `${apiUrl}/user/emails` */
  readonly userEmailUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Spread into `new GitHubStrategy({...fake.strategyOptions, callbackURL, scope}, verify)`. */
  readonly strategyOptions: GitHubStrategyUrls;
  /** Adds an account, or replaces the one with the same id. */
  addUser(user: FakeGitHubUser): void;
  /** Decides the next authorize request without the consent page (a one-shot override of autoApprove). */
  setNextDecision(decision: 'approve' | 'deny'): void;
  readonly faults: FakeGitHubFaults;
  /** Every request received, oldest first. */
  readonly requests: readonly FakeGitHubRequest[];
  close(): Promise<void>;
}

/** The accounts offered when none are given: ids far from real early GitHub ids, example.com addresses. */
export const DEMO_USERS: readonly FakeGitHubUser[] = [
  { id: 90_000_001, login: 'demo-owner', name: 'Demo Owner', email: 'demo-owner@example.com' },
  { id: 90_000_002, login: 'demo-teammate', name: 'Demo Teammate', email: null, emails: [{ email: 'demo-teammate@example.com', primary: true, verified: true, visibility: 'private' }] },
];

const API_PREFIX = '/api/v3';
const AUTHORIZE_PATH = '/login/oauth/authorize';
const TOKEN_PATH = '/login/oauth/access_token';
const MAX_BODY_BYTES = 1 << 20;

class BodyTooLarge extends Error {}

function validateUser(u: FakeGitHubUser): UserRecord {
  if (!Number.isSafeInteger(u.id) || u.id <= 0) throw new TypeError(`fake GitHub user id must be a positive integer, got ${String(u.id)}`);
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/.test(u.login)) throw new TypeError(`fake GitHub login is not a GitHub login: ${JSON.stringify(u.login)}`);
  return { ...u, emails: u.emails?.map((e) => ({ ...e })) };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BodyTooLarge('request body over 1 MiB'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Form or JSON body into string fields (non-string JSON values are dropped, as a form could not carry them). */
function parseBody(raw: string, contentType: string | undefined): Record<string, string> {
  if ((contentType ?? '').toLowerCase().includes('application/json')) {
    const out: Record<string, string> = {};
    if (raw.trim() === '') return out;
    const json: unknown = JSON.parse(raw);
    if (json && typeof json === 'object' && !Array.isArray(json)) {
      for (const [k, v] of Object.entries(json)) if (typeof v === 'string') out[k] = v;
    }
    return out;
  }
  return Object.fromEntries(new URLSearchParams(raw));
}

/** Client credentials from `Authorization: Basic`, which RFC 6749 clients may use instead of body fields. */
function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  return { id: decodeURIComponent(decoded.slice(0, i)), secret: decodeURIComponent(decoded.slice(i + 1)) };
}

function bearerToken(header: string | undefined): string | undefined {
  const m = /^(?:token|bearer)\s+(\S+)\s*$/i.exec(header ?? '');
  return m ? m[1] : undefined;
}

const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** GitHub's redirect_uri rule against the registered callback URL. */
function redirectUriAllowed(registered: URL, given: URL): boolean {
  if (given.protocol !== registered.protocol || given.hostname !== registered.hostname) return false;
  if (!LOOPBACK.has(given.hostname) && given.port !== registered.port) return false;
  const base = registered.pathname.endsWith('/') ? registered.pathname : `${registered.pathname}/`;
  return given.pathname === registered.pathname || given.pathname.startsWith(base);
}

function absoluteHttpUrl(s: string): URL | undefined {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : undefined;
  } catch {
    return undefined;
  }
}

function withParams(base: string, params: Record<string, string | undefined>): string {
  const u = new URL(base);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.append(k, v);
  return u.toString();
}

function endpointOf(method: string, path: string): FakeGitHubEndpoint | 'other' {
  if (path === AUTHORIZE_PATH && (method === 'GET' || method === 'POST')) return 'authorize';
  if (path === TOKEN_PATH && method === 'POST') return 'token';
  if (path === `${API_PREFIX}/user` && method === 'GET') return 'user';
  if (path === `${API_PREFIX}/user/emails` && method === 'GET') return 'emails';
  return 'other';
}

class FakeGitHubServer implements FakeGitHub {
  readonly url: string;
  readonly authorizeUrl: string;
  readonly tokenUrl: string;
  readonly apiUrl: string;
  readonly userProfileUrl: string;
  readonly userEmailUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly strategyOptions: GitHubStrategyUrls;
  readonly faults = new FaultQueue();
  readonly requests: FakeGitHubRequest[] = [];

  private readonly users = new Map<number, UserRecord>();
  private readonly grants: OAuthGrants;
  private readonly autoApprove: boolean;
  private readonly callbackUrl: URL | undefined;
  private nextDecision: 'approve' | 'deny' | undefined;
  private readonly waits = new Set<{ timer: NodeJS.Timeout; done: () => void }>();

  constructor(
    private readonly server: Server,
    origin: string,
    opts: FakeGitHubOptions,
  ) {
    this.url = origin;
    this.authorizeUrl = `${origin}${AUTHORIZE_PATH}`;
    this.tokenUrl = `${origin}${TOKEN_PATH}`;
    this.apiUrl = `${origin}${API_PREFIX}`;
    this.userProfileUrl = `${this.apiUrl}/user`;
    this.userEmailUrl = `${this.apiUrl}/user/emails`;
    this.clientId = opts.clientId ?? 'demo-client-id';
    this.clientSecret = opts.clientSecret ?? 'demo-client-secret';
    this.strategyOptions = {
      clientID: this.clientId,
      clientSecret: this.clientSecret,
      authorizationURL: this.authorizeUrl,
      tokenURL: this.tokenUrl,
      userProfileURL: this.userProfileUrl,
      userEmailURL: this.userEmailUrl,
    };
    this.autoApprove = opts.autoApprove ?? false;
    if (opts.callbackUrl !== undefined) {
      this.callbackUrl = absoluteHttpUrl(opts.callbackUrl);
      if (!this.callbackUrl) throw new TypeError(`callbackUrl must be an absolute http(s) URL, got ${opts.callbackUrl}`);
    }
    this.grants = new OAuthGrants({ id: this.clientId, secret: this.clientSecret }, opts.now ?? Date.now);
    for (const u of opts.users ?? DEMO_USERS) this.addUser(u);
  }

  addUser(user: FakeGitHubUser): void {
    const record = validateUser(user);
    this.users.set(record.id, record);
  }

  setNextDecision(decision: 'approve' | 'deny'): void {
    this.nextDecision = decision;
  }

  async close(): Promise<void> {
    for (const w of this.waits) {
      clearTimeout(w.timer);
      w.done();
    }
    this.waits.clear();
    const closed = new Promise<void>((resolve, reject) => this.server.close((err) => (err ? reject(err) : resolve())));
    this.server.closeAllConnections();
    await closed;
  }

  /** Entry point for every request. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const parsed = new URL(req.url ?? '/', this.url);
    const endpoint = endpointOf(method, parsed.pathname);
    const entry: FakeGitHubRequest = {
      endpoint,
      method,
      path: parsed.pathname,
      query: Object.fromEntries(parsed.searchParams),
      headers: req.headers,
      body: undefined,
      status: undefined,
    };
    this.requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });
    try {
      if (method === 'POST') {
        entry.body = parseBody(await readBody(req), req.headers['content-type']);
      }
      if (endpoint !== 'other') {
        const fault = this.faults.take(endpoint);
        if (fault?.kind === 'drop') {
          req.socket.destroy();
          return;
        }
        if (fault?.kind === 'error') {
          this.serverError(res, endpoint, fault.status ?? 500);
          return;
        }
        if (fault?.kind === 'slow' && !(await this.wait(fault.delayMs))) return;
      }
      this.route(endpoint, parsed, entry.body ?? {}, req, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy(err instanceof Error ? err : undefined);
        return;
      }
      if (err instanceof BodyTooLarge) {
        this.html(res, 413, errorPage('Payload Too Large', err.message));
      } else if (err instanceof SyntaxError) {
        this.html(res, 400, errorPage('Bad Request', `The request body is not valid JSON: ${err.message}`));
      } else {
        this.html(res, 500, errorPage('Server Error', err instanceof Error ? err.message : String(err)));
      }
    }
  }

  private route(endpoint: FakeGitHubEndpoint | 'other', url: URL, body: Record<string, string>, req: IncomingMessage, res: ServerResponse): void {
    switch (endpoint) {
      case 'authorize':
        if (req.method === 'POST') this.answerConsent(body, res);
        else this.authorize(url.searchParams, res);
        return;
      case 'token':
        this.token(url.searchParams, body, req, res);
        return;
      case 'user':
      case 'emails':
        this.api(endpoint, req, res);
        return;
      case 'other':
        this.other(url, req, res);
        return;
    }
  }

  /** GET /login/oauth/authorize */
  private authorize(q: URLSearchParams, res: ServerResponse): void {
    const clientId = q.get('client_id');
    if (clientId !== this.clientId) {
      // GitHub answers an unknown client_id with its 404 page, not with a redirect.
      this.html(res, 404, errorPage('Not Found', `No OAuth app with client_id ${JSON.stringify(clientId ?? '')} is registered here.`));
      return;
    }
    const state = q.get('state') ?? undefined;
    const givenRaw = q.get('redirect_uri') ?? undefined;
    const given = givenRaw === undefined ? undefined : absoluteHttpUrl(givenRaw);
    let redirectUri: string;
    if (this.callbackUrl) {
      if (givenRaw !== undefined && (!given || !redirectUriAllowed(this.callbackUrl, given))) {
        this.redirect(res, withParams(this.callbackUrl.toString(), { ...AUTHORIZE_REDIRECT_URI_MISMATCH, state }));
        return;
      }
      redirectUri = givenRaw ?? this.callbackUrl.toString();
    } else {
      if (!givenRaw || !given) {
        this.html(res, 400, errorPage('Bad Request', 'redirect_uri must be an absolute http(s) URL (this fake has no registered callback URL to fall back on).'));
        return;
      }
      redirectUri = givenRaw;
    }
    const codeChallenge = q.get('code_challenge') ?? undefined;
    const method = q.get('code_challenge_method') ?? undefined;
    if ((codeChallenge !== undefined || method !== undefined) && (method !== 'S256' || !codeChallenge)) {
      // GitHub accepts only S256; what it answers otherwise is not documented, so this fake stops here.
      this.html(res, 400, errorPage('Bad Request', 'PKCE needs code_challenge with code_challenge_method=S256 (the only method GitHub accepts).'));
      return;
    }
    const request: AuthorizationRequest = {
      clientId,
      redirectUri,
      scopes: parseScopes(q.get('scope') ?? undefined),
      state,
      codeChallenge,
      loginHint: q.get('login') ?? undefined,
    };
    const decision = this.nextDecision ?? (this.autoApprove ? 'approve' : undefined);
    if (decision === 'deny') {
      this.nextDecision = undefined;
      this.redirect(res, withParams(redirectUri, { ...ACCESS_DENIED, state }));
      return;
    }
    const user = this.defaultUser(request.loginHint);
    if (decision === 'approve' && user) {
      this.nextDecision = undefined;
      this.redirect(res, withParams(redirectUri, { code: this.grants.issueCode(request, user.id), state }));
      return;
    }
    const handle = this.grants.park(request);
    this.html(
      res,
      200,
      consentPage({ handle, clientId, redirectUri, scopes: request.scopes, users: [...this.users.values()], loginHint: request.loginHint }),
    );
  }

  /** POST /login/oauth/authorize: the consent page's Authorize or Cancel. */
  private answerConsent(body: Record<string, string>, res: ServerResponse): void {
    const request = this.grants.unpark(body.authorization_request ?? '');
    if (!request) {
      this.html(res, 400, errorPage('Request expired', 'This sign-in request has expired or was already answered. Go back to the application and start again.'));
      return;
    }
    if (body.decision !== 'approve') {
      this.redirect(res, withParams(request.redirectUri, { ...ACCESS_DENIED, state: request.state }));
      return;
    }
    const user = this.userByLogin(body.login ?? '');
    if (!user) {
      this.html(res, 400, errorPage('Unknown user', `There is no demo user ${JSON.stringify(body.login ?? '')}.`));
      return;
    }
    this.redirect(res, withParams(request.redirectUri, { code: this.grants.issueCode(request, user.id), state: request.state }));
  }

  /** POST /login/oauth/access_token */
  private token(query: URLSearchParams, body: Record<string, string>, req: IncomingMessage, res: ServerResponse): void {
    const param = (k: string): string | undefined => body[k] ?? query.get(k) ?? undefined;
    const basic = basicCredentials(req.headers.authorization);
    const result = this.grants.exchange({
      clientId: param('client_id') ?? basic?.id,
      clientSecret: param('client_secret') ?? basic?.secret,
      code: param('code'),
      redirectUri: param('redirect_uri'),
      codeVerifier: param('code_verifier'),
    });
    const fields: OAuthErrorBody | { access_token: string; token_type: 'bearer'; scope: string } = result.ok
      ? { access_token: result.token, token_type: 'bearer', scope: result.grant.scopes.join(',') }
      : result.error;
    // GitHub answers token errors with 200 too; the body says what went wrong.
    const { contentType, body: text } = encodeTokenEndpointBody(req.headers.accept, fields);
    res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
    res.end(text);
  }

  /** GET /api/v3/user and /api/v3/user/emails */
  private api(endpoint: 'user' | 'emails', req: IncomingMessage, res: ServerResponse): void {
    const token = bearerToken(req.headers.authorization);
    if (token === undefined) {
      this.json(res, 401, REQUIRES_AUTHENTICATION);
      return;
    }
    const grant = this.grants.tokenGrant(token);
    const user = grant ? this.users.get(grant.userId) : undefined;
    if (!grant || !user) {
      this.json(res, 401, BAD_CREDENTIALS);
      return;
    }
    const scopeHeaders = { 'X-OAuth-Scopes': grant.scopes.join(', '), 'X-Accepted-OAuth-Scopes': endpoint === 'emails' ? 'user, user:email' : '' };
    if (endpoint === 'user') {
      this.json(res, 200, authenticatedUserJson(user, this.apiUrl, this.url), scopeHeaders);
    } else if (!canReadEmails(grant.scopes)) {
      this.json(res, 404, EMAILS_NOT_FOUND, scopeHeaders);
    } else {
      this.json(res, 200, emailsJson(user), scopeHeaders);
    }
  }

  private other(url: URL, req: IncomingMessage, res: ServerResponse): void {
    const avatar = /^\/avatars\/u\/(\d+)$/.exec(url.pathname);
    if (req.method === 'GET' && avatar) {
      const user = this.users.get(Number(avatar[1]));
      if (user) {
        res.writeHead(200, { 'Content-Type': 'image/svg+xml', 'Cache-Control': 'max-age=300' });
        res.end(avatarSvg(user.login));
        return;
      }
    }
    if (req.method === 'GET' && url.pathname === '/') {
      this.html(res, 200, indexPage(this.apiUrl));
      return;
    }
    if (url.pathname === API_PREFIX || url.pathname.startsWith(`${API_PREFIX}/`)) {
      this.json(res, 404, NOT_FOUND);
      return;
    }
    this.html(res, 404, errorPage('Not Found', `Nothing at ${req.method ?? 'GET'} ${url.pathname} on this demo server.`));
  }

  private defaultUser(loginHint: string | undefined): UserRecord | undefined {
    if (loginHint !== undefined) return this.userByLogin(loginHint);
    return this.users.values().next().value;
  }

  private userByLogin(login: string): UserRecord | undefined {
    const wanted = login.toLowerCase();
    for (const u of this.users.values()) if (u.login.toLowerCase() === wanted) return u;
    return undefined;
  }

  private serverError(res: ServerResponse, endpoint: FakeGitHubEndpoint, status: number): void {
    if (endpoint === 'user' || endpoint === 'emails') this.json(res, status, SERVER_ERROR);
    else this.html(res, status, errorPage('Server Error', `Injected fault: HTTP ${status}.`));
  }

  /** Resolves true after `ms`, or false if the fake closes first. */
  private wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const w = {
        timer: setTimeout(() => {
          this.waits.delete(w);
          resolve(true);
        }, ms),
        done: () => resolve(false),
      };
      this.waits.add(w);
    });
  }

  private redirect(res: ServerResponse, location: string): void {
    res.writeHead(302, { Location: location, 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(`<html><body>You are being <a href="${location.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}">redirected</a>.</body></html>`);
  }

  private html(res: ServerResponse, status: number, body: string): void {
    res.writeHead(status, {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Frame-Options': 'deny',
      'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:",
    });
    res.end(body);
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'X-GitHub-Media-Type': 'github.v3; format=json', ...headers });
    res.end(JSON.stringify(body));
  }
}

/**
 * Starts a local fake of GitHub's OAuth web flow and REST user endpoints. Point passport-github2 at it with
 * `fake.strategyOptions` (authorizationURL, tokenURL, userProfileURL, userEmailURL, clientID, clientSecret).
 */
export async function startFakeGitHub(opts: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  const host = opts.host ?? '127.0.0.1';
  let fake: FakeGitHubServer | undefined;
  const server = createServer((req, res) => {
    if (!fake) {
      res.writeHead(503).end();
      return;
    }
    void fake.handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  // A wildcard bind is reached through loopback.
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const hostInUrl = reachable.includes(':') ? `[${reachable}]` : reachable;
  try {
    fake = new FakeGitHubServer(server, `http://${hostInUrl}:${port}`, opts);
  } catch (err) {
    server.close();
    throw err;
  }
  return fake;
}
