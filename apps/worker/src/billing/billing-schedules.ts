import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { StripeClient } from '@spot/billing';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { DEFAULT_JOB_OPTIONS, JOB, QUEUE } from '@spot/queue';
import type { Queue } from 'bullmq';

/** Upserts the billing queue's scheduler at boot (idempotent across replicas); removes it when Stripe is off. */
@Injectable()
export class BillingSchedules implements OnApplicationBootstrap {
  private readonly logger = new Logger('BillingSchedules');

  constructor(
    @InjectQueue(QUEUE.billing) private readonly queue: Queue,
    private readonly stripe: StripeClient,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.stripe.enabled) {
      await this.queue.removeJobScheduler(JOB.billingSync);
      this.logger.log('Stripe billing sync is off (no STRIPE_SECRET_KEY); usage and bills still work');
      return;
    }
    await this.queue.upsertJobScheduler(
      JOB.billingSync,
      { every: this.config.BILLING_SYNC_EVERY_MS },
      { name: JOB.billingSync, data: { trigger: 'schedule' }, opts: DEFAULT_JOB_OPTIONS },
    );
  }
}
