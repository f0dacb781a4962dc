import { randomBytes } from 'node:crypto';
import { Body, Controller, Get, Header, Inject, Param, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { REDIS, RedisKeys } from '@spot/redis';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Redis } from 'ioredis';
import type { ConsoleSession } from '../auth/console-session';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import { GitHubOAuthService, safeNext } from '../auth/github-oauth.service';
import { SessionGuard } from '../auth/session.guard';
import { SessionService } from '../auth/session.service';
import { invalid } from '../errors/console.errors';
import { ConsoleKeysService } from '../keys/console-keys.service';
import { createOrgSchema, inviteSchema, loginSchema, memberChangeSchema, parseBody } from '../orgs/orgs.dto';
import { OrgsService } from '../orgs/orgs.service';
import { UsageService } from '../usage/usage.service';
import { keyCreatedPage, keyGonePage, keyPage, keysPage, limitsPage, membersPage, orgsPage, revokePage, signInPage, usagePage } from './views';

const HTML = 'text/html; charset=utf-8';
const FLASH_TTL_S = 300;

type Form = Record<string, string | string[] | undefined>;

function text(form: Form, field: string): string | undefined {
  const v = form[field];
  return Array.isArray(v) ? v[0] : v;
}

/** An optional positive whole number from a form field: empty is null. */
function formNumber(form: Form, field: string): number | null {
  const v = text(form, field)?.trim() ?? '';
  if (v === '') return null;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw invalid(field, 'expected a positive whole number, or nothing');
  return n;
}

/**
 * Server-rendered pages over the same services as the JSON API. Forms POST with the session's CSRF token
 * and redirect (POST/redirect/GET), so the basic flows work without JavaScript.
 */
