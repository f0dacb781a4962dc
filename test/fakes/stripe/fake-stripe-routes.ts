import type { FormObject, FormValue } from './form-body';
import {
  addDecimal,
  formatDecimal,
  isDecimalString,
  mulDecimal,
  parseDecimal,
  roundHalfUp,
  ZERO,
  type DecimalAmount,
} from './decimal-amount';
import {
  currentPeriod,
  newId,
  type CustomerObject,
  type FakeStripeState,
  type InvoiceLineObject,
  type InvoiceObject,
  type MeterEventObject,
  type MeterObject,
  type PriceObject,
  type ProductObject,
  type SubscriptionItemObject,
  type SubscriptionObject,
} from './fake-stripe-state';
import {
  StripeApiError,
  invalidRequest,
  missingParam,
  paramResourceMissing,
  resourceMissing,
} from './stripe-errors';
import {
  metadataParam,
  oneOf,
  onlyKnown,
  onlyKnownIn,
  optionalArray,
  optionalBoolean,
  optionalHash,
  optionalInteger,
  optionalString,
  requiredString,
} from './stripe-params';

/** What a route handler sees: the state, the clock (seconds since the epoch) and the parsed params. */
export interface RouteContext {
  state: FakeStripeState;
  nowSeconds: number;
  params: FormObject;
  /** Captures of the route's pattern (the `:id` parts), URL-decoded. */
  pathParams: string[];
}

export interface RouteResult {
  status: number;
  body: unknown;
}

interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  pattern: RegExp;
  handle(ctx: RouteContext): RouteResult;
}

/** How far back a meter event's timestamp may go: 35 calendar days (Stripe's documented limit). */
export const METER_EVENT_MAX_AGE_SECONDS = 35 * 86_400;
/** How far ahead a meter event's timestamp may go: 5 minutes (Stripe's documented limit). */
export const METER_EVENT_MAX_FUTURE_SECONDS = 5 * 60;
/** Stripe enforces identifier uniqueness "within a rolling period of at least 24 hours". */
export const METER_EVENT_IDENTIFIER_WINDOW_SECONDS = 24 * 3600;

const ok = (body: unknown): RouteResult => ({ status: 200, body });

function listOf<T extends { id: string }>(
  all: Iterable<T>,
  ctx: RouteContext,
  url: string,
  kind: string,
  filter: (item: T) => boolean = () => true,
): RouteResult {
  // Stripe lists newest first.
  const items = [...all].filter(filter).reverse();
  const limit = optionalInteger(ctx.params, 'limit') ?? 10;
  if (limit < 1 || limit > 100) {
    throw invalidRequest('This value must be greater than or equal to 1 and less than or equal to 100.', { param: 'limit' });
  }
  let start = 0;
  let end = items.length;
  const after = optionalString(ctx.params, 'starting_after');
  const before = optionalString(ctx.params, 'ending_before');
  if (after !== undefined) {
    const index = items.findIndex((item) => item.id === after);
    if (index < 0) throw paramResourceMissing(kind, after, 'starting_after');
    start = index + 1;
  } else if (before !== undefined) {
    const index = items.findIndex((item) => item.id === before);
    if (index < 0) throw paramResourceMissing(kind, before, 'ending_before');
    end = index;
    start = Math.max(0, end - limit);
  }
  const page = items.slice(start, Math.min(end, start + limit));
  const hasMore = before !== undefined ? start > 0 : start + page.length < end;
  return ok({ object: 'list', data: page, has_more: hasMore, url });
}

function found<T>(map: Map<string, T>, id: string, kind: string): T {
  const item = map.get(id);
  if (item === undefined) throw resourceMissing(kind, id, 'id');
  return item;
}

function currencyParam(params: FormObject): string {
  const currency = requiredString(params, 'currency').toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) throw invalidRequest(`Invalid currency: ${currency}`, { param: 'currency' });
  return currency;
}

function createCustomer(ctx: RouteContext): RouteResult {
  const { params } = ctx;
  onlyKnown(params, ['address', 'balance', 'description', 'email', 'invoice_prefix', 'invoice_settings', 'metadata', 'name', 'phone', 'preferred_locales', 'shipping', 'tax', 'tax_exempt', 'test_clock']);
  const customer: CustomerObject = {
    id: newId('cus_'),
    object: 'customer',
    created: ctx.nowSeconds,
    livemode: false,
    name: optionalString(params, 'name') ?? null,
    email: optionalString(params, 'email') ?? null,
    description: optionalString(params, 'description') ?? null,
    phone: optionalString(params, 'phone') ?? null,
    metadata: metadataParam(params),
    balance: optionalInteger(params, 'balance') ?? 0,
    currency: null,
    delinquent: false,
    invoice_prefix: optionalString(params, 'invoice_prefix') ?? newId('', 8).toUpperCase(),
  };
  ctx.state.customers.set(customer.id, customer);
  return ok(customer);
}

