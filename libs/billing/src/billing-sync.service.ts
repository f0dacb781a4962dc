import { createHash } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import {
  type BillingLine,
  BillingOutboxRepository,
  type ClaimedOutboxEvent,
  type NewOutboxEvent,
  type RollupCursor,
  type RollupSyncPlan,
  type UnsyncedRollup,
} from '@spot/db';
import type Stripe from 'stripe';
import { BillingError } from './billing.errors';
import { METER_EVENT_MAX_AGE_MS, meterTimestamp } from './billing-calendar';
import { BillingSetupService } from './billing-setup.service';
import { PriceBook } from './price-book';
import { DIRECTIONS, type Direction, tokensByDirection } from './price-lines';
import { StripeClient } from './stripe-client';
import { backoffMs, classifyStripeError } from './stripe-failure';

/** What one sync pass did. */
export interface SyncPass {
  /** False when STRIPE_SECRET_KEY is not set: nothing was done. */
  enabled: boolean;
  /** Rollups whose changes were turned into meter events this pass. */
  rollups: number;
  /** Meter events queued in the outbox this pass. */
  queued: number;
  /** Events Stripe took this pass (new ones). */
  accepted: number;
  /** Events Stripe already had ("already exists"): billed before, counted as accepted. */
  duplicates: number;
  /** Events Stripe refused for good this pass (kept in the outbox with the reason). */
  rejected: number;
  /** Events still waiting (Stripe failing or rate limiting): the next pass retries them. */
  pending: number;
  /** Rollups left unsynced because no price line exists for their model and tier. */
  unpriced: number;
  ms: number;
}

/** Tuning, overridable by tests and the bench. */
export interface SyncTuning {
  planBatch: number;
  sendBatch: number;
  concurrency: number;
  /** How long a claimed event is reserved for its sender (a dead sender's events are free again after it). */
  leaseMs: number;
  /** Tries per event within one pass before it is left for the next pass. */
  triesPerPass: number;
}

const DEFAULT_TUNING: SyncTuning = { planBatch: 500, sendBatch: 200, concurrency: 8, leaseMs: 20_000, triesPerPass: 8 };

/** The deterministic identifier of a rollup's delta on one line at one version (also its Idempotency-Key). */
export function meterEventIdentifier(r: Pick<UnsyncedRollup, 'orgId' | 'keyId' | 'model' | 'tier' | 'hour' | 'version'>, direction: Direction): string {
  const text = `${r.orgId}\n${r.keyId}\n${r.model}\n${r.tier}\n${r.hour.toISOString()}\n${direction}\n${r.version.toString()}`;
  return `spot_${createHash('sha256').update(text).digest('hex').slice(0, 40)}`;
}

/**
 * Pushes rollup deltas to Stripe as meter events, exactly once:
 * 1. plan: in one transaction per batch, each changed rollup's new tokens per line become outbox rows with a
 *    deterministic identifier (rollup key, line, version) and the rollup's synced state advances;
 * 2. send: pending outbox rows are claimed (SKIP LOCKED, with a lease) and sent with identifier and
 *    Idempotency-Key = identifier; Stripe's "already exists" counts as accepted; 429/5xx/timeouts back off
 *    and retry; events past Stripe's 35 days are marked `rejected_too_old`, never dropped silently.
 * Safe to run in several workers and the CLI at once.
 */
@Injectable()
export class BillingSyncService {
  private readonly logger = new Logger('BillingSync');
  private tuning: SyncTuning = DEFAULT_TUNING;
  /** While Stripe rate-limits us, every sender of this process waits until then. */
  private pausedUntil = 0;

  constructor(
    private readonly stripe: StripeClient,
    private readonly priceBook: PriceBook,
    private readonly setup: BillingSetupService,
    private readonly outbox: BillingOutboxRepository,
  ) {}

  /** Changes the tuning (tests, bench). */
  tune(tuning: Partial<SyncTuning>): this {
    this.tuning = { ...this.tuning, ...tuning };
    return this;
  }

