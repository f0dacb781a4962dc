import { Injectable } from '@nestjs/common';
import type { MemberRole } from './generated/prisma/enums';
import type { User } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** What GitHub says about a person at sign-in. */
export interface GitHubIdentity {
  githubId: bigint;
  login: string;
  name: string | null;
  email: string | null;
  avatarUrl: string | null;
}

/** People, keyed by GitHub's numeric id. */
@Injectable()
export class UsersRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Creates or refreshes the user with this GitHub id (a renamed login stays the same user) and, in the
   * same transaction, turns pending invitations for the current login into memberships.
   * @returns the user and the slugs of the orgs joined now.
   */
  async signIn(identity: GitHubIdentity): Promise<{ user: User; joined: string[] }> {
    return this.prisma.$transaction(async (tx) => {
      const user = await tx.user.upsert({
        where: { githubId: identity.githubId },
        create: identity,
        update: { login: identity.login, name: identity.name, email: identity.email, avatarUrl: identity.avatarUrl },
      });
      const invitations = await tx.invitation.findMany({
        where: { githubLogin: identity.login.toLowerCase(), acceptedAt: null },
        include: { org: { select: { slug: true } } },
        orderBy: { orgId: 'asc' },
      });
      const joined: string[] = [];
      for (const inv of invitations) {
        const added = await tx.membership.createMany({ data: [{ orgId: inv.orgId, userId: user.id, role: inv.role as MemberRole }], skipDuplicates: true });
        await tx.invitation.update({ where: { id: inv.id }, data: { acceptedAt: new Date() } });
        if (added.count > 0) joined.push(inv.org.slug);
      }
      return { user, joined };
    });
  }

  findById(id: string): Promise<User | null> {
    return this.prisma.user.findUnique({ where: { id } });
  }
}
