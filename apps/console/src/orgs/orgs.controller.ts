import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, UseGuards } from '@nestjs/common';
import { CsrfGuard } from '../auth/csrf.guard';
import { CurrentSession } from '../auth/current-user.decorator';
import type { ConsoleSession } from '../auth/console-session';
import { SessionGuard } from '../auth/session.guard';
import { createOrgSchema, inviteSchema, loginSchema, memberChangeSchema, parseBody, updateOrgSchema } from './orgs.dto';
import { OrgsService } from './orgs.service';

/** JSON API: orgs and their members. `:org` is the org's slug. */
@Controller('api/orgs')
@UseGuards(SessionGuard, CsrfGuard)
export class OrgsController {
  constructor(private readonly orgs: OrgsService) {}

  @Get()
  list(@CurrentSession() s: ConsoleSession) {
    return this.orgs.list(s.user);
  }

  @Post()
  create(@CurrentSession() s: ConsoleSession, @Body() body: unknown) {
    return this.orgs.create(s.user, parseBody(createOrgSchema, body));
  }

  @Get(':org')
  get(@CurrentSession() s: ConsoleSession, @Param('org') slug: string) {
    return this.orgs.get(s.user, slug);
  }

  @Patch(':org')
  update(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Body() body: unknown) {
    return this.orgs.update(s.user, slug, parseBody(updateOrgSchema, body));
  }

  @Get(':org/members')
  members(@CurrentSession() s: ConsoleSession, @Param('org') slug: string) {
    return this.orgs.members(s.user, slug);
  }

  @Post(':org/members')
  invite(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Body() body: unknown) {
    return this.orgs.invite(s.user, slug, parseBody(inviteSchema, body));
  }

  @Patch(':org/members/:login')
  @HttpCode(204)
  async changeRole(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('login') login: string, @Body() body: unknown) {
    await this.orgs.changeMember(s.user, slug, parseBody(loginSchema, login), parseBody(memberChangeSchema, body).role);
  }

  @Delete(':org/members/:login')
  @HttpCode(204)
  async remove(@CurrentSession() s: ConsoleSession, @Param('org') slug: string, @Param('login') login: string) {
    await this.orgs.changeMember(s.user, slug, parseBody(loginSchema, login), null);
  }
}
