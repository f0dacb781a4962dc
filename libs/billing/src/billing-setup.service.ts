import { Inject, Injectable, Logger } from '@nestjs/common';
import { type BillingLine, BillingLinesRepository, BillingOutboxRepository, type BillingStatus, type Org, OrgBillingRepository } from '@spot/db';
import { OrgChangePublisher } from '@spot/keys';
import Stripe from 'stripe';
import { BillingError } from './billing.errors';
import { monthStart, nextMonthStart } from './billing-calendar';
import { PriceBook } from './price-book';
import type { PriceLine } from './price-lines';
import { StripeClient } from './stripe-client';
import { backoffMs, classifyStripeError } from './stripe-failure';

/** Stripe's limit on the items of one subscription; more lines are added lazily as the org uses them. */
const MAX_SUBSCRIPTION_ITEMS = 20;
const SETUP_RETRIES = 5;

/** What `billing enable` did. */
export interface EnabledBilling {
  org: Org;
  customerId: string;
  subscriptionId: string;
  /** False when the org was already enabled in this Stripe account (nothing created). */
  created: boolean;
}

/** Maps a Stripe subscription status onto ours. */
export function billingStatusOf(status: Stripe.Subscription.Status): BillingStatus {
  switch (status) {
    case 'active':
    case 'trialing':
    case 'past_due':
    case 'unpaid':
    case 'canceled':
    case 'incomplete':
      return status as BillingStatus;
    case 'incomplete_expired':
      return 'canceled';
    case 'paused':
      // a paused subscription collects nothing: block like unpaid
      return 'unpaid';
    default:
      // a status newer than this code: treat it as not paying until someone looks
      return 'incomplete';
  }
}

/**
 * Creates, idempotently, what billing needs in Stripe: one meter + product + metered price per price line,
 * and per org a customer and a subscription. Every create is found-before-created or carries a deterministic
 * Idempotency-Key, so a crash half way and a rerun (or two processes at once) create nothing twice.
 */
@Injectable()
export class BillingSetupService {
  private readonly logger = new Logger('BillingSetup');

  constructor(
    private readonly stripe: StripeClient,
    private readonly priceBook: PriceBook,
    private readonly lines: BillingLinesRepository,
    private readonly orgs: OrgBillingRepository,
    @Inject(OrgChangePublisher) private readonly orgChanges: OrgChangePublisher,
    private readonly outbox: BillingOutboxRepository,
  ) {}

  /** The account's catalog, with every line of `wanted` created in Stripe if missing. Keyed by line key. */
  async ensureCatalog(wanted: readonly PriceLine[] = this.priceBook.lines()): Promise<Map<string, BillingLine>> {
    const { account } = this.stripe.require();
    const catalog = new Map((await this.lines.findByAccount(account)).map((l) => [l.lineKey, l]));
    const missing = wanted.filter((l) => !catalog.has(l.lineKey));
    if (missing.length === 0) return catalog;
    const meters = await this.listMeters();
    for (const line of missing) {
      const stored = await this.createLine(line, meters);
      catalog.set(line.lineKey, stored);
    }
    return catalog;
  }