function createProduct(ctx: RouteContext): RouteResult {
  const { params } = ctx;
  onlyKnown(params, ['active', 'default_price_data', 'description', 'id', 'images', 'marketing_features', 'metadata', 'name', 'package_dimensions', 'shippable', 'statement_descriptor', 'tax_code', 'unit_label', 'url']);
  const id = optionalString(params, 'id') ?? newId('prod_');
  if (ctx.state.products.has(id)) {
    throw invalidRequest(`Product already exists.`, { code: 'resource_already_exists', param: 'id' });
  }
  const product: ProductObject = {
    id,
    object: 'product',
    created: ctx.nowSeconds,
    updated: ctx.nowSeconds,
    livemode: false,
    active: optionalBoolean(params, 'active') ?? true,
    name: requiredString(params, 'name'),
    description: optionalString(params, 'description') ?? null,
    metadata: metadataParam(params),
    type: 'service',
  };
  ctx.state.products.set(product.id, product);
  return ok(product);
}

function createPrice(ctx: RouteContext): RouteResult {
  const { params, state } = ctx;
  onlyKnown(params, ['active', 'billing_scheme', 'currency', 'currency_options', 'custom_unit_amount', 'lookup_key', 'metadata', 'nickname', 'product', 'product_data', 'recurring', 'tax_behavior', 'tiers', 'tiers_mode', 'transfer_lookup_key', 'transform_quantity', 'unit_amount', 'unit_amount_decimal']);
  const currency = currencyParam(params);

  let productId = optionalString(params, 'product');
  const productData = optionalHash(params, 'product_data');
  if (productId !== undefined && productData !== undefined) {
    throw invalidRequest('You may only specify one of these parameters: product, product_data.', { param: 'product' });
  }
  if (productId === undefined && productData === undefined) throw missingParam('product');
  if (productId !== undefined && !state.products.has(productId)) throw paramResourceMissing('product', productId, 'product');
  if (productData !== undefined) {
    const created = createProduct({ ...ctx, params: { ...productData } }).body as ProductObject;
    productId = created.id;
  }

  const billingScheme = oneOf(optionalString(params, 'billing_scheme') ?? 'per_unit', ['per_unit', 'tiered'] as const, 'billing_scheme');
  if (billingScheme === 'tiered') {
    throw invalidRequest('The fake Stripe server does not implement tiered prices.', { param: 'billing_scheme' });
  }
  const unitAmount = optionalInteger(params, 'unit_amount');
  const unitAmountDecimal = optionalString(params, 'unit_amount_decimal');
  if (unitAmount !== undefined && unitAmountDecimal !== undefined) {
    throw invalidRequest('You may only specify one of these parameters: unit_amount, unit_amount_decimal.', { param: 'unit_amount' });
  }
  if (unitAmount === undefined && unitAmountDecimal === undefined) throw missingParam('unit_amount');
  if (unitAmount !== undefined && unitAmount < 0) {
    throw invalidRequest('This value must be greater than or equal to 0.', { param: 'unit_amount' });
  }
  // Stripe: "a decimal value in cents ... with at most 12 decimal places".
  if (unitAmountDecimal !== undefined && !/^\d+(\.\d{1,12})?$/.test(unitAmountDecimal)) {
    throw invalidRequest(`Invalid decimal: ${unitAmountDecimal}`, { param: 'unit_amount_decimal' });
  }
  const decimal = unitAmountDecimal !== undefined ? formatDecimal(parseDecimal(unitAmountDecimal)) : String(unitAmount);
  const wholeCents = /^\d+$/.test(decimal) ? Number(decimal) : null;

  let recurring: PriceObject['recurring'] = null;
  const recurringHash = optionalHash(params, 'recurring');
  if (recurringHash !== undefined) {
    onlyKnownIn(recurringHash, 'recurring', ['interval', 'interval_count', 'meter', 'trial_period_days', 'usage_type']);
    const interval = oneOf(requiredString(recurringHash, 'interval', 'recurring[interval]'), ['day', 'week', 'month', 'year'] as const, 'recurring[interval]');
    const usageType = oneOf(optionalString(recurringHash, 'usage_type', 'recurring[usage_type]') ?? 'licensed', ['licensed', 'metered'] as const, 'recurring[usage_type]');
    const meter = optionalString(recurringHash, 'meter', 'recurring[meter]');
    if (usageType === 'metered' && meter === undefined) throw missingParam('recurring[meter]');
    if (meter !== undefined) {
      if (usageType !== 'metered') {
        throw invalidRequest('recurring[meter] can only be set when recurring[usage_type] is metered.', { param: 'recurring[meter]' });
      }
      if (!state.meters.has(meter)) throw paramResourceMissing('billing.meter', meter, 'recurring[meter]');
    }
    recurring = {
      interval,
      interval_count: optionalInteger(recurringHash, 'interval_count', 'recurring[interval_count]') ?? 1,
      meter: meter ?? null,
      usage_type: usageType,
      trial_period_days: null,
    };
  }

  const price: PriceObject = {
    id: newId('price_', 24),
    object: 'price',
    created: ctx.nowSeconds,
    livemode: false,
    active: optionalBoolean(params, 'active') ?? true,
    billing_scheme: billingScheme,
    currency,
    lookup_key: optionalString(params, 'lookup_key') ?? null,
    metadata: metadataParam(params),
    nickname: optionalString(params, 'nickname') ?? null,
    product: productId as string,
    recurring,
    tax_behavior: oneOf(optionalString(params, 'tax_behavior') ?? 'unspecified', ['exclusive', 'inclusive', 'unspecified'] as const, 'tax_behavior'),
    type: recurring === null ? 'one_time' : 'recurring',
    unit_amount: wholeCents,
    unit_amount_decimal: decimal,
  };
  state.prices.set(price.id, price);
  return ok(price);
}

