import { meterTimestamp } from './billing-calendar';
import { BillingError } from './billing.errors';
import { orgRetryDelayMs } from './billing-sync.service';
import { classifyStripeError, orgFailureOf, plainWords } from './stripe-failure';

describe('classifyStripeError', () => {
  it('retries 429 (rate limited, honouring Retry-After), 5xx and connection failures', () => {
    expect(classifyStripeError({ type: 'StripeRateLimitError', statusCode: 429, message: 'Too many', headers: { 'retry-after': '2' } })).toMatchObject({
      kind: 'retry',
      rateLimited: true,
      retryAfterMs: 2_000,
    });
    expect(classifyStripeError({ type: 'StripeAPIError', statusCode: 500, message: 'boom', headers: {} })).toMatchObject({ kind: 'retry', rateLimited: false });
    expect(classifyStripeError({ type: 'StripeConnectionError', message: 'socket hang up' })).toMatchObject({ kind: 'retry' });
    expect(classifyStripeError(new Error('ECONNRESET'))).toMatchObject({ kind: 'retry' });
  });

  it('counts "already exists with identifier" as billed, and tells too-old and other refusals apart', () => {
    const dup = { type: 'StripeInvalidRequestError', statusCode: 400, message: 'An event already exists with identifier spot_1.', headers: { 'stripe-should-retry': 'false' } };
    expect(classifyStripeError(dup).kind).toBe('duplicate');
    const old = { statusCode: 400, message: 'The event timestamp cannot be more than 35 days in past. Expected a timestamp greater than or equal to 1.' };
    expect(classifyStripeError(old).kind).toBe('too_old');
    expect(classifyStripeError({ statusCode: 400, message: 'No active meter found for event name "x".' }).kind).toBe('rejected');
    expect(classifyStripeError({ statusCode: 401, message: 'Invalid API Key provided' }).kind).toBe('fatal');
    expect(classifyStripeError({ statusCode: 500, message: 'x', headers: { 'stripe-should-retry': 'false' } }).kind).toBe('rejected');
  });
});

describe('meterTimestamp', () => {
  const now = new Date('2026-11-25T10:20:00Z');
  it('bills a delta at its rollup hour while that month is open', () => {
    expect(meterTimestamp(new Date('2026-11-03T07:00:00Z'), now).toISOString()).toBe('2026-11-03T07:00:00.000Z');
  });
  it('moves late usage of a closed month to the start of the open one (never lost on an invoiced period)', () => {
    expect(meterTimestamp(new Date('2026-10-31T23:00:00Z'), now).toISOString()).toBe('2026-11-01T00:00:00.000Z');
  });
  it('never stamps the future', () => {
    expect(meterTimestamp(new Date('2026-11-25T11:00:00Z'), now)).toEqual(now);
  });
});

describe('orgFailureOf', () => {
  const wrapped = (sdk: object) => new BillingError('stripe_failed', 'Stripe: could not add a subscription item', { cause: sdk });

  it("names a refusal about one org's subscription or customer, with Stripe's code", () => {
    const canceled = { type: 'StripeInvalidRequestError', statusCode: 400, message: 'A canceled subscription can only update its cancellation_details and metadata.' };
    expect(orgFailureOf(wrapped(canceled))).toEqual({ code: 'subscription_canceled', detail: canceled.message });
    const missing = { type: 'StripeInvalidRequestError', statusCode: 404, code: 'resource_missing', message: "No such subscription: 'sub_1'" };
    expect(orgFailureOf(wrapped(missing))).toEqual({ code: 'resource_missing', detail: missing.message });
    expect(orgFailureOf({ statusCode: 400, message: 'Something else' })).toEqual({ code: 'stripe_rejected', detail: 'Something else' });
    expect(orgFailureOf(new BillingError('customer_deleted', 'customer cus_1 was deleted'))).toEqual({ code: 'customer_deleted', detail: 'customer cus_1 was deleted' });
  });

  it('is null for what is not one org\'s: our key refused, Stripe down or rate limiting, Postgres', () => {
    expect(orgFailureOf(wrapped({ statusCode: 401, message: 'Invalid API Key provided: sk_test_****abcd' }))).toBeNull();
    expect(orgFailureOf(wrapped({ statusCode: 403, message: 'forbidden' }))).toBeNull();
    expect(orgFailureOf(wrapped({ statusCode: 500, message: 'boom', headers: { 'stripe-should-retry': 'false' } }))).toBeNull();
    expect(orgFailureOf(wrapped({ statusCode: 429, message: 'slow down' }))).toBeNull();
    expect(orgFailureOf(wrapped({ type: 'StripeConnectionError', message: 'socket hang up' }))).toBeNull();
    expect(orgFailureOf(new Error('Connection terminated unexpectedly'))).toBeNull();
  });

  it('says what fixes it in plain words', () => {
    expect(plainWords({ code: 'subscription_canceled', detail: 'x' })).toMatch(/subscription of this org was canceled.*Enable billing again on the Bill page/);
    expect(plainWords({ code: 'customer_deleted', detail: 'x' })).toMatch(/customer of this org was deleted/);
    expect(plainWords({ code: 'parameter_invalid', detail: 'Bad thing' })).toContain('parameter_invalid: Bad thing');
  });
});

describe('orgRetryDelayMs', () => {
  it('doubles from the base at each failure in a row, up to the cap', () => {
    const tuning = { orgRetryBaseMs: 60_000, orgRetryMaxMs: 3_600_000 };
    expect([1, 2, 3, 4, 5, 6, 7, 8, 100].map((n) => orgRetryDelayMs(n, tuning))).toEqual([
      60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000, 3_600_000,
    ]);
    expect(orgRetryDelayMs(0, tuning)).toBe(60_000);
  });
});