  async runPass(now: () => Date = () => new Date()): Promise<SyncPass> {
    const started = performance.now();
    const pass: SyncPass = { enabled: this.stripe.enabled, rollups: 0, queued: 0, accepted: 0, duplicates: 0, rejected: 0, pending: 0, unpriced: 0, ms: 0 };
    if (!this.stripe.enabled) return pass;
    const { api, account } = this.stripe.require();
    const catalog = await this.setup.ensureCatalog();
    await this.plan(account, catalog, now, pass);
    await this.send(api, account, catalog, now, pass);
    pass.pending = (await this.outbox.countByStatus(account)).pending;
    pass.ms = Math.round(performance.now() - started);
    return pass;
  }

  private async plan(account: string, catalog: Map<string, BillingLine>, now: () => Date, pass: SyncPass): Promise<void> {
    const latest = new Map<string, BillingLine>();
    for (const line of catalog.values()) latest.set(`${line.model}\n${line.tier}\n${line.direction}`, line);
    const lineFor = (model: string, tier: string, direction: Direction): BillingLine | undefined => {
      const current = this.priceBook.line(model, tier, direction);
      return (current && catalog.get(current.lineKey)) ?? (current ? undefined : latest.get(`${model}\n${tier}\n${direction}`));
    };
    let cursor: RollupCursor | null = null;
    for (;;) {
      const at = now();
      const batch = await this.outbox.planBatch(account, this.tuning.planBatch, cursor, (rows) => {
        const plans: RollupSyncPlan[] = [];
        for (const row of rows) {
          const p = this.planRollup(row, at, lineFor);
          if (p === null) pass.unpriced++;
          else plans.push(p);
        }
        pass.rollups += plans.length;
        return plans;
      });
      pass.queued += batch.events;
      if (batch.rollups.length < this.tuning.planBatch) return;
      cursor = batch.rollups[batch.rollups.length - 1];
    }
  }

  private planRollup(
    row: UnsyncedRollup,
    now: Date,
    lineFor: (model: string, tier: string, direction: Direction) => BillingLine | undefined,
  ): RollupSyncPlan | null {
    const cachedPriced = this.priceBook.price(row.model, row.tier) === undefined
      ? lineFor(row.model, row.tier, 'cached_input') !== undefined
      : this.priceBook.cachedPriced(row.model, row.tier);
    const totals = tokensByDirection(row, cachedPriced);
    const synced: Record<Direction, bigint> = { input: row.syncedInput, cached_input: row.syncedCached, output: row.syncedOutput };
    const events: NewOutboxEvent[] = [];
    const next = { ...synced };
    for (const direction of DIRECTIONS) {
      const delta = totals[direction] - synced[direction];
      if (delta < 0n) {
        // the price book's cached split changed under this rollup: never bill back, never bill twice
        this.logger.warn(`rollup ${row.orgId}/${row.model}/${row.tier}/${row.hour.toISOString()}: ${direction} went down by ${-delta} tokens`);
        continue;
      }
      if (delta === 0n) continue;
      const line = lineFor(row.model, row.tier, direction);
      if (line === undefined) return null;
      events.push({
        identifier: meterEventIdentifier(row, direction),
        orgId: row.orgId,
        stripeCustomerId: row.stripeCustomerId,
        lineKey: line.lineKey,
        eventName: line.eventName,
        value: delta,
        timestamp: meterTimestamp(row.hour, now),
        keyId: row.keyId,
        model: row.model,
        tier: row.tier,
        hour: row.hour,
        direction,
        rollupVersion: row.version,
      });
      next[direction] = totals[direction];
    }
    return { rollup: row, syncedInput: next.input, syncedCached: next.cached_input, syncedOutput: next.output, events };
  }

  private async send(api: Stripe, account: string, catalog: Map<string, BillingLine>, now: () => Date, pass: SyncPass): Promise<void> {
    for (;;) {
      const claimed = await this.outbox.claim(account, this.tuning.sendBatch, this.tuning.leaseMs);
      if (claimed.length === 0) return;
      await this.ensureItems(claimed, catalog);
      let progressed = 0;
      let next = 0;
      let failure: unknown = null;
      const sender = async (): Promise<void> => {
        while (next < claimed.length && failure === null) {
          const event = claimed[next++];
          try {
            if (await this.sendOne(api, event, now, pass)) progressed++;
          } catch (err) {
            // Postgres gone, or Stripe refusing our key: stop every sender; unsent events keep their lease
            failure ??= err;
          }
        }
      };
      // every sender has stopped when the pass ends, even a failed one: nothing outlives the pass
      await Promise.all(Array.from({ length: Math.min(this.tuning.concurrency, claimed.length) }, sender));
      if (failure !== null) throw failure;
      // nothing went through: Stripe is down; leave the rest for the next pass instead of spinning
      if (progressed === 0) return;
    }
  }

