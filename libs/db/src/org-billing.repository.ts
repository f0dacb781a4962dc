import { Injectable } from '@nestjs/common';
import type { Org } from './generated/prisma/client';
import type { BillingStatus } from './generated/prisma/enums';
import { PrismaService } from './prisma.service';

/** The Stripe side of an org once billing is enabled. */
export interface OrgStripeLink {
  account: string;
  customerId: string;
  subscriptionId: string;
  billingSince: Date;
  status: BillingStatus;
}

/** Why billing sync failed for one org, as it is stored on the org. */
export interface OrgSyncFailure {
  /** Stripe's error code, or ours (`subscription_canceled`, `customer_deleted`). */
  code: string;
  /** Plain words for the org's owners and the operator. */
  message: string;
  at: Date;
  /** Sync leaves the org's meter events alone until then. */
  retryAt: Date;
}

/** An org billing sync is failing for. */
export type FailingOrg = Pick<
  Org,
  'id' | 'slug' | 'billingSyncError' | 'billingSyncErrorCode' | 'billingSyncFailedAt' | 'billingSyncFailures' | 'billingSyncRetryAt'
>;

/** Orgs' billing columns: Stripe ids, the account they live in, and the mirrored subscription status. */
@Injectable()
export class OrgBillingRepository {
  constructor(private readonly prisma: PrismaService) {}

  findById(orgId: string): Promise<Org | null> {
    return this.prisma.org.findUnique({ where: { id: orgId } });
  }

  findBySlug(slug: string): Promise<Org | null> {
    return this.prisma.org.findUnique({ where: { slug } });
  }

  findByStripeCustomer(customerId: string): Promise<Org | null> {
    return this.prisma.org.findUnique({ where: { stripeCustomerId: customerId } });
  }

  findByStripeSubscription(subscriptionId: string): Promise<Org | null> {
    return this.prisma.org.findUnique({ where: { stripeSubscriptionId: subscriptionId } });
  }

  /** Stores the customer alone (a crash before the subscription exists resumes from it). */
  async setCustomer(orgId: string, account: string, customerId: string): Promise<void> {
    await this.prisma.org.update({ where: { id: orgId }, data: { stripeAccount: account, stripeCustomerId: customerId } });
  }

  /** Stores the Stripe link and the subscription's status (billing_status_at moves only if the status changed). */
  async link(orgId: string, link: OrgStripeLink): Promise<Org> {
    const current = await this.prisma.org.findUniqueOrThrow({ where: { id: orgId } });
    return this.prisma.org.update({
      where: { id: orgId },
      data: {
        stripeAccount: link.account,
        stripeCustomerId: link.customerId,
        stripeSubscriptionId: link.subscriptionId,
        billingSince: link.billingSince,
        billingStatus: link.status,
        billingStatusAt: current.billingStatus === link.status && current.billingStatusAt ? current.billingStatusAt : new Date(),
      },
    });
  }

  /**
   * Sets the billing status; `billing_status_at` moves only when the status changes, so that the past-due
   * grace period counts from the first failure, not the last retry. Returns true when it changed.
   */
  async setStatus(orgId: string, status: BillingStatus, at: Date = new Date()): Promise<boolean> {
    const changed = await this.prisma.$executeRaw`
      UPDATE orgs SET billing_status = ${status}::"BillingStatus", billing_status_at = ${at}
      WHERE id = ${orgId}::uuid AND billing_status <> ${status}::"BillingStatus"`;
    return changed > 0;
  }

  /**
   * Records one more sync failure of the org: the failures in a row go up, `billing_sync_failed_at` keeps the
   * first failure of the run. Returns the failures in a row, this one included.
   */
  async flagSyncFailure(orgId: string, failure: OrgSyncFailure): Promise<number> {
    const rows = await this.prisma.$queryRaw<Array<{ failures: number }>>`
      UPDATE orgs SET billing_sync_error = ${failure.message}, billing_sync_error_code = ${failure.code},
        billing_sync_failed_at = coalesce(billing_sync_failed_at, ${failure.at}), billing_sync_failures = billing_sync_failures + 1,
        billing_sync_retry_at = ${failure.retryAt}
      WHERE id = ${orgId}::uuid
      RETURNING billing_sync_failures AS failures`;
    return rows[0]?.failures ?? 0;
  }

  /** Clears the org's sync failure (its events went through). True when there was one. */
  async clearSyncFailure(orgId: string): Promise<boolean> {
    const changed = await this.prisma.$executeRaw`
      UPDATE orgs SET billing_sync_error = NULL, billing_sync_error_code = NULL, billing_sync_failed_at = NULL,
        billing_sync_failures = 0, billing_sync_retry_at = NULL
      WHERE id = ${orgId}::uuid AND billing_sync_failures > 0`;
    return changed > 0;
  }

  /** Lets sync retry the org at its next pass (billing was enabled again); the error stays until a success. */
  async retrySyncNow(orgId: string): Promise<void> {
    await this.prisma.$executeRaw`UPDATE orgs SET billing_sync_retry_at = NULL WHERE id = ${orgId}::uuid AND billing_sync_failures > 0`;
  }

  /** The account's orgs billing sync is failing for, by slug. */
  failingOrgs(account: string): Promise<FailingOrg[]> {
    return this.prisma.org.findMany({
      where: { stripeAccount: account, billingSyncFailures: { gt: 0 } },
      select: {
        id: true,
        slug: true,
        billingSyncError: true,
        billingSyncErrorCode: true,
        billingSyncFailedAt: true,
        billingSyncFailures: true,
        billingSyncRetryAt: true,
      },
      orderBy: { slug: 'asc' },
    });
  }
}