  /**
   * Turns billing on for an org: a Stripe customer (metadata org_id) and a subscription with one metered item
   * per current price line, backdated to the start of the UTC month and renewing on the 1st, so that Stripe's
   * periods are the calendar months our bills use. Stores the ids and the status on the org and tells the
   * gateways. Running it again is a no-op.
   */
  async enableOrg(orgId: string): Promise<EnabledBilling> {
    const { api, account } = this.stripe.require();
    const org = await this.orgs.findById(orgId);
    if (org === null) throw new BillingError('org_not_found', `no org with id ${orgId}`);
    const sameAccount = org.stripeAccount === account;
    // a canceled subscription or a deleted customer (sync flags it, a webhook mirrors it) is replaced here
    let replacing: { customer: string | null; subscription: string | null } | null = null;
    if (sameAccount && org.stripeCustomerId !== null && org.stripeSubscriptionId !== null) {
      const broken = org.billingStatus === 'canceled' || org.billingSyncFailures > 0 ? await this.subscriptionProblem(org.stripeSubscriptionId, org.stripeCustomerId) : null;
      if (broken === null) return { org, customerId: org.stripeCustomerId, subscriptionId: org.stripeSubscriptionId, created: false };
      replacing = { customer: broken.code === 'customer_deleted' ? org.stripeCustomerId : null, subscription: org.stripeSubscriptionId };
    }
    const customerGone = replacing !== null && replacing.customer !== null;
    let customerId = sameAccount && !customerGone ? org.stripeCustomerId : null;
    if (customerId === null) {
      const customer = await this.call('create the customer', () =>
        api.customers.create(
          { name: org.name, description: `spotinference org ${org.slug}`, metadata: { org_id: org.id, org_slug: org.slug } },
          // a new key when replacing a deleted customer: the old key would replay the deleted one
          { idempotencyKey: `spot-customer-${account}-${org.id}${customerGone ? `-after-${org.stripeCustomerId}` : ''}` },
        ),
      );
      customerId = customer.id;
      await this.orgs.setCustomer(org.id, account, customerId);
      if (replacing !== null) await this.outbox.moveUnsentToCustomer(org.id, account, customerId);
    }

    const catalog = await this.ensureCatalog();
    const current = this.priceBook.lines().map((l) => catalog.get(l.lineKey)).filter((l): l is BillingLine => l !== undefined);
    const now = new Date();
    const since = monthStart(now);
    // A subscription created before a crash is reused, not duplicated.
    const existing = await this.call('list subscriptions', () => api.subscriptions.list({ customer: customerId, limit: 10 }));
    let subscription = existing.data.find((s) => s.metadata?.org_id === org.id && s.status !== 'canceled' && s.status !== 'incomplete_expired');
    if (subscription === undefined) {
      const items = current.slice(0, MAX_SUBSCRIPTION_ITEMS).map((l) => ({ price: l.priceId, metadata: { line_key: l.lineKey } }));
      subscription = await this.call('create the subscription', () =>
        api.subscriptions.create(
          {
            customer: customerId,
            items,
            ...(since.getTime() < now.getTime() - 1_000 ? { backdate_start_date: Math.floor(since.getTime() / 1000) } : {}),
            billing_cycle_anchor: Math.floor(nextMonthStart(now).getTime() / 1000),
            proration_behavior: 'none',
            metadata: { org_id: org.id, org_slug: org.slug },
          },
          {
            idempotencyKey: `spot-subscription-${account}-${org.id}-${since.toISOString().slice(0, 7)}${replacing?.subscription ? `-after-${replacing.subscription}` : ''}`,
          },
        ),
      );
    }
    const byPrice = new Map(current.map((l) => [l.priceId, l]));
    // the old subscription's items are not the new one's
    if (replacing !== null) await this.lines.deleteItems(org.id, account);
    for (const item of subscription.items.data) {
      const line = byPrice.get(item.price.id);
      if (line !== undefined) await this.lines.insertItem(org.id, account, line.lineKey, item.id);
    }
    const linked = await this.orgs.link(org.id, {
      account,
      customerId,
      subscriptionId: subscription.id,
      billingSince: since,
      status: billingStatusOf(subscription.status),
    });
    // billing sync retries the org at its next pass; its failure is cleared when Stripe takes its usage
    if (replacing !== null) await this.orgs.retrySyncNow(org.id);
    await this.orgChanges.published(org.id);
    this.logger.log(`billing ${replacing === null ? 'enabled' : 'enabled again'} for org ${org.slug}: ${customerId}, ${subscription.id}`);
    return { org: linked, customerId, subscriptionId: subscription.id, created: true };
  }

  /**
   * Why the org's subscription cannot bill (canceled, its customer deleted), or null when it can. Stripe being
   * unreachable or refusing the request is thrown as a {@link BillingError} (`stripe_failed`, with the cause).
   */
  async subscriptionProblem(subscriptionId: string, customerId: string): Promise<BillingError | null> {
    const { api } = this.stripe.require();
    const sub = await this.unlessMissing(this.call('read the subscription', () => api.subscriptions.retrieve(subscriptionId)));
    if (sub !== null && sub.status !== 'canceled' && sub.status !== 'incomplete_expired') return null;
    const customer = await this.unlessMissing(this.call('read the customer', () => api.customers.retrieve(customerId)));
    if (customer === null || (customer as { deleted?: boolean }).deleted === true) {
      return new BillingError('customer_deleted', `customer ${customerId} was deleted (subscription ${subscriptionId} is ${sub?.status ?? 'gone'})`);
    }
    return new BillingError('subscription_canceled', `subscription ${subscriptionId} is ${sub?.status ?? 'gone from Stripe'}`);
  }

  /** The object, or null when Stripe says it does not exist (404 resource_missing); other failures are thrown. */
  private async unlessMissing<T>(call: Promise<T>): Promise<T | null> {
    try {
      return await call;
    } catch (err) {
      if (err instanceof BillingError && (err.cause as { statusCode?: number } | undefined)?.statusCode === 404) return null;
      throw err;
    }
  }