  /** Subscription items for the lines these events bill, so that Stripe invoices them. */
  private async ensureItems(events: ClaimedOutboxEvent[], catalog: Map<string, BillingLine>): Promise<void> {
    const byOrg = new Map<string, { subscriptionId: string; lines: Set<string> }>();
    for (const e of events) {
      if (e.stripeSubscriptionId === null) continue;
      const entry = byOrg.get(e.orgId) ?? { subscriptionId: e.stripeSubscriptionId, lines: new Set<string>() };
      entry.lines.add(e.lineKey);
      byOrg.set(e.orgId, entry);
    }
    for (const [orgId, { subscriptionId, lines }] of byOrg) {
      await this.setup.ensureItems(orgId, subscriptionId, [...lines], catalog);
    }
  }

  /** Sends one event, retrying transient failures; true when it left the pending state. */
  private async sendOne(api: Stripe, event: ClaimedOutboxEvent, now: () => Date, pass: SyncPass): Promise<boolean> {
    if (event.timestamp.getTime() < now().getTime() - METER_EVENT_MAX_AGE_MS) {
      await this.outbox.markRejected(event.identifier, 0, 'rejected_too_old', `timestamp ${event.timestamp.toISOString()} is older than Stripe accepts (35 days)`);
      this.logger.error(`meter event ${event.identifier} (${event.value} tokens of org ${event.orgId}) is too old for Stripe: not billed`);
      pass.rejected++;
      return true;
    }
    let lastError = '';
    for (let attempt = 0; attempt < this.tuning.triesPerPass; attempt++) {
      const wait = this.pausedUntil - Date.now();
      if (wait > 0) await sleep(wait);
      try {
        await api.billing.meterEvents.create(
          {
            event_name: event.eventName,
            identifier: event.identifier,
            timestamp: Math.floor(event.timestamp.getTime() / 1000),
            payload: { stripe_customer_id: event.stripeCustomerId, value: event.value.toString() },
          },
          { idempotencyKey: event.identifier },
        );
        await this.outbox.markAccepted(event.identifier, attempt + 1);
        pass.accepted++;
        return true;
      } catch (err) {
        const failure = classifyStripeError(err);
        switch (failure.kind) {
          case 'duplicate':
            await this.outbox.markAccepted(event.identifier, attempt + 1, `already billed: ${failure.message}`);
            pass.duplicates++;
            return true;
          case 'too_old':
            await this.outbox.markRejected(event.identifier, attempt + 1, 'rejected_too_old', failure.message);
            this.logger.error(`meter event ${event.identifier} (${event.value} tokens of org ${event.orgId}) refused as too old: not billed`);
            pass.rejected++;
            return true;
          case 'rejected':
            await this.outbox.markRejected(event.identifier, attempt + 1, 'rejected', failure.message);
            this.logger.error(`meter event ${event.identifier} (${event.value} tokens of org ${event.orgId}) refused by Stripe: ${failure.message}`);
            pass.rejected++;
            return true;
          case 'fatal':
            await this.outbox.markRetry(event.identifier, attempt + 1, failure.message, 0);
            throw new BillingError('stripe_failed', `Stripe refused our credentials: ${failure.message}`, { cause: err });
          case 'retry': {
            lastError = failure.message;
            const delay = failure.retryAfterMs ?? backoffMs(attempt);
            if (failure.rateLimited) this.pausedUntil = Math.max(this.pausedUntil, Date.now() + delay);
            await sleep(delay);
          }
        }
      }
    }
    await this.outbox.markRetry(event.identifier, this.tuning.triesPerPass, lastError, 2_000);
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