function createMeter(ctx: RouteContext): RouteResult {
  const { params, state } = ctx;
  onlyKnown(params, ['customer_mapping', 'default_aggregation', 'display_name', 'event_name', 'event_time_window', 'value_settings']);
  const displayName = requiredString(params, 'display_name');
  const eventName = requiredString(params, 'event_name');
  const aggregation = optionalHash(params, 'default_aggregation');
  if (aggregation === undefined) throw missingParam('default_aggregation');
  onlyKnownIn(aggregation, 'default_aggregation', ['formula']);
  const formula = oneOf(requiredString(aggregation, 'formula', 'default_aggregation[formula]'), ['count', 'last', 'sum'] as const, 'default_aggregation[formula]');
  const mapping = optionalHash(params, 'customer_mapping');
  onlyKnownIn(mapping, 'customer_mapping', ['event_payload_key', 'type']);
  const valueSettings = optionalHash(params, 'value_settings');
  onlyKnownIn(valueSettings, 'value_settings', ['event_payload_key']);
  const window = optionalString(params, 'event_time_window');
  // "You can only use an event name with a single meter" (Stripe's usage-based billing guide).
  for (const meter of state.meters.values()) {
    if (meter.status === 'active' && meter.event_name === eventName) {
      throw invalidRequest(`An active meter with event_name ${eventName} already exists.`, { param: 'event_name' });
    }
  }
  const meter: MeterObject = {
    id: newId('mtr_test_', 24),
    object: 'billing.meter',
    created: ctx.nowSeconds,
    updated: ctx.nowSeconds,
    livemode: false,
    display_name: displayName,
    event_name: eventName,
    event_time_window: window === undefined ? null : oneOf(window, ['day', 'hour'] as const, 'event_time_window'),
    status: 'active',
    status_transitions: { deactivated_at: null },
    customer_mapping: {
      event_payload_key: mapping === undefined ? 'stripe_customer_id' : requiredString(mapping, 'event_payload_key', 'customer_mapping[event_payload_key]'),
      type: oneOf(mapping === undefined ? 'by_id' : requiredString(mapping, 'type', 'customer_mapping[type]'), ['by_id'] as const, 'customer_mapping[type]'),
    },
    default_aggregation: { formula },
    value_settings: {
      event_payload_key: valueSettings === undefined ? 'value' : requiredString(valueSettings, 'event_payload_key', 'value_settings[event_payload_key]'),
    },
  };
  state.meters.set(meter.id, meter);
  return ok(meter);
}

/**
 * POST /v1/billing/meter_events with Stripe's synchronous checks: a known active meter for the
 * event name, the identifier not seen in the last 24 hours, the timestamp inside [now - 35 days,
 * now + 5 minutes], the customer mapping key present and the value a number. (Stripe checks that
 * the customer exists asynchronously, reporting through `v1.billing.meter.error_report_triggered`;
 * the fake likewise accepts an unknown customer, and the event then bills nobody.)
 */
