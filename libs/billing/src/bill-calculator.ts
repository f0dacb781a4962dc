import { Injectable, Logger } from '@nestjs/common';
import { BillingLinesRepository, BillingOutboxRepository, type Org, UsageRollupsRepository } from '@spot/db';
import { meterTimestamp, monthStart } from './billing-calendar';
import { PriceBook } from './price-book';
import { DIRECTIONS, type Direction, lineAmountCents, tokensByDirection } from './price-lines';
import { StripeClient } from './stripe-client';

/**
 * One line of a bill: the tokens of one price line (seconds, on an `audio` line) and what they cost, rounded to the
 * cent like Stripe does.
 */
export interface BillLine {
  lineKey: string;
  model: string;
  tier: string;
  direction: Direction;
  /** Cents per token (per second on an `audio` line). */
  unitAmountDecimal: string;
  tokens: number;
  amountCents: number;
}

/** Stripe's own figure for the period, beside ours. */
export interface StripeInvoicePreview {
  subscriptionId: string;
  /** Stripe's invoice preview total, in cents; null when it could not be fetched (see `error`). */
  totalCents: number | null;
  periodStart: string | null;
  periodEnd: string | null;
  error: string | null;
}

/** An org's bill for one UTC calendar month. */
export interface OrgBill {
  period: string;
  from: string;
  to: string;
  currency: 'usd';
  /** `stripe`: the org is billed through Stripe (lines as sent, plus usage not sent yet); `price_book`: priced here only. */
  source: 'stripe' | 'price_book';
  lines: BillLine[];
  totalCents: number;
  /** Usage Stripe refused (too old, invalid): not on the invoice; shown so it is never silently lost. */
  refused: { events: number; tokens: number };
  /** Usage of models/tiers with no price line (not billed). */
  unpricedTokens: number;
  /** Null when Stripe is off, the org is not billed through Stripe, or the period is not the current one. */
  stripe: StripeInvoicePreview | null;
}

/** Thrown for a period that is not YYYY-MM. */
export class InvalidPeriodError extends Error {
  readonly code = 'invalid_period';
}

/** [from, to) of a YYYY-MM period (UTC). */
export function periodRange(period: string): { from: Date; to: Date } {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(period);
  if (m === null) throw new InvalidPeriodError(`period: expected YYYY-MM, got ${JSON.stringify(period)}`);
  return { from: new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1)), to: new Date(Date.UTC(Number(m[1]), Number(m[2]), 1)) };
}

/**
 * Our figure for an org's month, computed the way Stripe computes the invoice: tokens per price line, each
 * line's tokens × unit_amount_decimal rounded to the cent (ties away from zero), lines summed. For an org
 * billed through Stripe the tokens are what the outbox sent (or will send) with timestamps in the month, plus
 * usage not synced yet; after a sync the two figures agree to the cent. With Stripe on, Stripe's invoice
 * preview is fetched beside it.
 */
@Injectable()
export class BillCalculator {
  private readonly logger = new Logger('BillCalculator');

  constructor(
    private readonly stripe: StripeClient,
    private readonly priceBook: PriceBook,
    private readonly rollups: UsageRollupsRepository,
    private readonly outbox: BillingOutboxRepository,
    private readonly lines: BillingLinesRepository,
  ) {}

