import { Controller, Get, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { ConsoleSession } from '../auth/console-session';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import { SessionGuard } from '../auth/session.guard';
import { sendDownload } from './batch-download';
import { ConsoleBatchesService } from './console-batches.service';

/** JSON API: an org's batches (newest first, `?limit=&after=`), one batch, cancel, and its files as downloads. */
@Controller('api/orgs/:org/batches')
@UseGuards(SessionGuard, CsrfGuard)
export class BatchesController {
  constructor(private readonly batches: ConsoleBatchesService) {}

  @Get()
  list(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Query() q: Record<string, string | undefined>) {
    return this.batches.list(s.user, slug, q);
  }

  @Get(':id')
  get(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string) {
    return this.batches.get(s.user, slug, id);
  }

  @Post(':id/cancel')
  cancel(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string) {
    return this.batches.cancel(s.user, slug, id);
  }

  /** `input`, `output` or `errors`: the file's bytes, as an attachment. */
  @Get(':id/:file')
  async download(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Param('file') file: string, @Res() reply: FastifyReply): Promise<void> {
    sendDownload(reply, await this.batches.download(s.user, slug, id, file));
  }
}