function createMeterEvent(ctx: RouteContext): RouteResult {
  const { params, state, nowSeconds } = ctx;
  onlyKnown(params, ['event_name', 'identifier', 'payload', 'timestamp']);
  const eventName = requiredString(params, 'event_name');
  const payloadHash = optionalHash(params, 'payload');
  if (payloadHash === undefined) throw missingParam('payload');
  const payload: Record<string, string> = {};
  for (const [key, value] of Object.entries(payloadHash)) {
    if (typeof value !== 'string') throw invalidRequest(`Invalid string: payload[${key}]`, { param: `payload[${key}]` });
    payload[key] = value;
  }
  const timestamp = optionalInteger(params, 'timestamp') ?? nowSeconds;
  const identifier = optionalString(params, 'identifier') ?? newId('', 32);

  const meter = [...state.meters.values()].find((m) => m.status === 'active' && m.event_name === eventName);
  if (meter === undefined) {
    throw invalidRequest(`No active meter found for event name "${eventName}".`, { param: 'event_name' });
  }
  const oldest = nowSeconds - METER_EVENT_MAX_AGE_SECONDS;
  if (timestamp < oldest) {
    // Wording as Stripe answers it (see fake-stripe.ts for the sources); Stripe sends no `code` with it.
    throw invalidRequest(
      `The event timestamp cannot be more than 35 days in past. Expected a timestamp greater than or equal to ${oldest}.`,
    );
  }
  const latest = nowSeconds + METER_EVENT_MAX_FUTURE_SECONDS;
  if (timestamp > latest) {
    throw invalidRequest(
      `The event timestamp cannot be more than 5 minutes in future. Expected a timestamp less than or equal to ${latest}.`,
    );
  }
  const customerKey = meter.customer_mapping.event_payload_key;
  if (payload[customerKey] === undefined || payload[customerKey] === '') {
    throw invalidRequest(`Customer mapping key ${customerKey} not found in payload.`, { param: `payload[${customerKey}]` });
  }
  const valueKey = meter.value_settings.event_payload_key;
  if (meter.default_aggregation.formula !== 'count') {
    const value = payload[valueKey];
    if (value === undefined) {
      throw invalidRequest(`Value key ${valueKey} not found in payload.`, { param: `payload[${valueKey}]` });
    }
    if (!isDecimalString(value)) {
      throw invalidRequest(`Invalid value for payload[${valueKey}]: "${value}" is not a number.`, { param: `payload[${valueKey}]` });
    }
  }
  const windowStart = nowSeconds - METER_EVENT_IDENTIFIER_WINDOW_SECONDS;
  if (state.meterEvents.some((e) => e.identifier === identifier && e.created >= windowStart)) {
    // Stripe's wording and shape as seen in the wild: 400 invalid_request_error, no `code`,
    // `Stripe-Should-Retry: false`.
    throw new StripeApiError(
      400,
      'invalid_request_error',
      `An event already exists with identifier ${identifier}.`,
      {},
      { 'Stripe-Should-Retry': 'false' },
    );
  }
  const event: MeterEventObject = {
    object: 'billing.meter_event',
    created: nowSeconds,
    livemode: false,
    event_name: eventName,
    identifier,
    payload,
    timestamp,
  };
  state.meterEvents.push(event);
  return ok(event);
}

function subscriptionView(sub: SubscriptionObject, nowSeconds: number): SubscriptionObject {
  // The stored periods are the first ones; a read reports the period containing `now`.
  const items = sub.items.data.map((item): SubscriptionItemObject => {
    const recurring = item.price.recurring;
    if (recurring === null) return item;
    const period = periodOf(sub.start_date, sub.billing_cycle_anchor, recurring.interval, recurring.interval_count, nowSeconds);
    return { ...item, current_period_start: period.start, current_period_end: period.end };
  });
  return { ...sub, items: { ...sub.items, data: items } };
}

/**
 * The period containing `now`: before a future billing_cycle_anchor, the first (partial) period runs from the
 * start to the anchor (Stripe's "billing cycle anchor" with proration off); then whole intervals from the anchor.
 */
function periodOf(
  start: number,
  anchor: number,
  interval: 'day' | 'week' | 'month' | 'year',
  intervalCount: number,
  now: number,
): { start: number; end: number } {
  if (anchor > start && now < anchor) return { start, end: anchor };
  return currentPeriod(anchor, interval, intervalCount, now);
}

