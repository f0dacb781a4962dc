import { Injectable } from '@nestjs/common';
import type { MemberRole } from './generated/prisma/enums';
import type { Org } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** An org as one of its members sees it. */
export interface OrgOfMember {
  org: Org;
  role: MemberRole;
}

export interface MemberRow {
  userId: string;
  login: string;
  name: string | null;
  avatarUrl: string | null;
  role: MemberRole;
  joinedAt: Date;
}

/** Who belongs to which org, and as what. */
@Injectable()
export class MembershipsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** The org with this slug and the user's role in it; null when it does not exist or the user is not a member. */
  async findOrgOfMember(userId: string, slug: string): Promise<OrgOfMember | null> {
    const m = await this.prisma.membership.findFirst({ where: { userId, org: { slug } }, include: { org: true } });
    return m === null ? null : { org: m.org, role: m.role };
  }

  async listOrgsOfUser(userId: string): Promise<OrgOfMember[]> {
    const rows = await this.prisma.membership.findMany({ where: { userId }, include: { org: true }, orderBy: { org: { slug: 'asc' } } });
    return rows.map((m) => ({ org: m.org, role: m.role }));
  }

  /** Creates an org with its creator as owner, in one transaction; null when the slug is taken. */
  async createOrgWithOwner(slug: string, name: string, ownerId: string): Promise<Org | null> {
    return this.prisma.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<Array<{ id: string }>>`
        INSERT INTO orgs (id, slug, name) VALUES (gen_random_uuid(), ${slug}, ${name})
        ON CONFLICT (slug) DO NOTHING RETURNING id`;
      if (rows.length === 0) return null;
      await tx.membership.create({ data: { orgId: rows[0].id, userId: ownerId, role: 'owner' } });
      return tx.org.findUniqueOrThrow({ where: { id: rows[0].id } });
    });
  }

  async listMembers(orgId: string): Promise<MemberRow[]> {
    const rows = await this.prisma.membership.findMany({ where: { orgId }, include: { user: true }, orderBy: { createdAt: 'asc' } });
    return rows.map((m) => ({ userId: m.userId, login: m.user.login, name: m.user.name, avatarUrl: m.user.avatarUrl, role: m.role, joinedAt: m.createdAt }));
  }

  /** The member of an org with this GitHub login (case-insensitive), or null. */
  async findMemberByLogin(orgId: string, login: string): Promise<MemberRow | null> {
    const m = await this.prisma.membership.findFirst({
      where: { orgId, user: { login: { equals: login, mode: 'insensitive' } } },
      include: { user: true },
    });
    return m === null ? null : { userId: m.userId, login: m.user.login, name: m.user.name, avatarUrl: m.user.avatarUrl, role: m.role, joinedAt: m.createdAt };
  }

  /**
   * Changes a member's role or removes them, unless that would leave the org without an owner (checked under
   * a lock on the org's memberships). Returns 'ok', 'missing' or 'last_owner'.
   */
  async changeMember(orgId: string, userId: string, role: MemberRole | null): Promise<'ok' | 'missing' | 'last_owner'> {
    return this.prisma.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<Array<{ user_id: string; role: MemberRole }>>`
        SELECT user_id, role FROM memberships WHERE org_id = ${orgId}::uuid ORDER BY user_id FOR UPDATE`;
      const target = rows.find((r) => r.user_id === userId);
      if (target === undefined) return 'missing';
      const owners = rows.filter((r) => r.role === 'owner').length;
      if (target.role === 'owner' && role !== 'owner' && owners <= 1) return 'last_owner';
      if (role === null) await tx.membership.delete({ where: { orgId_userId: { orgId, userId } } });
      else await tx.membership.update({ where: { orgId_userId: { orgId, userId } }, data: { role } });
      return 'ok';
    });
  }
}
