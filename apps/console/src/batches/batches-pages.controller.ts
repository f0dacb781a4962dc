import { Controller, Get, Header, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { ConsoleSession } from '../auth/console-session';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import { SessionGuard } from '../auth/session.guard';
import { OrgsService } from '../orgs/orgs.service';
import { sendDownload } from './batch-download';
import { batchesPage } from './batches-page';
import { ConsoleBatchesService } from './console-batches.service';

/** The Batches page, its cancel form (POST, CSRF, then back to the page) and its download links. */
@Controller('orgs/:org/batches')
@UseGuards(SessionGuard)
export class BatchesPagesController {
  constructor(
    private readonly batches: ConsoleBatchesService,
    private readonly orgs: OrgsService,
  ) {}

  @Get()
  @Header('content-type', 'text/html; charset=utf-8')
  async page(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query() q: Record<string, string | undefined>): Promise<string> {
    const page = await this.batches.list(s.user, slug, { after: q.after });
    const [org, orgs] = await Promise.all([this.orgs.get(s.user, slug), this.orgs.list(s.user)]);
    const cancelled = q.cancelled !== undefined && /^batch_\w{1,64}$/.test(q.cancelled) ? q.cancelled : null;
    return batchesPage({ user: s.user, csrfToken: s.csrfToken, org, orgs }, page, { after: q.after || null, cancelled });
  }

  @Post(':id/cancel')
  @UseGuards(CsrfGuard)
  async cancel(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Res() reply: FastifyReply): Promise<void> {
    const batch = await this.batches.cancel(s.user, slug, id);
    void reply.status(303).header('location', `/orgs/${encodeURIComponent(slug)}/batches?cancelled=${encodeURIComponent(batch.id)}`).send();
  }

  @Get(':id/:file')
  async download(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Param('file') file: string, @Res() reply: FastifyReply): Promise<void> {
    sendDownload(reply, await this.batches.download(s.user, slug, id, file));
  }
}