function createSubscription(ctx: RouteContext): RouteResult {
  const { params, state, nowSeconds } = ctx;
  onlyKnown(params, ['add_invoice_items', 'application_fee_percent', 'automatic_tax', 'backdate_start_date', 'billing_cycle_anchor', 'cancel_at', 'cancel_at_period_end', 'collection_method', 'currency', 'customer', 'days_until_due', 'default_payment_method', 'default_tax_rates', 'description', 'discounts', 'items', 'metadata', 'off_session', 'payment_behavior', 'payment_settings', 'proration_behavior', 'trial_end', 'trial_period_days']);
  const customerId = requiredString(params, 'customer');
  if (!state.customers.has(customerId)) throw paramResourceMissing('customer', customerId, 'customer');
  const itemsParam = optionalArray(params, 'items');
  if (itemsParam === undefined || itemsParam.length === 0) throw missingParam('items');
  const backdate = optionalInteger(params, 'backdate_start_date');
  if (backdate !== undefined && backdate > nowSeconds) {
    throw invalidRequest('The backdated subscription start date must be in the past.', { param: 'backdate_start_date' });
  }
  const start = backdate ?? nowSeconds;
  const anchorParam = optionalInteger(params, 'billing_cycle_anchor');
  if (anchorParam !== undefined && anchorParam < nowSeconds) {
    throw invalidRequest('billing_cycle_anchor cannot be in the past.', { param: 'billing_cycle_anchor' });
  }
  const anchor = anchorParam ?? start;
  const subId = newId('sub_', 24);
  const items: SubscriptionItemObject[] = itemsParam.map((raw: FormValue, index) => {
    const param = `items[${index}]`;
    if (typeof raw === 'string' || Array.isArray(raw)) throw invalidRequest(`Invalid object: ${param}`, { param });
    onlyKnownIn(raw, param, ['discounts', 'metadata', 'plan', 'price', 'price_data', 'quantity', 'tax_rates']);
    const priceId = requiredString(raw, 'price', `${param}[price]`);
    const price = state.prices.get(priceId);
    if (price === undefined) throw paramResourceMissing('price', priceId, `${param}[price]`);
    if (price.recurring === null) {
      throw invalidRequest(`The price specified is set to \`type=one_time\` but this field only accepts prices with \`type=recurring\`.`, { param: `${param}[price]` });
    }
    const quantity = optionalInteger(raw, 'quantity', `${param}[quantity]`);
    if (price.recurring.usage_type === 'metered' && quantity !== undefined) {
      throw invalidRequest(`Quantity should not be specified where usage_type is \`metered\`. Remove quantity from \`${param}\`.`, { param: `${param}[quantity]` });
    }
    const period = periodOf(start, anchor, price.recurring.interval, price.recurring.interval_count, nowSeconds);
    const item: SubscriptionItemObject = {
      id: newId('si_'),
      object: 'subscription_item',
      created: nowSeconds,
      current_period_start: period.start,
      current_period_end: period.end,
      discounts: [],
      metadata: metadataParam(raw),
      price,
      subscription: subId,
      tax_rates: [],
    };
    if (price.recurring.usage_type === 'licensed') item.quantity = quantity ?? 1;
    return item;
  });
  const currencies = new Set(items.map((item) => item.price.currency));
  if (currencies.size > 1) {
    throw invalidRequest('All prices on a subscription must have the same currency.', { param: 'items' });
  }
  const sub: SubscriptionObject = {
    id: subId,
    object: 'subscription',
    created: nowSeconds,
    livemode: false,
    billing_cycle_anchor: anchor,
    cancel_at_period_end: optionalBoolean(params, 'cancel_at_period_end') ?? false,
    canceled_at: null,
    collection_method: oneOf(optionalString(params, 'collection_method') ?? 'charge_automatically', ['charge_automatically', 'send_invoice'] as const, 'collection_method'),
    currency: items[0].price.currency,
    customer: customerId,
    items: { object: 'list', data: items, has_more: false, url: `/v1/subscription_items?subscription=${subId}` },
    latest_invoice: null,
    metadata: metadataParam(params),
    start_date: start,
    status: 'active',
  };
  state.subscriptions.set(sub.id, sub);
  return ok(subscriptionView(sub, nowSeconds));
}

