import { randomBytes } from 'node:crypto';

/** Stripe metadata: string values only. */
export type Metadata = Record<string, string>;

export interface CustomerObject {
  id: string;
  object: 'customer';
  created: number;
  livemode: false;
  name: string | null;
  email: string | null;
  description: string | null;
  phone: string | null;
  metadata: Metadata;
  balance: number;
  currency: string | null;
  delinquent: boolean;
  invoice_prefix: string;
}

export interface ProductObject {
  id: string;
  object: 'product';
  created: number;
  updated: number;
  livemode: false;
  active: boolean;
  name: string;
  description: string | null;
  metadata: Metadata;
  type: 'service';
}

export interface PriceObject {
  id: string;
  object: 'price';
  created: number;
  livemode: false;
  active: boolean;
  billing_scheme: 'per_unit' | 'tiered';
  currency: string;
  lookup_key: string | null;
  metadata: Metadata;
  nickname: string | null;
  product: string;
  recurring: {
    interval: 'day' | 'week' | 'month' | 'year';
    interval_count: number;
    meter: string | null;
    usage_type: 'licensed' | 'metered';
    trial_period_days: null;
  } | null;
  tax_behavior: 'exclusive' | 'inclusive' | 'unspecified';
  type: 'one_time' | 'recurring';
  unit_amount: number | null;
  /** Cents, as a decimal string (Stripe's wire format; the SDK turns it into a Decimal). */
  unit_amount_decimal: string | null;
}

export interface MeterObject {
  id: string;
  object: 'billing.meter';
  created: number;
  updated: number;
  livemode: false;
  display_name: string;
  event_name: string;
  event_time_window: 'day' | 'hour' | null;
  status: 'active' | 'inactive';
  status_transitions: { deactivated_at: number | null };
  customer_mapping: { event_payload_key: string; type: 'by_id' };
  default_aggregation: { formula: 'count' | 'last' | 'sum' };
  value_settings: { event_payload_key: string };
}

export interface MeterEventObject {
  object: 'billing.meter_event';
  created: number;
  livemode: false;
  event_name: string;
  identifier: string;
  /** As received: every value is a string. */
  payload: Record<string, string>;
  /** Seconds since the epoch. */
  timestamp: number;
}

export interface SubscriptionItemObject {
  id: string;
  object: 'subscription_item';
  created: number;
  current_period_start: number;
  current_period_end: number;
  discounts: string[];
  metadata: Metadata;
  price: PriceObject;
  quantity?: number;
  subscription: string;
  tax_rates: [];
}

export interface SubscriptionObject {
  id: string;
  object: 'subscription';
  created: number;
  livemode: false;
  billing_cycle_anchor: number;
  cancel_at_period_end: boolean;
  canceled_at: number | null;
  collection_method: 'charge_automatically' | 'send_invoice';
  currency: string;
  customer: string;
  items: { object: 'list'; data: SubscriptionItemObject[]; has_more: false; url: string };
  latest_invoice: string | null;
  metadata: Metadata;
  start_date: number;
  status: 'active' | 'canceled';
}

export interface InvoiceLineObject {
  id: string;
  object: 'line_item';
  amount: number;
  currency: string;
  description: string | null;
  discount_amounts: [];
  discountable: boolean;
  discounts: [];
  invoice: string | null;
  livemode: false;
  metadata: Metadata;
  parent: {
    type: 'subscription_item_details';
    invoice_item_details: null;
    subscription_item_details: {
      invoice_item: null;
      proration: false;
      proration_details: { credited_items: null };
      subscription: string;
      subscription_item: string;
    };
  };
  period: { start: number; end: number };
  pretax_credit_amounts: [];
  pricing: {
    type: 'price_details';
    price_details: { price: string; product: string };
    unit_amount_decimal: string | null;
  };
  quantity: number | null;
  quantity_decimal: string;
  subtotal: number;
  taxes: [];
}

