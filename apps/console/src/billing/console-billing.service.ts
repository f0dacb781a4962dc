import { Injectable } from '@nestjs/common';
import { BillCalculator, BillingDisabledError, BillingSetupService, InvalidPeriodError, type OrgBill, StripeClient } from '@spot/billing';
import type { BillingStatus, User } from '@spot/db';
import { ConsoleError, invalid } from '../errors/console.errors';
import { OrgAccessService } from '../orgs/org-access.service';

/** An org's billing as the console shows it. */
export interface BillingView {
  /** Whether this deployment bills through Stripe (STRIPE_SECRET_KEY set). */
  stripe: 'on' | 'off';
  /** Whether this org is billed through Stripe. */
  enabled: boolean;
  status: BillingStatus;
  statusSince: string | null;
  customerId: string | null;
  subscriptionId: string | null;
  /** The current period's bill: our figure per Stripe price line, Stripe's preview beside it. */
  bill: OrgBill;
}

/** Billing of an org in the console: the bill per price line with Stripe's preview, and turning billing on. */
@Injectable()
export class ConsoleBillingService {
  constructor(
    private readonly access: OrgAccessService,
    private readonly stripe: StripeClient,
    private readonly setup: BillingSetupService,
    private readonly bills: BillCalculator,
  ) {}

  async view(user: User, slug: string, period?: string): Promise<BillingView> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    let bill: OrgBill;
    try {
      bill = await this.bills.bill(org, period ?? new Date().toISOString().slice(0, 7));
    } catch (err) {
      if (err instanceof InvalidPeriodError) throw invalid('period', 'expected YYYY-MM');
      throw err;
    }
    const enabled = this.stripe.account !== null && org.stripeAccount === this.stripe.account && org.stripeSubscriptionId !== null;
    return {
      stripe: this.stripe.enabled ? 'on' : 'off',
      enabled,
      status: org.billingStatus,
      statusSince: org.billingStatusAt?.toISOString() ?? null,
      customerId: enabled ? org.stripeCustomerId : null,
      subscriptionId: enabled ? org.stripeSubscriptionId : null,
      bill,
    };
  }

  /** Creates the org's Stripe customer and subscription (admins and owners); idempotent. */
  async enable(user: User, slug: string): Promise<{ enabled: true; created: boolean; customerId: string; subscriptionId: string; status: BillingStatus }> {
    const { org } = await this.access.requireRole(user.id, slug, 'admin');
    try {
      const done = await this.setup.enableOrg(org.id);
      return { enabled: true, created: done.created, customerId: done.customerId, subscriptionId: done.subscriptionId, status: done.org.billingStatus };
    } catch (err) {
      if (err instanceof BillingDisabledError) throw new ConsoleError(409, 'billing_disabled', 'Stripe billing is off on this deployment (no STRIPE_SECRET_KEY).');
      throw err;
    }
  }
}
