import { createHash } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import {
  type BillingLine,
  BillingOutboxRepository,
  type ClaimedOutboxEvent,
  type NewOutboxEvent,
  OrgBillingRepository,
  type RollupCursor,
  type RollupSyncPlan,
  type UnsyncedRollup,
} from '@spot/db';
import type Stripe from 'stripe';
import { BillingError } from './billing.errors';
import { METER_EVENT_MAX_AGE_MS, meterTimestamp } from './billing-calendar';
import { BillingSetupService } from './billing-setup.service';
import { BillingSyncMetrics } from './billing-sync-metrics';
import { PriceBook } from './price-book';
import { DIRECTIONS, type Direction, tokensByDirection } from './price-lines';
import { StripeClient } from './stripe-client';
import { backoffMs, classifyStripeError, type OrgStripeFailure, orgFailureOf, plainWords } from './stripe-failure';

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
  /** Orgs whose sync failed this pass (slugs): their events are held, the other orgs' went on. */
  failedOrgs: string[];
  /** Orgs whose sync works again this pass (slugs): their failure is cleared. */
  recoveredOrgs: string[];
  /** Events given back unsent because their org failed this pass. */
  held: number;
  /** Every org of the account whose sync is failing after this pass (failed now, or waiting for its retry). */
  failing: Array<{ slug: string; code: string; failures: number; retryAt: Date | null }>;
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
  /** A failing org is retried after this, doubled at each failure in a row... */
  orgRetryBaseMs: number;
  /** ...up to this. */
  orgRetryMaxMs: number;
}

const DEFAULT_TUNING: SyncTuning = {
  planBatch: 500,
  sendBatch: 200,
  concurrency: 8,
  leaseMs: 20_000,
  triesPerPass: 8,
  orgRetryBaseMs: 60_000,
  orgRetryMaxMs: 3_600_000,
};

/** When a failing org is tried again: base·2^(failures-1), capped (no jitter: a failing org costs one probe per retry). */
export function orgRetryDelayMs(failuresInARow: number, tuning: Pick<SyncTuning, 'orgRetryBaseMs' | 'orgRetryMaxMs'>): number {
  const exponent = Math.min(Math.max(failuresInARow - 1, 0), 30);
  return Math.min(tuning.orgRetryMaxMs, tuning.orgRetryBaseMs * 2 ** exponent);
}

