import { Injectable } from '@nestjs/common';
import { InvitationsRepository, MembershipsRepository, type MemberRole, OrgsRepository, type Org, type User } from '@spot/db';
import { OrgChangePublisher } from '@spot/keys';
import { conflict, forbidden, notFound } from '../errors/console.errors';
import { atLeast, OrgAccessService } from './org-access.service';

/** An org as the API shows it to a member. */
export interface OrgView {
  id: string;
  slug: string;
  name: string;
  role: MemberRole;
  monthlyBudgetUsd: number | null;
  billingStatus: string;
  /** Billing sync to Stripe is failing for the org (shown to owners and admins, who can fix it); else null. */
  billingSync: BillingSyncFailureView | null;
  createdAt: string;
}

/** Why the org's usage is not reaching Stripe, in plain words, and when sync tries again. */
export interface BillingSyncFailureView {
  reason: string;
  code: string;
  since: string | null;
  failures: number;
  nextRetryAt: string | null;
}

export function orgView(org: Org, role: MemberRole): OrgView {
  return {
    id: org.id,
    slug: org.slug,
    name: org.name,
    role,
    monthlyBudgetUsd: org.monthlyBudgetMicros === null ? null : Number(org.monthlyBudgetMicros) / 1e6,
    billingStatus: org.billingStatus,
    billingSync:
      org.billingSyncFailures > 0 && role !== 'member'
        ? {
            reason: org.billingSyncError ?? 'Billing sync to Stripe fails for this org.',
            code: org.billingSyncErrorCode ?? 'unknown',
            since: org.billingSyncFailedAt?.toISOString() ?? null,
            failures: org.billingSyncFailures,
            nextRetryAt: org.billingSyncRetryAt?.toISOString() ?? null,
          }
        : null,
    createdAt: org.createdAt.toISOString(),
  };
}

/** Orgs, their members and invitations, their budget: the rules of who may do what. */
@Injectable()
export class OrgsService {
  constructor(
    private readonly access: OrgAccessService,
    private readonly memberships: MembershipsRepository,
    private readonly invitations: InvitationsRepository,
    private readonly orgs: OrgsRepository,
    private readonly orgChanges: OrgChangePublisher,
  ) {}

  async list(user: User): Promise<OrgView[]> {
    return (await this.memberships.listOrgsOfUser(user.id)).map((m) => orgView(m.org, m.role));
  }

  /** Creates an org with the caller as its owner. */
  async create(user: User, input: { slug: string; name: string }): Promise<OrgView> {
    const org = await this.memberships.createOrgWithOwner(input.slug, input.name, user.id);
    if (org === null) throw conflict(`The slug "${input.slug}" is taken.`, 'slug_taken');
    return orgView(org, 'owner');
  }

  async get(user: User, slug: string): Promise<OrgView> {
    const { org, role } = await this.access.requireRole(user.id, slug, 'member');
    return orgView(org, role);
  }

  /** Renames the org or sets its monthly budget (admins and owners); gateways see a new budget at once. */
  async update(user: User, slug: string, input: { name?: string; monthlyBudgetUsd?: number | null }): Promise<OrgView> {
    const { org, role } = await this.access.requireRole(user.id, slug, 'admin');
    let updated = org;
    if (input.name !== undefined && input.name !== org.name) updated = await this.orgs.rename(org.id, input.name);
    if (input.monthlyBudgetUsd !== undefined) {
      const micros = input.monthlyBudgetUsd === null ? null : BigInt(Math.round(input.monthlyBudgetUsd * 1e6));
      updated = await this.orgs.setBudget(org.id, micros);
      await this.orgChanges.published(org.id);
    }
    return orgView(updated, role);
  }

  async members(user: User, slug: string) {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    const [members, invitations] = await Promise.all([this.memberships.listMembers(org.id), this.invitations.listPending(org.id)]);
    return {
      members: members.map((m) => ({ login: m.login, name: m.name, avatarUrl: m.avatarUrl, role: m.role, joinedAt: m.joinedAt.toISOString() })),
      invitations: invitations.map((i) => ({ login: i.githubLogin, role: i.role, invitedAt: i.createdAt.toISOString() })),
    };
  }

  /** Invites a GitHub login (admins and owners; only owners may invite owners). It joins at its next sign-in. */
  async invite(user: User, slug: string, input: { login: string; role: MemberRole }) {
    const { org, role } = await this.access.requireRole(user.id, slug, 'admin');
    if (input.role === 'owner' && role !== 'owner') throw forbidden('Only owners can invite owners.');
    if ((await this.memberships.findMemberByLogin(org.id, input.login)) !== null) {
      throw conflict(`${input.login} is already a member of ${org.slug}.`, 'already_member');
    }
    const inv = await this.invitations.upsert(org.id, input.login, input.role, user.id);
    return { login: inv.githubLogin, role: inv.role, invitedAt: inv.createdAt.toISOString() };
  }

  /**
   * Changes a member's role or (role null) removes them: admins manage members and admins, owners anyone.
   * Anyone may leave. The last owner can neither leave nor be demoted. A pending invitation is withdrawn.
   */
  async changeMember(user: User, slug: string, login: string, newRole: MemberRole | null): Promise<void> {
    const self = user.login.toLowerCase() === login.toLowerCase();
    const { org, role } = await this.access.requireRole(user.id, slug, self && newRole === null ? 'member' : 'admin');
    const target = await this.memberships.findMemberByLogin(org.id, login);
    if (target === null) {
      if (newRole === null && (await this.invitations.withdraw(org.id, login))) return;
      throw notFound(`${login} is not a member of ${org.slug}.`);
    }
    if ((target.role === 'owner' || newRole === 'owner') && !atLeast(role, 'owner')) {
      throw forbidden('Only owners can change owners or make new ones.');
    }
    const outcome = await this.memberships.changeMember(org.id, target.userId, newRole);
    if (outcome === 'last_owner') throw conflict(`${org.slug} needs at least one owner: make someone else owner first.`, 'last_owner');
    if (outcome === 'missing') throw notFound(`${login} is not a member of ${org.slug}.`);
  }
}
