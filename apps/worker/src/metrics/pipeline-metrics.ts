import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { PipelineLagRepository } from '@spot/db';
import { Gauge, Registry } from 'prom-client';

function ageSeconds(at: Date | null): number {
  return at === null ? 0 : Math.max(0, (Date.now() - at.getTime()) / 1000);
}

/**
 * How far the usage -> money pipeline lags, read from Postgres when scraped (so every worker reports the same
 * figures, and a worker that stopped rolling up still shows the lag growing): the age of the oldest usage event not
 * rolled up yet, and of the oldest usage billing sync still owes Stripe (0 while billing is off).
 */
@Injectable()
export class PipelineMetrics {
  readonly registry = new Registry();

  constructor(lag: PipelineLagRepository, @Inject(APP_CONFIG) config: AppConfig) {
    new Gauge({
      name: 'usage_rollup_lag_seconds',
      help: 'Age of the oldest usage event not yet rolled up (0 when every event is); grows when rollups stall',
      registers: [this.registry],
      async collect() {
        this.set(ageSeconds(await lag.oldestUnrolledEventAt()));
      },
    });
    const billing = config.STRIPE_SECRET_KEY !== undefined;
    new Gauge({
      name: 'billing_sync_lag_seconds',
      help: 'Age of the oldest usage that billing sync has not yet sent to Stripe as meter events (0 when none, or billing is off)',
      registers: [this.registry],
      async collect() {
        this.set(billing ? ageSeconds(await lag.oldestUnbilledAt()) : 0);
      },
    });
  }
}
