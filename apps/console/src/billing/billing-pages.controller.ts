import { Controller, Get, Header, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { ConsoleSession } from '../auth/console-session';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import { SessionGuard } from '../auth/session.guard';
import { OrgAccessService } from '../orgs/org-access.service';
import { OrgsService } from '../orgs/orgs.service';
import { billingPage } from './billing-page';
import { ConsoleBillingService } from './console-billing.service';

/** The billing page and its "Enable billing" form (POST, CSRF, then back to the page). */
@Controller('orgs/:org/billing')
@UseGuards(SessionGuard)
export class BillingPagesController {
  constructor(
    private readonly billing: ConsoleBillingService,
    private readonly orgs: OrgsService,
    private readonly access: OrgAccessService,
  ) {}

  @Get()
  @Header('content-type', 'text/html; charset=utf-8')
  async page(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query('period') period?: string): Promise<string> {
    const view = await this.billing.view(s.user, slug, period);
    const [org, orgs, access] = await Promise.all([this.orgs.get(s.user, slug), this.orgs.list(s.user), this.access.requireRole(s.user.id, slug, 'member')]);
    return billingPage({ user: s.user, csrfToken: s.csrfToken, org, orgs }, view, access.role !== 'member');
  }

  @Post('enable')
  @UseGuards(CsrfGuard)
  async enable(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Res() reply: FastifyReply): Promise<void> {
    await this.billing.enable(s.user, slug);
    void reply.status(303).header('location', `/orgs/${encodeURIComponent(slug)}/billing`).send();
  }
}
