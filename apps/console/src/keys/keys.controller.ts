import { Body, Controller, Delete, Get, Param, Patch, Post, UseGuards } from '@nestjs/common';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import type { ConsoleSession } from '../auth/console-session';
import { SessionGuard } from '../auth/session.guard';
import { createKeySchema, parseBody, updateKeySchema } from '../orgs/orgs.dto';
import { ConsoleKeysService } from './console-keys.service';

/** JSON API: an org's API keys. POST answers the whole key, once. */
@Controller('api/orgs/:org/keys')
@UseGuards(SessionGuard, CsrfGuard)
export class KeysController {
  constructor(private readonly keys: ConsoleKeysService) {}

  @Get()
  list(@CurrentSession() s: ConsoleSession, @Param('org') slug: string) {
    return this.keys.list(s.user, slug);
  }

  @Post()
  create(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Body() body: unknown) {
    return this.keys.create(s.user, slug, parseBody(createKeySchema, body));
  }

  @Get(':id')
  get(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string) {
    return this.keys.get(s.user, slug, id);
  }

  @Patch(':id')
  update(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string, @Body() body: unknown) {
    return this.keys.update(s.user, slug, id, parseBody(updateKeySchema, body));
  }

  /** Revokes the key (it stays listed, marked revoked); every gateway refuses it within a second. */
  @Delete(':id')
  revoke(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('id') id: string) {
    return this.keys.revoke(s.user, slug, id);
  }
}