/** POST /v1/subscription_items: adds a price to a subscription (one item per price, as Stripe insists). */
function createSubscriptionItem(ctx: RouteContext): RouteResult {
  const { params, state, nowSeconds } = ctx;
  onlyKnown(params, ['discounts', 'metadata', 'payment_behavior', 'price', 'price_data', 'proration_behavior', 'proration_date', 'quantity', 'subscription', 'tax_rates']);
  const subId = requiredString(params, 'subscription');
  const sub = state.subscriptions.get(subId);
  if (sub === undefined) throw paramResourceMissing('subscription', subId, 'subscription');
  // Stripe's wording for any change to a canceled subscription (seen in the wild, e.g. fjordllc/bootcamp#10095)
  if (sub.status === 'canceled') throw invalidRequest('A canceled subscription can only update its cancellation_details and metadata.');
  const priceId = requiredString(params, 'price');
  const price = state.prices.get(priceId);
  if (price === undefined) throw paramResourceMissing('price', priceId, 'price');
  if (price.recurring === null) {
    throw invalidRequest(`The price specified is set to \`type=one_time\` but this field only accepts prices with \`type=recurring\`.`, { param: 'price' });
  }
  if (price.currency !== sub.currency) throw invalidRequest('All prices on a subscription must have the same currency.', { param: 'price' });
  if (sub.items.data.some((i) => i.price.id === priceId)) {
    throw invalidRequest(`Cannot add multiple subscription items with the same plan: ${priceId}`, { param: 'price' });
  }
  const quantity = optionalInteger(params, 'quantity');
  if (price.recurring.usage_type === 'metered' && quantity !== undefined) {
    throw invalidRequest('Quantity should not be specified where usage_type is `metered`. Remove quantity from `quantity`.', { param: 'quantity' });
  }
  const period = periodOf(sub.start_date, sub.billing_cycle_anchor, price.recurring.interval, price.recurring.interval_count, nowSeconds);
  const item: SubscriptionItemObject = {
    id: newId('si_'),
    object: 'subscription_item',
    created: nowSeconds,
    current_period_start: period.start,
    current_period_end: period.end,
    discounts: [],
    metadata: metadataParam(params),
    price,
    subscription: sub.id,
    tax_rates: [],
  };
  if (price.recurring.usage_type === 'licensed') item.quantity = quantity ?? 1;
  sub.items.data.push(item);
  return ok(item);
}

/**
 * DELETE /v1/subscriptions/:id: cancels at once. Canceling a canceled subscription answers "No such
 * subscription" (404 resource_missing), as Stripe does (stripe/stripe-go#1887).
 */
function cancelSubscription(ctx: RouteContext): RouteResult {
  const { state, nowSeconds } = ctx;
  const id = ctx.pathParams[0];
  const sub = state.subscriptions.get(id);
  if (sub === undefined || sub.status === 'canceled') throw resourceMissing('subscription', id, 'id');
  sub.status = 'canceled';
  sub.canceled_at = nowSeconds;
  return ok(subscriptionView(sub, nowSeconds));
}

/** DELETE /v1/customers/:id: the customer is gone (a retrieve says `deleted: true`) and its subscriptions are canceled. */
function deleteCustomer(ctx: RouteContext): RouteResult {
  const { state, nowSeconds } = ctx;
  const id = ctx.pathParams[0];
  if (!state.customers.has(id)) throw resourceMissing('customer', id, 'id');
  state.customers.delete(id);
  state.deletedCustomers.add(id);
  for (const sub of state.subscriptions.values()) {
    if (sub.customer === id && sub.status !== 'canceled') {
      sub.status = 'canceled';
      sub.canceled_at = nowSeconds;
    }
  }
  return ok({ id, object: 'customer', deleted: true });
}

function retrieveCustomer(ctx: RouteContext): RouteResult {
  const id = ctx.pathParams[0];
  if (ctx.state.deletedCustomers.has(id)) return ok({ id, object: 'customer', deleted: true });
  return ok(found(ctx.state.customers, id, 'customer'));
}

/** The aggregated usage of one meter for one customer over [start, end). */
function meterUsage(state: FakeStripeState, meter: MeterObject, customer: string, start: number, end: number): DecimalAmount {
  const events = state.meterEvents.filter(
    (e) =>
      e.event_name === meter.event_name &&
      e.payload[meter.customer_mapping.event_payload_key] === customer &&
      e.timestamp >= start &&
      e.timestamp < end,
  );
  const valueOf = (e: MeterEventObject): DecimalAmount => parseDecimal(e.payload[meter.value_settings.event_payload_key]);
  switch (meter.default_aggregation.formula) {
    case 'count':
      return { units: BigInt(events.length), scale: 0 };
    case 'sum':
      return events.reduce((total, e) => addDecimal(total, valueOf(e)), ZERO);
    case 'last': {
      // Latest by event time; among equal times, the one that arrived last.
      let last: MeterEventObject | undefined;
      for (const e of events) if (last === undefined || e.timestamp >= last.timestamp) last = e;
      return last === undefined ? ZERO : valueOf(last);
    }
  }
}

/**
 * POST /v1/invoices/create_preview for a subscription: one line per item for the current period.
 * A metered line's quantity is its meter's aggregate of the customer's events timed inside the
 * period; every line's amount is quantity x unit_amount_decimal rounded to the nearest cent (ties
 * away from zero) at the line level, and the invoice total is the sum of the rounded lines (no tax,
 * discounts or customer balance). A licensed line charges quantity x unit amount for the same
 * period (Stripe bills licensed items in advance for the next period; the fake does not model that).
 */