  /** Throws {@link subscriptionProblem}'s answer, if any. */
  async assertSubscriptionBills(subscriptionId: string, customerId: string): Promise<void> {
    const problem = await this.subscriptionProblem(subscriptionId, customerId);
    if (problem !== null) throw problem;
  }

  /** Adds the subscription items an org lacks for `lineKeys` (lines it uses that were not on its subscription). */
  async ensureItems(orgId: string, subscriptionId: string, lineKeys: readonly string[], catalog: Map<string, BillingLine>): Promise<void> {
    const { api, account } = this.stripe.require();
    const have = new Set((await this.lines.findItems(orgId, account)).map((i) => i.lineKey));
    for (const lineKey of lineKeys) {
      if (have.has(lineKey)) continue;
      const line = catalog.get(lineKey);
      if (line === undefined) continue;
      const item = await this.call('add a subscription item', () =>
        api.subscriptionItems.create(
          { subscription: subscriptionId, price: line.priceId, proration_behavior: 'none', metadata: { line_key: lineKey } },
          { idempotencyKey: `spot-item-${subscriptionId}-${lineKey}` },
        ),
      );
      await this.lines.insertItem(orgId, account, lineKey, item.id);
      have.add(lineKey);
    }
  }

  private async listMeters(): Promise<Map<string, Stripe.Billing.Meter>> {
    const { api } = this.stripe.require();
    const meters = new Map<string, Stripe.Billing.Meter>();
    for await (const meter of api.billing.meters.list({ status: 'active', limit: 100 })) meters.set(meter.event_name, meter);
    return meters;
  }

  private async createLine(line: PriceLine, meters: Map<string, Stripe.Billing.Meter>): Promise<BillingLine> {
    const { api, account } = this.stripe.require();
    const name = line.direction === 'audio' ? `${line.model} on ${line.tier}, audio seconds` : `${line.model} on ${line.tier}, ${line.direction.replace('_', ' ')} tokens`;
    const meter =
      meters.get(line.eventName) ??
      (await this.call(`create the meter of ${name}`, () =>
        api.billing.meters.create(
          {
            display_name: name,
            event_name: line.eventName,
            default_aggregation: { formula: 'sum' },
            customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
            value_settings: { event_payload_key: 'value' },
          },
          { idempotencyKey: `spot-meter-${account}-${line.lineKey}` },
        ),
      ));
    const productId = `spot_line_${line.lineKey}`;
    const product = await this.call(`create the product of ${name}`, async () => {
      try {
        return await api.products.retrieve(productId);
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
        return api.products.create(
          { id: productId, name, metadata: { line_key: line.lineKey, model: line.model, tier: line.tier, direction: line.direction } },
          { idempotencyKey: `spot-product-${account}-${line.lineKey}` },
        );
      }
    });
    const lookupKey = `spot_line_${line.lineKey}`;
    const found = await this.call(`look up the price of ${name}`, () => api.prices.list({ lookup_keys: [lookupKey], limit: 1 }));
    const price =
      found.data[0] ??
      (await this.call(`create the price of ${name}`, () =>
        api.prices.create(
          {
            product: product.id,
            currency: 'usd',
            billing_scheme: 'per_unit',
            unit_amount_decimal: Stripe.Decimal.from(line.unitAmountDecimal),
            lookup_key: lookupKey,
            recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
            metadata: { line_key: line.lineKey },
          },
          { idempotencyKey: `spot-price-${account}-${line.lineKey}` },
        ),
      ));
    const row = {
      account,
      lineKey: line.lineKey,
      model: line.model,
      tier: line.tier,
      direction: line.direction,
      unitAmountDecimal: line.unitAmountDecimal,
      eventName: line.eventName,
      meterId: meter.id,
      productId: product.id,
      priceId: price.id,
    };
    await this.lines.insert(row);
    return { ...row, createdAt: new Date() };
  }

  /** Runs a Stripe call, retrying 429/5xx/network failures a few times (every create here is idempotent). */
  private async call<T>(what: string, op: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        const failure = classifyStripeError(err);
        if (failure.kind === 'retry' && attempt < SETUP_RETRIES) {
          await new Promise((r) => setTimeout(r, failure.retryAfterMs ?? backoffMs(attempt)));
          continue;
        }
        throw new BillingError('stripe_failed', `Stripe: could not ${what}: ${failure.message}`, { cause: err });
      }
    }
  }
}