@Controller()
export class PagesController {
  private readonly gatewayUrl: string;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly sessions: SessionService,
    private readonly oauth: GitHubOAuthService,
    private readonly orgs: OrgsService,
    private readonly keys: ConsoleKeysService,
    private readonly usage: UsageService,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly redisKeys: RedisKeys,
  ) {
    this.gatewayUrl = `${config.GATEWAY_PUBLIC_URL.replace(/\/+$/, '')}/v1`;
  }

  @Get()
  async home(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const session = await this.sessions.current(req);
    void reply.status(303).header('location', session ? '/orgs' : '/signin').send();
  }

  /** The sign-in page; a browser already signed in goes on to `next` (or its orgs). */
  @Get('signin')
  async signIn(@Req() req: FastifyRequest, @Res() reply: FastifyReply, @Query() q: Record<string, string | undefined>): Promise<void> {
    const next = safeNext(q.next);
    if (!q.error && (await this.sessions.current(req)) !== null) {
      this.see(reply, next ?? '/orgs');
      return;
    }
    const page = signInPage({ error: q.error, next, signedOut: q.signedOut === '1', configured: this.oauth.configured, demo: this.oauth.demo });
    void reply.header('content-type', HTML).send(page);
  }

  @Get('orgs')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async orgList(@CurrentSession() s: ConsoleSession): Promise<string> {
    const orgs = await this.orgs.list(s.user);
    return orgsPage({ user: s.user, csrfToken: s.csrfToken, orgs }, orgs);
  }

  @Post('orgs')
  @UseGuards(SessionGuard, CsrfGuard)
  async createOrg(@CurrentSession() s: ConsoleSession, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    const org = await this.orgs.create(s.user, parseBody(createOrgSchema, { slug: text(form, 'slug'), name: text(form, 'name') }));
    this.see(reply, `/orgs/${org.slug}/keys`);
  }

  @Get('orgs/:org')
  @UseGuards(SessionGuard)
  async orgHome(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Res() reply: FastifyReply): Promise<void> {
    const org = await this.orgs.get(s.user, slug);
    this.see(reply, `/orgs/${org.slug}/keys`);
  }

  @Get('orgs/:org/keys')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async keysList(@CurrentSession() s: ConsoleSession, @Param('org') slug: string): Promise<string> {
    const ctx = await this.context(s, slug);
    return keysPage(ctx, await this.keys.list(s.user, slug), this.keys.modelIds(), this.gatewayUrl);
  }

  @Post('orgs/:org/keys')
  @UseGuards(SessionGuard, CsrfGuard)
  async createKey(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    const models = form.allowedModels === undefined ? [] : Array.isArray(form.allowedModels) ? form.allowedModels : [form.allowedModels];
    const days = formNumber(form, 'expiresInDays');
    const created = await this.keys.create(s.user, slug, {
      name: text(form, 'name'),
      allowedModels: models,
      rpmLimit: formNumber(form, 'rpmLimit'),
      tpmLimit: formNumber(form, 'tpmLimit'),
      expiresAt: days === null ? null : new Date(Date.now() + days * 86_400_000).toISOString(),
    });
    // the key is shown once, on the page this redirect leads to; the flash is bound to this session
    const flash = randomBytes(16).toString('base64url');
    await this.redis.set(this.flashKey(s, flash), JSON.stringify({ key: created.key, name: created.name }), 'EX', FLASH_TTL_S);
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/keys/created/${flash}`);
  }

  @Get('orgs/:org/keys/created/:flash')
  @UseGuards(SessionGuard)
  async keyCreated(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('flash') flash: string, @Res() reply: FastifyReply): Promise<void> {
    const ctx = await this.context(s, slug);
    const raw = /^[\w-]{10,40}$/.test(flash) ? await this.redis.getdel(this.flashKey(s, flash)) : null;
    void reply.header('content-type', HTML).header('cache-control', 'no-store');
    if (raw === null) {
      void reply.status(410).send(keyGonePage(ctx));
      return;
    }
    const { key, name } = JSON.parse(raw) as { key: string; name: string };
    void reply.send(keyCreatedPage(ctx, key, name, this.gatewayUrl));
  }

  @Get('orgs/:org/keys/:id/revoke')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async confirmRevoke(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string): Promise<string> {
    const ctx = await this.context(s, slug);
    return revokePage(ctx, await this.keys.get(s.user, slug, id));
  }

  @Post('orgs/:org/keys/:id/revoke')
  @UseGuards(SessionGuard, CsrfGuard)
  async revoke(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Res() reply: FastifyReply): Promise<void> {
    await this.keys.revoke(s.user, slug, id);
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/keys`);
  }

  @Get('orgs/:org/keys/:id')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async keyDetails(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Query('saved') saved?: string): Promise<string> {
    const ctx = await this.context(s, slug);
    return keyPage(ctx, await this.keys.get(s.user, slug, id), this.keys.modelIds(), saved === '1');
  }

  @Post('orgs/:org/keys/:id')
  @UseGuards(SessionGuard, CsrfGuard)
  async saveKey(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    const expires = text(form, 'expires') ?? 'keep';
    if (expires !== 'keep' && expires !== 'never' && !/^\d{1,4}$/.test(expires)) throw invalid('expires', 'expected keep, never or a number of days');
    const models = form.allowedModels === undefined ? [] : [form.allowedModels].flat();
    await this.keys.update(s.user, slug, id, {
      name: text(form, 'name'),
      // no checkboxes were shown (model list unavailable): leave the allow-list alone
      allowedModels: text(form, 'modelsShown') === '1' ? models : undefined,
      rpmLimit: formNumber(form, 'rpmLimit'),
      tpmLimit: formNumber(form, 'tpmLimit'),
      expiresAt: expires === 'keep' ? undefined : expires === 'never' ? null : new Date(Date.now() + Number(expires) * 86_400_000).toISOString(),
    });
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/keys/${encodeURIComponent(id)}?saved=1`);
  }

  @Post('orgs/:org/keys/:id/limits')
  @UseGuards(SessionGuard, CsrfGuard)
  async keyLimits(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    await this.keys.update(s.user, slug, id, { rpmLimit: formNumber(form, 'rpmLimit'), tpmLimit: formNumber(form, 'tpmLimit') });
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/limits`);
  }

  @Get('orgs/:org/members')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async members(@CurrentSession() s: ConsoleSession, @Param('org') slug: string): Promise<string> {
    const ctx = await this.context(s, slug);
    return membersPage(ctx, await this.orgs.members(s.user, slug));
  }

  @Post('orgs/:org/members')
  @UseGuards(SessionGuard, CsrfGuard)
  async invite(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    await this.orgs.invite(s.user, slug, parseBody(inviteSchema, { login: text(form, 'login'), role: text(form, 'role') }));
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/members`);
  }

  @Post('orgs/:org/members/:login/role')
  @UseGuards(SessionGuard, CsrfGuard)
  async changeRole(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('login') login: string, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    const { role } = parseBody(memberChangeSchema, { role: text(form, 'role') });
    await this.orgs.changeMember(s.user, slug, parseBody(loginSchema, login), role);
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/members`);
  }

  @Post('orgs/:org/members/:login/remove')
  @UseGuards(SessionGuard, CsrfGuard)
  async removeMember(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('login') login: string, @Res() reply: FastifyReply): Promise<void> {
    const leaving = login.toLowerCase() === s.user.login.toLowerCase();
    await this.orgs.changeMember(s.user, slug, parseBody(loginSchema, login), null);
    this.see(reply, leaving ? '/orgs' : `/orgs/${encodeURIComponent(slug)}/members`);
  }

  @Get('orgs/:org/limits')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async limits(@CurrentSession() s: ConsoleSession, @Param('org') slug: string): Promise<string> {
    const ctx = await this.context(s, slug);
    return limitsPage(ctx, await this.keys.list(s.user, slug));
  }

  @Post('orgs/:org/budget')
  @UseGuards(SessionGuard, CsrfGuard)
  async budget(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Body() form: Form, @Res() reply: FastifyReply): Promise<void> {
    const raw = text(form, 'monthlyBudgetUsd')?.trim() ?? '';
    const usd = raw === '' ? null : Number(raw);
    if (usd !== null && (!Number.isFinite(usd) || usd < 0)) throw invalid('monthlyBudgetUsd', 'expected an amount in USD of 0 or more, or nothing');
    await this.orgs.update(s.user, slug, { monthlyBudgetUsd: usd });
    this.see(reply, `/orgs/${encodeURIComponent(slug)}/limits`);
  }

  @Get('orgs/:org/usage')
  @UseGuards(SessionGuard)
  @Header('content-type', HTML)
  async usageReport(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query() q: Record<string, string | undefined>): Promise<string> {
    const ctx = await this.context(s, slug);
    return usagePage(ctx, await this.usage.report(s.user, slug, q));
  }

  /** The bill lives on the billing page (our figure per Stripe price line, Stripe's preview, enabling billing). */
  @Get('orgs/:org/bill')
  @UseGuards(SessionGuard)
  async bill(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query('period') period: string | undefined, @Res() reply: FastifyReply): Promise<void> {
    const org = await this.orgs.get(s.user, slug);
    this.see(reply, `/orgs/${encodeURIComponent(org.slug)}/billing${period ? `?period=${encodeURIComponent(period)}` : ''}`);
  }

  private async context(s: ConsoleSession, slug: string) {
    const [org, orgs] = await Promise.all([this.orgs.get(s.user, slug), this.orgs.list(s.user)]);
    return { user: s.user, csrfToken: s.csrfToken, org, orgs };
  }

  private flashKey(s: ConsoleSession, flash: string): string {
    return this.redisKeys.key(`console:flash:${s.id}:${flash}`);
  }

  private see(reply: FastifyReply, location: string): void {
    void reply.status(303).header('location', location).send();
  }
}
