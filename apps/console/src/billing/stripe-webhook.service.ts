import { Inject, Injectable, Logger } from '@nestjs/common';
import { billingStatusOf } from '@spot/billing';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { type BillingStatus, type Org, OrgBillingRepository, WebhookEventsRepository } from '@spot/db';
import { OrgChangePublisher } from '@spot/keys';
import Stripe from 'stripe';
import { ConsoleError, notFound } from '../errors/console.errors';

/** What a delivery did. */
export interface WebhookOutcome {
  received: true;
  /** The org's billing status changed. */
  applied: boolean;
  /** Why nothing changed, when nothing did. */
  note?: 'duplicate' | 'stale' | 'unknown_org' | 'ignored_type' | 'unchanged' | 'other_subscription';
}

const HANDLED = new Set([
  'invoice.paid',
  'invoice.payment_failed',
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
]);

function idOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string') return (value as { id: string }).id;
  return null;
}

/**
 * Stripe's webhooks drive the org's billing status: invoice.paid clears a past-due org, invoice.payment_failed
 * makes it past due (the grace period counts from the first failure), customer.subscription.* mirror the
 * subscription's status. Signatures are verified (STRIPE_WEBHOOK_SECRET); each event id is applied once; an
 * event older than one already applied to the org does not overwrite it (Stripe does not deliver in order).
 */
@Injectable()
export class StripeWebhookService {
  private readonly logger = new Logger('StripeWebhook');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly orgs: OrgBillingRepository,
    private readonly events: WebhookEventsRepository,
    private readonly orgChanges: OrgChangePublisher,
  ) {}

  async handle(rawBody: Buffer | undefined, signature: string | undefined): Promise<WebhookOutcome> {
    const secret = this.config.STRIPE_WEBHOOK_SECRET;
    if (secret === undefined) throw notFound('Stripe webhooks are not configured here (no STRIPE_WEBHOOK_SECRET).');
    if (rawBody === undefined || signature === undefined) throw new ConsoleError(400, 'invalid_signature', 'Missing Stripe-Signature or body.');
    let event: Stripe.Event;
    try {
      event = Stripe.webhooks.constructEvent(rawBody, signature, secret);
    } catch (err) {
      throw new ConsoleError(400, 'invalid_signature', `Stripe signature check failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!HANDLED.has(event.type)) {
      await this.events.record(event.id, event.type, null, new Date(event.created * 1000));
      return { received: true, applied: false, note: 'ignored_type' };
    }
    const object = event.data.object as unknown as Record<string, unknown>;
    const isSubscription = event.type.startsWith('customer.subscription.');
    const subscriptionId = isSubscription ? idOf(object.id) : null;
    const customerId = idOf(object.customer);
    const org =
      (subscriptionId !== null ? await this.orgs.findByStripeSubscription(subscriptionId) : null) ??
      (customerId !== null ? await this.orgs.findByStripeCustomer(customerId) : null);
    const created = new Date(event.created * 1000);
    if (!(await this.events.record(event.id, event.type, org?.id ?? null, created))) return { received: true, applied: false, note: 'duplicate' };
    if (org === null) {
      this.logger.warn(`${event.type} ${event.id}: no org for customer ${customerId ?? '?'}`);
      return { received: true, applied: false, note: 'unknown_org' };
    }
    if (subscriptionId !== null && org.stripeSubscriptionId !== subscriptionId) return { received: true, applied: false, note: 'other_subscription' };
    if (await this.events.newerExists(org.id, created, event.id)) return { received: true, applied: false, note: 'stale' };

    const next = this.nextStatus(org, event.type, object);
    if (next === null || !(await this.orgs.setStatus(org.id, next, new Date()))) return { received: true, applied: false, note: 'unchanged' };
    this.logger.log(`org ${org.slug}: billing status ${org.billingStatus} -> ${next} (${event.type})`);
    await this.orgChanges.published(org.id);
    return { received: true, applied: true };
  }

  private nextStatus(org: Org, type: string, object: Record<string, unknown>): BillingStatus | null {
    switch (type) {
      case 'invoice.paid':
        // a paid invoice clears a debt; it does not revive a canceled subscription
        return ['past_due', 'unpaid', 'incomplete'].includes(org.billingStatus) ? 'active' : null;
      case 'invoice.payment_failed':
        return ['active', 'trialing', 'incomplete'].includes(org.billingStatus) ? 'past_due' : null;
      case 'customer.subscription.deleted':
        return 'canceled';
      default:
        return typeof object.status === 'string' ? billingStatusOf(object.status as Stripe.Subscription.Status) : null;
    }
  }
}