/** The claimed events of one org, with what the batch says about the org. */
interface OrgBatch {
  orgId: string;
  slug: string;
  subscriptionId: string | null;
  customerId: string;
  /** The org's sync failed before, or its subscription is known canceled: ask Stripe before sending. */
  suspect: boolean;
  failures: number;
  lines: Set<string>;
  events: ClaimedOutboxEvent[];
}

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
    private readonly orgs: OrgBillingRepository,
    private readonly metrics: BillingSyncMetrics,
  ) {}

  /** Changes the tuning (tests, bench). */
  tune(tuning: Partial<SyncTuning>): this {
    this.tuning = { ...this.tuning, ...tuning };
    return this;
  }

  async runPass(now: () => Date = () => new Date()): Promise<SyncPass> {
    const started = performance.now();
    const pass: SyncPass = {
      enabled: this.stripe.enabled,
      rollups: 0,
      queued: 0,
      accepted: 0,
      duplicates: 0,
      rejected: 0,
      pending: 0,
      unpriced: 0,
      failedOrgs: [],
      recoveredOrgs: [],
      held: 0,
      failing: [],
      ms: 0,
    };
    if (!this.stripe.enabled) return pass;
    const { api, account } = this.stripe.require();
    const catalog = await this.setup.ensureCatalog();
    await this.plan(account, catalog, now, pass);
    await this.send(api, account, catalog, now, pass);
    pass.pending = (await this.outbox.countByStatus(account)).pending;
    pass.failing = (await this.orgs.failingOrgs(account)).map((o) => ({
      slug: o.slug,
      code: o.billingSyncErrorCode ?? 'unknown',
      failures: o.billingSyncFailures,
      retryAt: o.billingSyncRetryAt,
    }));
    this.metrics.failingOrgs.set(pass.failing.length);
    this.metrics.heldEvents.set(pass.held);
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
    const audioPriced = this.priceBook.price(row.model, row.tier) === undefined
      ? lineFor(row.model, row.tier, 'audio') !== undefined
      : this.priceBook.audioPriced(row.model, row.tier);
    const totals = tokensByDirection(row, cachedPriced, audioPriced);
    const synced: Record<Direction, bigint> = { input: row.syncedInput, cached_input: row.syncedCached, output: row.syncedOutput, audio: row.syncedAudio };
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
    return { rollup: row, syncedInput: next.input, syncedCached: next.cached_input, syncedOutput: next.output, syncedAudio: next.audio, events };
  }

  private async send(api: Stripe, account: string, catalog: Map<string, BillingLine>, now: () => Date, pass: SyncPass): Promise<void> {
    for (;;) {
      const claimed = await this.outbox.claim(account, this.tuning.sendBatch, this.tuning.leaseMs, now());
      if (claimed.length === 0) return;
      const orgs = await this.checkOrgs(claimed, catalog, now, pass);
      const sendable = orgs.flatMap((o) => o.events);
      // events given back for a failing org left the claimable set: they count as progress
      let progressed = claimed.length - sendable.length;
      const through = new Set<string>();
      let next = 0;
      let failure: unknown = null;
      const sender = async (): Promise<void> => {
        while (next < sendable.length && failure === null) {
          const event = sendable[next++];
          try {
            if (await this.sendOne(api, event, now, pass)) {
              progressed++;
              through.add(event.orgId);
            }
          } catch (err) {
            // Postgres gone, or Stripe refusing our key: stop every sender; unsent events keep their lease
            failure ??= err;
          }
        }
      };
      // every sender has stopped when the pass ends, even a failed one: nothing outlives the pass
      await Promise.all(Array.from({ length: Math.min(this.tuning.concurrency, sendable.length) }, sender));
      if (failure !== null) throw failure;
      for (const org of orgs) {
        if (org.failures > 0 && through.has(org.orgId) && (await this.orgs.clearSyncFailure(org.orgId))) {
          this.logger.log(`billing sync works again for org ${org.slug} (${org.orgId}) after ${org.failures} failures`);
          pass.recoveredOrgs.push(org.slug);
        }
      }
      // nothing went through: Stripe is down; leave the rest for the next pass instead of spinning
      if (progressed === 0) return;
    }
  }

  /**
   * Per org of the batch: a suspect org's subscription is checked with Stripe, and the subscription items its
   * events need are added. An org Stripe refuses (subscription canceled or gone, customer deleted) is flagged
   * and its events are given back until its retry time; the orgs returned are those whose events may be sent.
   * Anything else (Stripe down after retries, our key refused, Postgres) is thrown, as before: it is not one org's.
   */
  private async checkOrgs(claimed: ClaimedOutboxEvent[], catalog: Map<string, BillingLine>, now: () => Date, pass: SyncPass): Promise<OrgBatch[]> {
    const byOrg = new Map<string, OrgBatch>();
    for (const e of claimed) {
      let org = byOrg.get(e.orgId);
      if (org === undefined) {
        org = {
          orgId: e.orgId,
          slug: e.orgSlug,
          subscriptionId: e.stripeSubscriptionId,
          customerId: e.stripeCustomerId,
          suspect: e.billingSyncFailures > 0 || e.billingStatus === 'canceled',
          failures: e.billingSyncFailures,
          lines: new Set<string>(),
          events: [],
        };
        byOrg.set(e.orgId, org);
      }
      org.lines.add(e.lineKey);
      org.events.push(e);
    }
    const ok: OrgBatch[] = [];
    for (const org of byOrg.values()) {
      if (org.subscriptionId === null) {
        ok.push(org);
        continue;
      }
      try {
        if (org.suspect) await this.setup.assertSubscriptionBills(org.subscriptionId, org.customerId);
        await this.setup.ensureItems(org.orgId, org.subscriptionId, [...org.lines], catalog);
        ok.push(org);
      } catch (err) {
        const failure = orgFailureOf(err);
        if (failure === null) throw err;
        await this.flagOrg(org, failure, now(), pass);
      }
    }
    return ok;
  }

  /** Stores the org's failure with its next retry time, gives its events back, and says so (log line, metric). */
  private async flagOrg(org: OrgBatch, failure: OrgStripeFailure, at: Date, pass: SyncPass): Promise<void> {
    const failures = org.failures + 1;
    const retryAt = new Date(at.getTime() + orgRetryDelayMs(failures, this.tuning));
    await this.orgs.flagSyncFailure(org.orgId, { code: failure.code, message: plainWords(failure), at, retryAt });
    await this.outbox.release(
      org.events.map((e) => e.identifier),
      `held: billing sync of this org fails (${failure.code})`,
    );
    this.metrics.orgFailures.inc({ code: failure.code });
    pass.failedOrgs.push(org.slug);
    pass.held += org.events.length;
    this.logger.error(
      `billing sync failing for org ${org.slug} (${org.orgId}): Stripe ${failure.code}: ${failure.detail}; ` +
        `${failures} failure(s) in a row, ${org.events.length} meter events held, next try at ${retryAt.toISOString()}; other orgs keep syncing`,
    );
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