export interface InvoiceObject {
  id: string;
  object: 'invoice';
  created: number;
  livemode: false;
  amount_due: number;
  amount_paid: number;
  amount_remaining: number;
  billing_reason: 'subscription_cycle' | 'upcoming' | 'manual';
  collection_method: 'charge_automatically' | 'send_invoice';
  currency: string;
  customer: string;
  lines: { object: 'list'; data: InvoiceLineObject[]; has_more: false; total_count: number; url: string };
  metadata: Metadata;
  parent: { type: 'subscription_details'; quote_details: null; subscription_details: { metadata: Metadata; subscription: string } } | null;
  period_start: number;
  period_end: number;
  status: 'draft' | 'open' | 'paid' | 'void' | 'uncollectible';
  subtotal: number;
  subtotal_excluding_tax: number;
  total: number;
  total_excluding_tax: number;
  total_discount_amounts: [];
  total_taxes: [];
}

/** What a POST with an Idempotency-Key produced, replayed for the same key within 24 hours. */
export interface IdempotentResult {
  endpoint: string;
  params: string;
  status: number;
  body: string;
  storedAt: number;
}

/**
 * Everything the fake remembers, in memory and public so tests can inspect it. Maps keep insertion
 * order, which is creation order. Preview invoices are not stored (Stripe keeps no preview either);
 * `invoices` holds real invoices once an endpoint creates them.
 */
export class FakeStripeState {
  readonly customers = new Map<string, CustomerObject>();
  /** Ids of deleted customers: a retrieve answers `{ id, object: 'customer', deleted: true }`, as Stripe does. */
  readonly deletedCustomers = new Set<string>();
  readonly products = new Map<string, ProductObject>();
  readonly prices = new Map<string, PriceObject>();
  readonly meters = new Map<string, MeterObject>();
  /** Every accepted meter event, in arrival order. */
  readonly meterEvents: MeterEventObject[] = [];
  readonly subscriptions = new Map<string, SubscriptionObject>();
  readonly invoices = new Map<string, InvoiceObject>();
  /** Keyed by `${apiKey} ${idempotencyKey}`. */
  readonly idempotency = new Map<string, IdempotentResult>();

  clear(): void {
    this.customers.clear();
    this.deletedCustomers.clear();
    this.products.clear();
    this.prices.clear();
    this.meters.clear();
    this.meterEvents.length = 0;
    this.subscriptions.clear();
    this.invoices.clear();
    this.idempotency.clear();
  }
}

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A Stripe-looking id: the prefix, then `length` random base-62 characters. */
export function newId(prefix: string, length = 14): string {
  const bytes = randomBytes(length);
  let id = prefix;
  for (const byte of bytes) id += ALPHABET[byte % ALPHABET.length];
  return id;
}

/**
 * The billing period containing `now` for a subscription anchored at `anchor`, stepping whole
 * intervals from the anchor. Months step like Stripe's: from the anchor's day of month, clamped to
 * the month's last day (an anchor on Jan 31 renews on Feb 28/29, then Mar 31).
 */
export function currentPeriod(
  anchor: number,
  interval: 'day' | 'week' | 'month' | 'year',
  intervalCount: number,
  now: number,
): { start: number; end: number } {
  const at = (n: number): number => stepFrom(anchor, interval, intervalCount * n);
  let n = 0;
  while (at(n + 1) <= now) n++;
  return { start: at(n), end: at(n + 1) };
}

function stepFrom(anchor: number, interval: 'day' | 'week' | 'month' | 'year', steps: number): number {
  switch (interval) {
    case 'day':
      return anchor + steps * 86_400;
    case 'week':
      return anchor + steps * 7 * 86_400;
    case 'month':
    case 'year': {
      const months = interval === 'year' ? steps * 12 : steps;
      const start = new Date(anchor * 1000);
      const year = start.getUTCFullYear();
      const month = start.getUTCMonth() + months;
      const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
      const day = Math.min(start.getUTCDate(), lastDay);
      return Math.floor(
        Date.UTC(year, month, day, start.getUTCHours(), start.getUTCMinutes(), start.getUTCSeconds()) / 1000,
      );
    }
  }
}
