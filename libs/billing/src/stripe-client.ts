import { createHash } from 'node:crypto';
import type { AppConfig } from '@spot/config';
import Stripe from 'stripe';

/** Thrown where Stripe is needed but STRIPE_SECRET_KEY is not set. */
export class BillingDisabledError extends Error {
  readonly code = 'billing_disabled';
  constructor() {
    super('Stripe billing is off: set STRIPE_SECRET_KEY to turn it on');
  }
}


/**
 * The official stripe SDK, configured once from STRIPE_SECRET_KEY and STRIPE_API_BASE (host, port and
 * protocol: tests point it at the fake). The SDK's own retries are off (`maxNetworkRetries: 0`): it does not
 * back off on 429, and billing sync retries with the same identifier itself. `account` names the Stripe
 * account (a hash of base URL and key), so that the catalog and customers of one account are never used
 * with another.
 */
export class StripeClient {
  readonly api: Stripe | null;
  readonly account: string | null;

  constructor(config: Pick<AppConfig, 'STRIPE_SECRET_KEY' | 'STRIPE_API_BASE' | 'STRIPE_TIMEOUT_MS'>) {
    const key = config.STRIPE_SECRET_KEY;
    if (key === undefined) {
      this.api = null;
      this.account = null;
      return;
    }
    const base = new URL(config.STRIPE_API_BASE ?? 'https://api.stripe.com');
    const protocol = base.protocol === 'http:' ? 'http' : 'https';
    this.api = new Stripe(key, {
      host: base.hostname,
      port: base.port === '' ? (protocol === 'http' ? 80 : 443) : Number(base.port),
      protocol,
      maxNetworkRetries: 0,
      timeout: config.STRIPE_TIMEOUT_MS,
      telemetry: false,
    });
    this.account = createHash('sha256').update(`${base.origin}\n${key}`).digest('hex').slice(0, 16);
  }

  get enabled(): boolean {
    return this.api !== null;
  }

  /** The SDK and the account, or {@link BillingDisabledError}. */
  require(): { api: Stripe; account: string } {
    if (this.api === null || this.account === null) throw new BillingDisabledError();
    return { api: this.api, account: this.account };
  }
}
