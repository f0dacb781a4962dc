import { Counter, Gauge, Registry } from 'prom-client';

/**
 * Billing sync's Prometheus metrics, in a registry of their own: the worker serves it on WORKER_METRICS_PORT
 * (`GET /metrics`). `billing_sync_failing_orgs` is read from Postgres after each pass, so every worker reports
 * the same figure; the counter counts the failures this process saw.
 */
export class BillingSyncMetrics {
  readonly registry = new Registry();

  /** Orgs whose billing sync is failing (flagged, retried with backoff), after the last pass. */
  readonly failingOrgs = new Gauge({
    name: 'billing_sync_failing_orgs',
    help: 'Orgs whose Stripe billing sync is failing (their usage is held and retried with backoff)',
    registers: [this.registry],
  });

  /** One org's sync failed (its subscription canceled, its customer deleted, a request refused). */
  readonly orgFailures = new Counter({
    name: 'billing_sync_org_failures_total',
    help: "Billing sync failures of one org (Stripe refused a request about the org's subscription or customer), by code",
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  /** Meter events held back because their org's sync is failing, in the last pass. */
  readonly heldEvents = new Gauge({
    name: 'billing_sync_held_events',
    help: 'Meter events given back unsent in the last pass because their org is failing',
    registers: [this.registry],
  });
}
