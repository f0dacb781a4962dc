import { Controller, Get, Param, Query, Res, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { CurrentSession } from '../auth/current-user.decorator';
import type { ConsoleSession } from '../auth/console-session';
import { SessionGuard } from '../auth/session.guard';
import { usageCsv, UsageService } from './usage.service';

/** JSON API: an org's usage (JSON or CSV) and its bill. */
@Controller('api/orgs/:org')
@UseGuards(SessionGuard)
export class UsageController {
  constructor(private readonly usage: UsageService) {}

  @Get('usage')
  report(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query() q: Record<string, string | undefined>) {
    return this.usage.report(s.user, slug, q);
  }

  @Get('usage.csv')
  async csv(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query() q: Record<string, string | undefined>, @Res() reply: FastifyReply): Promise<void> {
    const report = await this.usage.report(s.user, slug, q);
    void reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="usage-${slug}-${report.from.slice(0, 10)}-${report.to.slice(0, 10)}-by-${report.group}.csv"`)
      .send(usageCsv(report));
  }

  @Get('bill')
  bill(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query('period') period?: string) {
    return this.usage.bill(s.user, slug, period);
  }
}