function createInvoicePreview(ctx: RouteContext): RouteResult {
  const { params, state, nowSeconds } = ctx;
  onlyKnown(params, ['automatic_tax', 'currency', 'customer', 'customer_details', 'discounts', 'invoice_items', 'issuer', 'on_behalf_of', 'preview_mode', 'schedule', 'schedule_details', 'subscription', 'subscription_details']);
  const customerId = optionalString(params, 'customer');
  const subscriptionId = optionalString(params, 'subscription');
  if (customerId !== undefined && !state.customers.has(customerId)) throw paramResourceMissing('customer', customerId, 'customer');
  let sub: SubscriptionObject | undefined;
  if (subscriptionId !== undefined) {
    sub = state.subscriptions.get(subscriptionId);
    if (sub === undefined) throw paramResourceMissing('subscription', subscriptionId, 'subscription');
    if (customerId !== undefined && sub.customer !== customerId) {
      throw invalidRequest(`The subscription ${subscriptionId} does not belong to customer ${customerId}.`, { param: 'subscription' });
    }
  } else if (customerId !== undefined) {
    // "you will retrieve the next upcoming invoice from among the customer's subscriptions"
    sub = [...state.subscriptions.values()]
      .filter((s) => s.customer === customerId && s.status === 'active')
      .map((s) => subscriptionView(s, nowSeconds))
      .sort((a, b) => Math.min(...a.items.data.map((i) => i.current_period_end)) - Math.min(...b.items.data.map((i) => i.current_period_end)))[0];
    if (sub === undefined) throw invalidRequest(`Nothing to invoice for customer`, { code: 'invoice_upcoming_none' });
  } else {
    throw missingParam('customer');
  }
  const view = subscriptionView(sub, nowSeconds);
  const invoiceId = newId('upcoming_in_', 24);
  const lines: InvoiceLineObject[] = view.items.data.map((item) => {
    const price = item.price;
    let quantity: DecimalAmount;
    if (price.recurring?.usage_type === 'metered' && price.recurring.meter !== null) {
      const meter = state.meters.get(price.recurring.meter);
      quantity = meter === undefined ? ZERO : meterUsage(state, meter, view.customer, item.current_period_start, item.current_period_end);
    } else {
      quantity = { units: BigInt(item.quantity ?? 1), scale: 0 };
    }
    const unit = parseDecimal(price.unit_amount_decimal ?? '0');
    const amount = Number(roundHalfUp(mulDecimal(quantity, unit)));
    const quantityText = formatDecimal(quantity);
    const product = state.products.get(price.product);
    return {
      id: newId('il_tmp_', 24),
      object: 'line_item',
      amount,
      currency: price.currency,
      description: `${quantityText} × ${product?.name ?? price.product} (at ${formatCents(price.unit_amount_decimal ?? '0', price.currency)} / unit)`,
      discount_amounts: [],
      discountable: true,
      discounts: [],
      invoice: invoiceId,
      livemode: false,
      metadata: {},
      parent: {
        type: 'subscription_item_details',
        invoice_item_details: null,
        subscription_item_details: {
          invoice_item: null,
          proration: false,
          proration_details: { credited_items: null },
          subscription: view.id,
          subscription_item: item.id,
        },
      },
      period: { start: item.current_period_start, end: item.current_period_end },
      pretax_credit_amounts: [],
      pricing: {
        type: 'price_details',
        price_details: { price: price.id, product: price.product },
        unit_amount_decimal: price.unit_amount_decimal,
      },
      quantity: Number(quantityText),
      quantity_decimal: quantityText,
      subtotal: amount,
      taxes: [],
    };
  });
  const total = lines.reduce((sum, line) => sum + line.amount, 0);
  const periodStart = Math.min(...lines.map((l) => l.period.start));
  const periodEnd = Math.max(...lines.map((l) => l.period.end));
  const invoice: InvoiceObject = {
    id: invoiceId,
    object: 'invoice',
    created: nowSeconds,
    livemode: false,
    amount_due: total,
    amount_paid: 0,
    amount_remaining: total,
    billing_reason: 'upcoming',
    collection_method: view.collection_method,
    currency: view.currency,
    customer: view.customer,
    lines: { object: 'list', data: lines, has_more: false, total_count: lines.length, url: `/v1/invoices/${invoiceId}/lines` },
    metadata: {},
    parent: { type: 'subscription_details', quote_details: null, subscription_details: { metadata: view.metadata, subscription: view.id } },
    period_start: periodStart,
    period_end: periodEnd,
    status: 'draft',
    subtotal: total,
    subtotal_excluding_tax: total,
    total,
    total_excluding_tax: total,
    total_discount_amounts: [],
    total_taxes: [],
  };
  return ok(invoice);
}

