import { Injectable } from '@nestjs/common';
import type { MemberRole } from './generated/prisma/enums';
import type { Invitation } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** Invitations to orgs by GitHub login (stored lower-case), accepted at the invitee's next sign-in. */
@Injectable()
export class InvitationsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Invites a login (again: the role is updated and the invitation reopened). */
  upsert(orgId: string, login: string, role: MemberRole, invitedById: string): Promise<Invitation> {
    const githubLogin = login.toLowerCase();
    return this.prisma.invitation.upsert({
      where: { orgId_githubLogin: { orgId, githubLogin } },
      create: { orgId, githubLogin, role, invitedById },
      update: { role, invitedById, acceptedAt: null, createdAt: new Date() },
    });
  }

  listPending(orgId: string): Promise<Invitation[]> {
    return this.prisma.invitation.findMany({ where: { orgId, acceptedAt: null }, orderBy: { createdAt: 'asc' } });
  }

  /** Withdraws a pending invitation; false when there was none. */
  async withdraw(orgId: string, login: string): Promise<boolean> {
    const r = await this.prisma.invitation.deleteMany({ where: { orgId, githubLogin: login.toLowerCase(), acceptedAt: null } });
    return r.count > 0;
  }
}
