import { Injectable } from '@nestjs/common';
import { MembershipsRepository, type MemberRole, type Org } from '@spot/db';
import { forbidden, notFound } from '../errors/console.errors';

const RANK: Record<MemberRole, number> = { member: 0, admin: 1, owner: 2 };

/** Whether `role` is at least `min`. */
export function atLeast(role: MemberRole, min: MemberRole): boolean {
  return RANK[role] >= RANK[min];
}

/**
 * An org a request may act on: the org row itself (`access.id`, `access.slug`, ...), plus the same row as
 * `org` and the caller's `role`, so both `const org = await requireRole(...)` and `const { org, role } = ...` read well.
 */
export type OrgAccess = Org & {
  org: Org;
  role: MemberRole;
};

/**
 * Tenant isolation: every org-scoped route resolves its org here, by slug and the caller's membership.
 * Not a member (or no such org) is 404, so slugs of other tenants cannot be probed; a member whose role is
 * too low gets 403.
 */
@Injectable()
export class OrgAccessService {
  constructor(private readonly memberships: MembershipsRepository) {}

  /**
   * The org with this slug if `userId` is a member with at least role `min`.
   * @throws 404 (not_found) when there is no such org or the user is not a member; 403 when the role is too low.
   */
  async requireRole(userId: string, slug: string, min: MemberRole): Promise<OrgAccess> {
    const found = typeof slug === 'string' && slug.length <= 64 ? await this.memberships.findOrgOfMember(userId, slug) : null;
    if (found === null) throw notFound(`No org "${String(slug).slice(0, 64)}" among yours.`);
    if (!atLeast(found.role, min)) throw forbidden(`This needs the ${min} role in ${found.org.slug}; you are ${found.role}.`);
    return { ...found.org, org: found.org, role: found.role };
  }
}
