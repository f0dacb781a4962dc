import Stripe from 'stripe';
import { parseFormBody, splitKey } from './form-body';
import { startFakeStripe, type FakeStripe } from './fake-stripe';

const DAY = 86_400;
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Runs `fn`, expecting it to reject; returns the error for assertions. */
async function rejection(fn: () => Promise<unknown>): Promise<Record<string, unknown> & Error> {
  try {
    await fn();
  } catch (error) {
    return error as Record<string, unknown> & Error;
  }
  throw new Error('expected a rejection');
}

describe('parseFormBody (the wire format stripe-node sends)', () => {
  it('expands bracket paths into hashes and indexed arrays', () => {
    expect(parseFormBody('metadata[org]=acme&items[1][price]=p2&items[0][price]=p1&items[0][quantity]=3&name=A+b%26c')).toEqual({
      metadata: { org: 'acme' },
      items: [{ price: 'p1', quantity: '3' }, { price: 'p2' }],
      name: 'A b&c',
    });
  });

  it('appends for empty brackets, keeps percent-encoded brackets, and refuses prototype keys', () => {
    expect(parseFormBody('expand[]=a&expand[]=b&payload%5Bvalue%5D=5')).toEqual({ expand: ['a', 'b'], payload: { value: '5' } });
    expect(splitKey('a[b][0][c]')).toEqual(['a', 'b', '0', 'c']);
    expect(() => parseFormBody('__proto__[x]=1')).toThrow('Invalid parameter name');
    expect(() => parseFormBody('a=1&a[b]=2')).toThrow('cannot be both a value and a hash');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe('fake Stripe server, driven through the official stripe SDK', () => {
  let fake: FakeStripe;

  const client = (config: Stripe.StripeConfig = {}, key?: string): Stripe =>
    new Stripe(key ?? fake.apiKey, {
      host: fake.host,
      port: fake.port,
      protocol: 'http',
      maxNetworkRetries: 0,
      telemetry: false,
      ...config,
    });

  /** A customer on a metered subscription: tokens in and out on two meters, priced in fractional cents. */
  async function meteredSetup(stripe: Stripe) {
    const customer = await stripe.customers.create({ email: 'owner@example.test', metadata: { org: 'org_1' } });
    const product = await stripe.products.create({ name: 'Inference' });
    const input = await stripe.billing.meters.create({
      display_name: 'Input tokens',
      event_name: `input_tokens_${customer.id}`,
      default_aggregation: { formula: 'sum' },
      customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
      value_settings: { event_payload_key: 'value' },
    });
    const output = await stripe.billing.meters.create({
      display_name: 'Output tokens',
      event_name: `output_tokens_${customer.id}`,
      default_aggregation: { formula: 'sum' },
    });
    // $0.15 per 1M input tokens = 0.000015 cents per token; $0.60 per 1M output tokens = 0.00006.
    const inputPrice = await stripe.prices.create({
      product: product.id,
      currency: 'usd',
      billing_scheme: 'per_unit',
      unit_amount_decimal: Stripe.Decimal.from('0.000015'),
      recurring: { interval: 'month', usage_type: 'metered', meter: input.id },
    });
    const outputPrice = await stripe.prices.create({
      product: product.id,
      currency: 'usd',
      unit_amount_decimal: Stripe.Decimal.from('0.00006'),
      recurring: { interval: 'month', usage_type: 'metered', meter: output.id },
    });
    const subscription = await stripe.subscriptions.create({
      customer: customer.id,
      items: [{ price: inputPrice.id }, { price: outputPrice.id }],
    });
    return { customer, product, input, output, inputPrice, outputPrice, subscription };
  }

  beforeAll(async () => {
    fake = await startFakeStripe({ webhookSecret: 'whsec_test_secret' });
  });

  afterEach(() => {
    fake.reset();
  });

  afterAll(async () => {
    await fake.close();
  });

  it('creates and reads back customers, products, meters, prices and subscriptions in Stripe shapes', async () => {
    const stripe = client();
    const { customer, product, input, inputPrice, subscription } = await meteredSetup(stripe);

    expect(customer).toMatchObject({ object: 'customer', livemode: false, email: 'owner@example.test', metadata: { org: 'org_1' } });
    expect(customer.id).toMatch(/^cus_[A-Za-z0-9]{14}$/);
    expect(product.id).toMatch(/^prod_/);
    expect(input).toMatchObject({
      object: 'billing.meter',
      status: 'active',
      default_aggregation: { formula: 'sum' },
      customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
      value_settings: { event_payload_key: 'value' },
    });
    expect(input.id).toMatch(/^mtr_/);
    expect(inputPrice).toMatchObject({
      object: 'price',
      type: 'recurring',
      currency: 'usd',
      unit_amount: null,
      recurring: { interval: 'month', interval_count: 1, usage_type: 'metered', meter: input.id },
    });
    // The SDK turns the wire's decimal string into its Decimal type.
    expect(inputPrice.unit_amount_decimal?.toString()).toBe('0.000015');
    expect(subscription.id).toMatch(/^sub_/);
    expect(subscription).toMatchObject({ object: 'subscription', status: 'active', customer: customer.id, currency: 'usd' });
    const [item] = subscription.items.data;
    expect(item.price.id).toBe(inputPrice.id);
    expect(item.current_period_end - item.current_period_start).toBeGreaterThanOrEqual(28 * DAY);

    expect((await stripe.customers.retrieve(customer.id)).id).toBe(customer.id);
    expect((await stripe.billing.meters.retrieve(input.id)).event_name).toBe(input.event_name);
    expect((await stripe.subscriptions.retrieve(subscription.id)).items.data).toHaveLength(2);
    const meters = await stripe.billing.meters.list({ limit: 1 });
    expect(meters).toMatchObject({ object: 'list', has_more: true, url: '/v1/billing/meters' });
    const customers = await stripe.customers.list({ email: 'owner@example.test' });
    expect(customers.data.map((c) => c.id)).toEqual([customer.id]);

    expect(fake.state.customers.get(customer.id)?.email).toBe('owner@example.test');
    expect(fake.state.subscriptions.get(subscription.id)?.items.data.map((i) => i.price.id)).toHaveLength(2);

    // What went over the wire: form-encoded nested params, the SDK's headers.
    const priceCreate = fake.requests.find((r) => r.method === 'POST' && r.path === '/v1/prices');
    expect(priceCreate?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(priceCreate?.rawBody).toContain('recurring[usage_type]=metered');
    expect(priceCreate?.body).toMatchObject({ unit_amount_decimal: '0.000015', recurring: { meter: input.id, interval: 'month' } });
    expect(priceCreate?.stripeVersion).toBe(Stripe.API_VERSION);
    expect(priceCreate?.idempotencyKey).toMatch(/^stripe-node-retry-/);
    const subCreate = fake.requests.find((r) => r.path === '/v1/subscriptions' && r.method === 'POST');
    expect(subCreate?.body.items).toEqual([{ price: inputPrice.id }, { price: expect.any(String) }]);
  });

  it('answers Stripe errors for missing objects, unknown params and unknown routes', async () => {
    const stripe = client();
    const missing = await rejection(() => stripe.customers.retrieve('cus_doesnotexist'));
    expect(missing).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(missing).toMatchObject({ statusCode: 404, code: 'resource_missing', param: 'id', message: "No such customer: 'cus_doesnotexist'" });

    const unknown = await rejection(() => stripe.customers.create({ nickname: 'x' } as Stripe.CustomerCreateParams));
    expect(unknown).toMatchObject({ statusCode: 400, code: 'parameter_unknown', message: 'Received unknown parameter: nickname' });

    const product = await stripe.products.create({ name: 'P' });
    const noMeter = await rejection(() =>
      stripe.prices.create({ product: product.id, currency: 'usd', unit_amount: 1, recurring: { interval: 'month', usage_type: 'metered' } }),
    );
    expect(noMeter).toMatchObject({ statusCode: 400, code: 'parameter_missing', param: 'recurring[meter]' });

    const route = await rejection(() => stripe.rawRequest('GET', '/v1/nothing_here'));
    expect(route).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(route).toMatchObject({ statusCode: 404, message: expect.stringContaining('Unrecognized request URL (GET: /v1/nothing_here)') });
    expect(fake.state.customers.size).toBe(0);
  });

  it('cancels a subscription and deletes a customer as Stripe does; a canceled subscription takes no new items', async () => {
    const stripe = client();
    const { customer, subscription, outputPrice } = await meteredSetup(stripe);
    const canceled = await stripe.subscriptions.cancel(subscription.id);
    expect(canceled).toMatchObject({ id: subscription.id, status: 'canceled', canceled_at: expect.any(Number) });
    expect((await stripe.subscriptions.retrieve(subscription.id)).status).toBe('canceled');
    const again = await rejection(() => stripe.subscriptions.cancel(subscription.id));
    expect(again).toMatchObject({ statusCode: 404, code: 'resource_missing', message: `No such subscription: '${subscription.id}'` });
    const item = await rejection(() => stripe.subscriptionItems.create({ subscription: subscription.id, price: outputPrice.id }));
    expect(item).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(item).toMatchObject({ statusCode: 400, message: 'A canceled subscription can only update its cancellation_details and metadata.' });

    const other = await stripe.subscriptions.create({ customer: customer.id, items: [{ price: outputPrice.id }] });
    const deleted = await stripe.customers.del(customer.id);
    expect(deleted).toEqual({ id: customer.id, object: 'customer', deleted: true });
    expect(await stripe.customers.retrieve(customer.id)).toMatchObject({ id: customer.id, deleted: true });
    expect((await stripe.subscriptions.retrieve(other.id)).status).toBe('canceled');
    const sub = await rejection(() => stripe.subscriptions.create({ customer: customer.id, items: [{ price: outputPrice.id }] }));
    expect(sub).toMatchObject({ statusCode: 400, code: 'resource_missing', message: `No such customer: '${customer.id}'` });
  });

  it('stores meter events as received and rejects a repeated identifier with Stripe\'s error', async () => {
    const stripe = client();
    const { customer, input } = await meteredSetup(stripe);
    const timestamp = nowSeconds() - 60;

    const event = await stripe.billing.meterEvents.create({
      event_name: input.event_name,
      identifier: 'org_1:2026-01-01T00',
      timestamp,
      payload: { stripe_customer_id: customer.id, value: '1500' },
    });
    expect(event).toMatchObject({
      object: 'billing.meter_event',
      livemode: false,
      event_name: input.event_name,
      identifier: 'org_1:2026-01-01T00',
      timestamp,
      payload: { stripe_customer_id: customer.id, value: '1500' },
    });
    expect(fake.state.meterEvents).toEqual([expect.objectContaining({ identifier: 'org_1:2026-01-01T00', payload: { stripe_customer_id: customer.id, value: '1500' }, timestamp })]);

    // A resend under a fresh idempotency key (the SDK mints one per call) is refused, not counted twice.
    const duplicate = await rejection(() =>
      stripe.billing.meterEvents.create({
        event_name: input.event_name,
        identifier: 'org_1:2026-01-01T00',
        timestamp,
        payload: { stripe_customer_id: customer.id, value: '1500' },
      }),
    );
    expect(duplicate).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(duplicate).toMatchObject({
      statusCode: 400,
      type: 'StripeInvalidRequestError',
      rawType: 'invalid_request_error',
      code: undefined,
      message: 'An event already exists with identifier org_1:2026-01-01T00.',
    });
    expect((duplicate.headers as Record<string, string>)['stripe-should-retry']).toBe('false');
    expect(fake.state.meterEvents).toHaveLength(1);

    // Without an identifier Stripe generates one.
    const generated = await stripe.billing.meterEvents.create({ event_name: input.event_name, payload: { stripe_customer_id: customer.id, value: '1' } });
    expect(generated.identifier).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(generated.timestamp).toBeGreaterThanOrEqual(timestamp);
  });

  it('enforces the meter event timestamp window, a known event name and a numeric value', async () => {
    const stripe = client();
    const { customer, input } = await meteredSetup(stripe);
    const send = (extra: Partial<Stripe.Billing.MeterEventCreateParams>) =>
      stripe.billing.meterEvents.create({ event_name: input.event_name, payload: { stripe_customer_id: customer.id, value: '1' }, ...extra });

    const tooOld = await rejection(() => send({ identifier: 'old', timestamp: nowSeconds() - 36 * DAY }));
    expect(tooOld).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(tooOld.message).toMatch(/^The event timestamp cannot be more than 35 days in past\. Expected a timestamp greater than or equal to \d+\.$/);
    const tooNew = await rejection(() => send({ identifier: 'future', timestamp: nowSeconds() + 10 * 60 }));
    expect(tooNew).toMatchObject({ statusCode: 400, message: expect.stringContaining('5 minutes in future') });
    await expect(send({ identifier: 'edge-old', timestamp: nowSeconds() - 34 * DAY })).resolves.toMatchObject({ identifier: 'edge-old' });
    await expect(send({ identifier: 'edge-new', timestamp: nowSeconds() + 4 * 60 })).resolves.toMatchObject({ identifier: 'edge-new' });

    const noMeter = await rejection(() => send({ event_name: 'no_such_meter' }));
    expect(noMeter).toMatchObject({ statusCode: 400, message: 'No active meter found for event name "no_such_meter".' });
    const notNumber = await rejection(() => send({ payload: { stripe_customer_id: customer.id, value: 'ten' } }));
    expect(notNumber).toMatchObject({ statusCode: 400, param: 'payload[value]' });
    const noCustomer = await rejection(() => send({ payload: { value: '3' } }));
    expect(noCustomer).toMatchObject({ statusCode: 400, param: 'payload[stripe_customer_id]' });

    expect(fake.state.meterEvents.map((e) => e.identifier)).toEqual(['edge-old', 'edge-new']);
  });

  it('previews the invoice from the period\'s meter events: sum x unit price, rounded per line', async () => {
    const stripe = client();
    const { customer, input, output, inputPrice, outputPrice, subscription } = await meteredSetup(stripe);
    const other = await stripe.customers.create({ email: 'other@example.test' });
    const t = nowSeconds();
    const usage = async (event_name: string, identifier: string, value: string, who = customer.id, timestamp = t) =>
      stripe.billing.meterEvents.create({ event_name, identifier, timestamp, payload: { stripe_customer_id: who, value } });
    await usage(input.event_name, 'in-1', '1000000');
    await usage(input.event_name, 'in-2', '234567');
    await usage(output.event_name, 'out-1', '250000');
    await usage(output.event_name, 'out-2', '8333');
    await usage(input.event_name, 'in-other', '999999', other.id); // another customer's usage
    await usage(input.event_name, 'in-before', '777777', customer.id, t - 3600); // before the period began

    const preview = await stripe.invoices.createPreview({ customer: customer.id, subscription: subscription.id });

    // input: 1,234,567 x 0.000015 = 18.518505 cents -> 19; output: 258,333 x 0.00006 = 15.49998 -> 15.
    const byPrice = new Map(preview.lines.data.map((line) => [line.pricing?.price_details?.price, line]));
    const inputLine = byPrice.get(inputPrice.id);
    const outputLine = byPrice.get(outputPrice.id);
    expect(inputLine).toMatchObject({ object: 'line_item', quantity: 1_234_567, amount: 19, currency: 'usd' });
    expect(inputLine?.quantity_decimal?.toString()).toBe('1234567');
    expect(inputLine?.pricing?.unit_amount_decimal?.toString()).toBe('0.000015');
    expect(outputLine).toMatchObject({ quantity: 258_333, amount: 15 });
    expect(preview).toMatchObject({ object: 'invoice', customer: customer.id, currency: 'usd', subtotal: 34, total: 34, amount_due: 34 });
    expect(preview.id).toMatch(/^upcoming_in_/);
    expect(preview.parent?.subscription_details?.subscription).toBe(subscription.id);

    // With only the customer, Stripe previews the next invoice among the customer's subscriptions.
    const byCustomer = await stripe.invoices.createPreview({ customer: customer.id });
    expect(byCustomer.total).toBe(34);
    const nothing = await rejection(() => stripe.invoices.createPreview({ customer: other.id }));
    expect(nothing).toMatchObject({ statusCode: 400, message: 'Nothing to invoice for customer' });
  });

  it('after an injected 500 the SDK\'s own retry (same Idempotency-Key) creates exactly one object', async () => {
    const stripe = client({ maxNetworkRetries: 2 });
    fake.faults.push({ kind: '500', path: '/v1/customers', method: 'POST' });

    const customer = await stripe.customers.create({ email: 'retry@example.test' });

    expect(fake.state.customers.size).toBe(1);
    expect(fake.state.customers.has(customer.id)).toBe(true);
    const posts = fake.requests.filter((r) => r.path === '/v1/customers');
    expect(posts.map((r) => r.status)).toEqual([500, 200]);
    expect(posts[0].fault).toBe('500');
    expect(posts[1].idempotencyKey).toBe(posts[0].idempotencyKey);
    expect(fake.faults).toHaveLength(0);
  });

  it('a 429 surfaces as StripeRateLimitError when retries are off, and nothing is created', async () => {
    const stripe = client({ maxNetworkRetries: 0 });
    fake.faults.push({ kind: '429', path: /^\/v1\/billing\// });
    const customer = await stripe.customers.create({}); // not matched by the fault's path

    const error = await rejection(() =>
      stripe.billing.meters.create({ display_name: 'x', event_name: 'x', default_aggregation: { formula: 'sum' } }),
    );
    expect(error).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(error).toMatchObject({ statusCode: 429, code: 'rate_limit', rawType: 'invalid_request_error' });
    expect(fake.state.meters.size).toBe(0);
    expect(fake.state.customers.has(customer.id)).toBe(true);
  });

  it('a connection dropped after Stripe applied the request: the SDK resends the same key and gets the replay', async () => {
    const stripe = client({ maxNetworkRetries: 2 });
    const { customer, input } = await meteredSetup(stripe);
    fake.faults.push({ kind: 'drop', path: '/v1/billing/meter_events', when: 'after' });

    const event = await stripe.billing.meterEvents.create({
      event_name: input.event_name,
      identifier: 'dropped-once',
      payload: { stripe_customer_id: customer.id, value: '42' },
    });

    // Not "An event already exists": the retry carried the first attempt's Idempotency-Key.
    expect(event.identifier).toBe('dropped-once');
    expect(fake.state.meterEvents.filter((e) => e.identifier === 'dropped-once')).toHaveLength(1);
    const sends = fake.requests.filter((r) => r.path === '/v1/billing/meter_events');
    expect(sends).toHaveLength(2);
    expect(sends[0]).toMatchObject({ fault: 'drop', status: undefined });
    expect(sends[1]).toMatchObject({ replayed: true, status: 200, idempotencyKey: sends[0].idempotencyKey });
    expect((event.lastResponse.headers as Record<string, string>)['idempotent-replayed']).toBe('true');
  });

  it('a dropped connection before the request ran: the resend creates it once', async () => {
    const stripe = client({ maxNetworkRetries: 1 });
    fake.faults.push({ kind: 'drop', when: 'before', method: 'POST' });
    const product = await stripe.products.create({ name: 'Once' });
    expect([...fake.state.products.keys()]).toEqual([product.id]);
    expect(fake.requests.map((r) => r.replayed)).toEqual([false, false]);
  });

  it('a held request makes the SDK time out', async () => {
    const stripe = client({ timeout: 300, maxNetworkRetries: 0 });
    fake.faults.push({ kind: 'timeout', path: '/v1/customers' });

    const error = await rejection(() => stripe.customers.create({ email: 'slow@example.test' }));

    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(error.message).toBe('Request aborted due to timeout being reached (300ms)');
    expect(fake.state.customers.size).toBe(0);
  });

  it('replays an explicit Idempotency-Key with the same params and refuses it with other params', async () => {
    const stripe = client();
    const first = await stripe.customers.create({ email: 'a@example.test', metadata: { a: '1', b: '2' } }, { idempotencyKey: 'create-a' });
    const again = await stripe.customers.create({ metadata: { b: '2', a: '1' }, email: 'a@example.test' }, { idempotencyKey: 'create-a' });

    expect(again.id).toBe(first.id);
    expect((again.lastResponse.headers as Record<string, string>)['idempotent-replayed']).toBe('true');
    expect(fake.state.customers.size).toBe(1);

    const conflict = await rejection(() => stripe.customers.create({ email: 'b@example.test' }, { idempotencyKey: 'create-a' }));
    expect(conflict).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    expect(conflict).toMatchObject({
      statusCode: 400,
      rawType: 'idempotency_error',
      message: "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than 'create-a' if you meant to execute a different request.",
    });
    expect(fake.state.customers.size).toBe(1);

    // A refused request saves nothing under its key: fixing the params and resending succeeds.
    await expect(stripe.products.create({} as Stripe.ProductCreateParams, { idempotencyKey: 'p-1' })).rejects.toMatchObject({ code: 'parameter_missing' });
    await expect(stripe.products.create({ name: 'Fixed' }, { idempotencyKey: 'p-1' })).resolves.toMatchObject({ name: 'Fixed' });
  });

  it('signs webhooks that stripe.webhooks.constructEvent accepts, and a tampered body fails', async () => {
    const stripe = client();
    const { customer } = await meteredSetup(stripe);
    const payload = fake.event('invoice.paid', { id: 'in_123', object: 'invoice', customer: customer.id, amount_paid: 34 });
    const { body, header } = fake.signWebhook(payload);

    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    const event = stripe.webhooks.constructEvent(body, header, fake.webhookSecret);
    expect(event).toMatchObject({ type: 'invoice.paid', data: { object: { id: 'in_123', customer: customer.id } } });

    const tampered = body.replace('"amount_paid": 34', '"amount_paid": 0');
    expect(tampered).not.toBe(body);
    expect(() => stripe.webhooks.constructEvent(tampered, header, fake.webhookSecret)).toThrow(Stripe.errors.StripeSignatureVerificationError);
    expect(() => stripe.webhooks.constructEvent(body, header, 'whsec_other')).toThrow(Stripe.errors.StripeSignatureVerificationError);
  });

  it('refuses a wrong API key with StripeAuthenticationError', async () => {
    const error = await rejection(() => client({}, 'sk_test_wrongkey1234').customers.create({}));
    expect(error).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    expect(error).toMatchObject({ statusCode: 401, message: 'Invalid API Key provided: sk_test_********1234' });
    expect(fake.state.customers.size).toBe(0);
  });
});
