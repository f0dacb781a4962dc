import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoggerService } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { type AppConfig, loadConfig } from '@spot/config';
import { createConsoleApp } from '../../apps/console/src/console-app';
import { type FakeGitHub, type FakeGitHubUser, startFakeGitHub } from '../fakes/github/fake-github';
import { freePort } from './free-port';
import { tiersYaml } from './gateway-stack';

/** A browser, as far as the console can tell: a cookie jar and manual redirects. */
export class Browser {
  readonly cookies = new Map<string, string>();
  /** Set-Cookie headers of the last response. */
  lastSetCookies: string[] = [];
  csrfToken = '';

  constructor(readonly base: string) {}

  async fetch(pathOrUrl: string, init: RequestInit & { json?: unknown; form?: Record<string, string | string[]> } = {}): Promise<Response> {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : `${this.base}${pathOrUrl}`;
    const headers = new Headers(init.headers);
    if (new URL(url).origin === new URL(this.base).origin && this.cookies.size > 0) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    } else if (init.form !== undefined) {
      headers.set('content-type', 'application/x-www-form-urlencoded');
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(init.form)) for (const one of Array.isArray(v) ? v : [v]) p.append(k, one);
      body = p.toString();
    }
    const res = await fetch(url, { ...init, headers, body, redirect: 'manual' });
    this.lastSetCookies = res.headers.getSetCookie();
    for (const c of this.lastSetCookies) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  /** A JSON call with the session's CSRF token. */
  api(method: string, path: string, json?: unknown): Promise<Response> {
    return this.fetch(path, { method, json, headers: { 'x-csrf-token': this.csrfToken, accept: 'application/json' } });
  }
}

/** A route the console serves, as Fastify registered it (`/api/orgs/:org/keys/:id`). */
export interface ConsoleRoute {
  method: string;
  url: string;
}

export interface ConsoleStack {
  app: NestFastifyApplication;
  /** Every route the console registered (HEAD routes left out): tests walk them all. */
  routes: ConsoleRoute[];
  config: AppConfig;
  github: FakeGitHub;
  base: string;
  /** Goes through the whole OAuth dance as `user` in a new browser; returns it signed in, CSRF token read. */
  signIn(user: FakeGitHubUser): Promise<Browser>;
  close(): Promise<void>;
}

/** Follows the OAuth dance from the console's /auth/github to its callback; returns the callback's response. */
export async function oauthDance(browser: Browser, login: string): Promise<Response> {
  const start = await browser.fetch('/auth/github');
  if (start.status !== 302) throw new Error(`/auth/github answered ${start.status}`);
  const authorize = new URL(start.headers.get('location')!);
  authorize.searchParams.set('login', login);
  const atGitHub = await fetch(authorize, { redirect: 'manual' });
  const callback = atGitHub.headers.get('location');
  if (!callback) throw new Error(`the fake GitHub answered ${atGitHub.status} without a redirect`);
  const cb = new URL(callback);
  return browser.fetch(`${cb.pathname}${cb.search}`);
}

/**
 * The console in this process (random port; `consentPage`: the fake GitHub asks, as for a first sign-in) over the
 * real test Postgres and Redis, signing in at a fake GitHub. `logger` receives what the console logs (default: nothing).
 */
export async function startConsoleStack(env: Record<string, string> = {}, opts: { consentPage?: boolean; logger?: LoggerService } = {}): Promise<ConsoleStack> {
  const github = await startFakeGitHub({ autoApprove: !opts.consentPage });
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'console-stack-'));
  writeFileSync(join(dir, 'tiers.yaml'), tiersYaml('http://127.0.0.1:9'));
  const config = loadConfig({
    ...process.env,
    TIERS_FILE: join(dir, 'tiers.yaml'),
    REDIS_PREFIX: `test:${randomUUID()}:`,
    LOG_LEVEL: 'silent',
    GITHUB_CLIENT_ID: github.clientId,
    GITHUB_CLIENT_SECRET: github.clientSecret,
    GITHUB_AUTHORIZE_URL: github.authorizeUrl,
    GITHUB_TOKEN_URL: github.tokenUrl,
    GITHUB_API_URL: github.apiUrl,
    CONSOLE_PUBLIC_URL: `http://127.0.0.1:${port}`,
    ...env,
  });
  const app = await createConsoleApp(config, { logger: opts.logger ?? false });
  const routes: ConsoleRoute[] = [];
  // Nest registers its routes at init (inside listen), after this hook
  app.getHttpAdapter().getInstance().addHook('onRoute', (r: { method: string | string[]; url: string }) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD') routes.push({ method, url: r.url });
  });
  await app.listen(port, '127.0.0.1');
  const base = `http://127.0.0.1:${port}`;
  return {
    app,
    routes,
    config,
    github,
    base,
    async signIn(user) {
      github.addUser(user);
      const browser = new Browser(base);
      const res = await oauthDance(browser, user.login);
      if (res.status !== 303 || res.headers.get('location') !== '/orgs') throw new Error(`sign-in ended with ${res.status} ${res.headers.get('location')}`);
      const me = (await (await browser.fetch('/api/me')).json()) as { csrfToken: string };
      browser.csrfToken = me.csrfToken;
      return browser;
    },
    async close() {
      await app.close();
      await github.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;
/** A GitHub account unique to this run (ids far above real ones, logins that are valid GitHub logins). */
export function newGitHubUser(tag = 'u'): FakeGitHubUser {
  seq++;
  const id = 800_000_000 + Math.floor(Math.random() * 100_000_000) + seq;
  return { id, login: `${tag}-${id.toString(36)}`, name: `Test ${tag} ${seq}`, email: `${tag}${id}@example.com` };
}

/** One line a {@link CapturingLogger} received. */
export interface LoggedLine {
  level: 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';
  text: string;
}

/** A Nest logger that keeps every line (message, stack, context) for a test to read. */
export class CapturingLogger implements LoggerService {
  readonly lines: LoggedLine[] = [];
  log(message: unknown, ...rest: unknown[]): void {
    this.keep('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.keep('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.keep('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.keep('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.keep('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.keep('fatal', message, rest);
  }
  private keep(level: LoggedLine['level'], message: unknown, rest: unknown[]): void {
    const text = [message, ...rest].map((m) => (m instanceof Error ? (m.stack ?? m.message) : typeof m === 'string' ? m : JSON.stringify(m))).join(' ');
    this.lines.push({ level, text });
  }
}
