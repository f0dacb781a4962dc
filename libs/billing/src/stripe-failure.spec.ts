import { meterTimestamp } from './billing-calendar';
import { classifyStripeError } from './stripe-failure';

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