  async bill(org: Org, period: string, now: Date = new Date()): Promise<OrgBill> {
    const { from, to } = periodRange(period);
    const account = this.stripe.account;
    const viaStripe = account !== null && org.stripeAccount === account && org.stripeSubscriptionId !== null && org.billingSince !== null && from >= org.billingSince;
    const tokens = new Map<string, { model: string; tier: string; direction: Direction; unit: string; tokens: bigint }>();
    const add = (lineKey: string, model: string, tier: string, direction: Direction, unit: string, n: bigint) => {
      if (n <= 0n) return;
      const entry = tokens.get(lineKey) ?? { model, tier, direction, unit, tokens: 0n };
      entry.tokens += n;
      tokens.set(lineKey, entry);
    };
    let unpriced = 0n;
    let refused = { events: 0, tokens: 0 };

    if (viaStripe) {
      const catalog = new Map((await this.lines.findByAccount(account)).map((l) => [l.lineKey, l]));
      for (const t of await this.outbox.lineTotals(org.id, account, from, to)) {
        const unit = catalog.get(t.lineKey)?.unitAmountDecimal;
        if (unit === undefined) unpriced += t.tokens;
        else add(t.lineKey, t.model, t.tier, t.direction as Direction, unit, t.tokens);
      }
      for (const row of await this.outbox.unsyncedOfOrg(org.id, org.billingSince as Date)) {
        const at = meterTimestamp(row.hour, now);
        if (at < from || at >= to) continue;
        const totals = tokensByDirection(row, this.priceBook.cachedPriced(row.model, row.tier), this.priceBook.audioPriced(row.model, row.tier));
        const synced: Record<Direction, bigint> = { input: row.syncedInput, cached_input: row.syncedCached, output: row.syncedOutput, audio: row.syncedAudio };
        for (const d of DIRECTIONS) {
          const delta = totals[d] - synced[d];
          const line = this.priceBook.line(row.model, row.tier, d);
          if (delta <= 0n) continue;
          if (line === undefined) unpriced += delta;
          else add(line.lineKey, row.model, row.tier, d, line.unitAmountDecimal, delta);
        }
      }
      const rejected = await this.outbox.rejected(org.id, from, to);
      refused = { events: rejected.length, tokens: rejected.reduce((s, r) => s + Number(r.value), 0) };
    } else {
      for (const l of await this.rollups.billLines(org.id, from, to)) {
        const totals = tokensByDirection(
          { promptTokens: BigInt(l.promptTokens), completionTokens: BigInt(l.completionTokens), cachedTokens: BigInt(l.cachedTokens), audioSeconds: BigInt(l.audioSeconds) },
          this.priceBook.cachedPriced(l.model, l.tier),
          this.priceBook.audioPriced(l.model, l.tier),
        );
        for (const d of DIRECTIONS) {
          const line = this.priceBook.line(l.model, l.tier, d);
          if (line === undefined) unpriced += totals[d];
          else add(line.lineKey, l.model, l.tier, d, line.unitAmountDecimal, totals[d]);
        }
      }
    }

    const lines: BillLine[] = [...tokens.entries()]
      .map(([lineKey, e]) => ({
        lineKey,
        model: e.model,
        tier: e.tier,
        direction: e.direction,
        unitAmountDecimal: e.unit,
        tokens: Number(e.tokens),
        amountCents: Number(lineAmountCents(e.tokens, e.unit)),
      }))
      .sort((a, b) => a.model.localeCompare(b.model) || a.tier.localeCompare(b.tier) || DIRECTIONS.indexOf(a.direction) - DIRECTIONS.indexOf(b.direction));
    const current = monthStart(now).getTime() === from.getTime();
    return {
      period,
      from: from.toISOString(),
      to: to.toISOString(),
      currency: 'usd',
      source: viaStripe ? 'stripe' : 'price_book',
      lines,
      totalCents: lines.reduce((s, l) => s + l.amountCents, 0),
      refused,
      unpricedTokens: Number(unpriced),
      stripe: viaStripe && current ? await this.preview(org) : null,
    };
  }

  /** Stripe's invoice preview of the org's subscription (the open period). */
  async preview(org: Org): Promise<StripeInvoicePreview | null> {
    if (this.stripe.api === null || org.stripeCustomerId === null || org.stripeSubscriptionId === null) return null;
    try {
      const invoice = await this.stripe.api.invoices.createPreview({ customer: org.stripeCustomerId, subscription: org.stripeSubscriptionId });
      return {
        subscriptionId: org.stripeSubscriptionId,
        totalCents: invoice.total,
        periodStart: new Date(invoice.period_start * 1000).toISOString(),
        periodEnd: new Date(invoice.period_end * 1000).toISOString(),
        error: null,
      };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.logger.warn(`Stripe invoice preview of org ${org.slug} failed: ${message}`);
      return { subscriptionId: org.stripeSubscriptionId, totalCents: null, periodStart: null, periodEnd: null, error: message };
    }
  }
}
