import { Controller, Get, Param, Post, Query, UseGuards } from '@nestjs/common';
import type { ConsoleSession } from '../auth/console-session';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import { SessionGuard } from '../auth/session.guard';
import { ConsoleBillingService } from './console-billing.service';

/** JSON API: an org's billing (status, the bill per Stripe price line, Stripe's preview) and turning it on. */
@Controller('api/orgs/:org/billing')
@UseGuards(SessionGuard, CsrfGuard)
export class BillingController {
  constructor(private readonly billing: ConsoleBillingService) {}

  @Get()
  view(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query('period') period?: string) {
    return this.billing.view(s.user, slug, period);
  }

  @Post('enable')
  enable(@CurrentSession() s: ConsoleSession, @Param('org') slug: string) {
    return this.billing.enable(s.user, slug);
  }
}
