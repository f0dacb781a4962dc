/** Base of billing's expected errors: a stable `code` and a message fit for an operator or the console. */
export class BillingError extends Error {
  constructor(
    readonly code: 'org_not_found' | 'stripe_failed' | 'subscription_canceled' | 'customer_deleted',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