function formatCents(decimalCents: string, currency: string): string {
  const cents = parseDecimal(decimalCents);
  const major = formatDecimal({ units: cents.units, scale: cents.scale + 2 });
  return `${currency.toUpperCase()} ${major}`;
}

/** Every endpoint the fake serves. Paths are matched against the URL path without the query. */
export const ROUTES: readonly Route[] = [
  { method: 'POST', pattern: /^\/v1\/customers$/, handle: createCustomer },
  { method: 'GET', pattern: /^\/v1\/customers$/, handle: (ctx) => listOf(ctx.state.customers.values(), ctx, '/v1/customers', 'customer', byEmail(ctx)) },
  { method: 'GET', pattern: /^\/v1\/customers\/([^/]+)$/, handle: retrieveCustomer },
  { method: 'DELETE', pattern: /^\/v1\/customers\/([^/]+)$/, handle: deleteCustomer },
  { method: 'POST', pattern: /^\/v1\/products$/, handle: createProduct },
  { method: 'GET', pattern: /^\/v1\/products$/, handle: (ctx) => listOf(ctx.state.products.values(), ctx, '/v1/products', 'product') },
  { method: 'GET', pattern: /^\/v1\/products\/([^/]+)$/, handle: (ctx) => ok(found(ctx.state.products, ctx.pathParams[0], 'product')) },
  { method: 'POST', pattern: /^\/v1\/prices$/, handle: createPrice },
  { method: 'GET', pattern: /^\/v1\/prices$/, handle: (ctx) => listOf(ctx.state.prices.values(), ctx, '/v1/prices', 'price', byLookupKeys(ctx)) },
  { method: 'GET', pattern: /^\/v1\/prices\/([^/]+)$/, handle: (ctx) => ok(found(ctx.state.prices, ctx.pathParams[0], 'price')) },
  { method: 'POST', pattern: /^\/v1\/billing\/meters$/, handle: createMeter },
  { method: 'GET', pattern: /^\/v1\/billing\/meters$/, handle: (ctx) => listOf(ctx.state.meters.values(), ctx, '/v1/billing/meters', 'billing.meter', byStatus(ctx)) },
  { method: 'GET', pattern: /^\/v1\/billing\/meters\/([^/]+)$/, handle: (ctx) => ok(found(ctx.state.meters, ctx.pathParams[0], 'billing.meter')) },
  { method: 'POST', pattern: /^\/v1\/billing\/meter_events$/, handle: createMeterEvent },
  { method: 'POST', pattern: /^\/v1\/subscriptions$/, handle: createSubscription },
  { method: 'GET', pattern: /^\/v1\/subscriptions$/, handle: (ctx) => listSubscriptions(ctx) },
  { method: 'DELETE', pattern: /^\/v1\/subscriptions\/([^/]+)$/, handle: cancelSubscription },
  { method: 'GET', pattern: /^\/v1\/subscriptions\/([^/]+)$/, handle: (ctx) => ok(subscriptionView(found(ctx.state.subscriptions, ctx.pathParams[0], 'subscription'), ctx.nowSeconds)) },
  { method: 'POST', pattern: /^\/v1\/subscription_items$/, handle: createSubscriptionItem },
  { method: 'POST', pattern: /^\/v1\/invoices\/create_preview$/, handle: createInvoicePreview },
];

function byEmail(ctx: RouteContext): (c: CustomerObject) => boolean {
  const email = optionalString(ctx.params, 'email');
  return (c) => email === undefined || c.email === email;
}

function byLookupKeys(ctx: RouteContext): (p: PriceObject) => boolean {
  const keys = optionalArray(ctx.params, 'lookup_keys');
  if (keys === undefined) return () => true;
  const wanted = new Set(keys.filter((k): k is string => typeof k === 'string'));
  return (p) => p.lookup_key !== null && wanted.has(p.lookup_key);
}

function byStatus(ctx: RouteContext): (m: MeterObject) => boolean {
  const status = optionalString(ctx.params, 'status');
  return (m) => status === undefined || m.status === status;
}

function listSubscriptions(ctx: RouteContext): RouteResult {
  const customer = optionalString(ctx.params, 'customer');
  const views = [...ctx.state.subscriptions.values()].map((s) => subscriptionView(s, ctx.nowSeconds));
  return listOf(views, ctx, '/v1/subscriptions', 'subscription', (s) => customer === undefined || s.customer === customer);
}
