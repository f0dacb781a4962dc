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
}
