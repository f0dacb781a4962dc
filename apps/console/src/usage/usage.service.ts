import { Injectable } from '@nestjs/common';
import { BillCalculator, InvalidPeriodError, type OrgBill, PriceBook } from '@spot/billing';
import { type UsageGroup, UsageRollupsRepository, type User } from '@spot/db';
import { cachedSavingsNanos } from '@spot/tiers';
import { invalid } from '../errors/console.errors';
import { OrgAccessService } from '../orgs/org-access.service';

const MAX_RANGE_MS = 400 * 86_400_000;
const GROUPS: readonly UsageGroup[] = ['day', 'model', 'tier', 'key'];

/** Usage figures of one group (or the total): `cachedSavingsUsd` is what prompt caching saved at the price book's prices. */
export interface UsageFigures {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  audioSeconds: number;
  costUsd: number;
  cachedSavingsUsd: number;
}

export interface UsageReport {
  from: string;
  to: string;
  group: UsageGroup;
  rows: Array<{ group: string; label: string | null } & UsageFigures>;
  totals: UsageFigures;
  /**
   * Prompt caching per model, whatever the grouping: cached tokens and what they saved (the cached tokens at the
   * input price less the same at the cached price, per tier; 0 where the price book prices them as input).
   */
  caching: Array<{ model: string; cachedTokens: number; cachedSavingsUsd: number }>;
}

const zero = (): UsageFigures => ({ requests: 0, promptTokens: 0, completionTokens: 0, cachedTokens: 0, audioSeconds: 0, costUsd: 0, cachedSavingsUsd: 0 });

function monthStart(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

function parseDate(raw: string | undefined, param: string): Date | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(raw)) throw invalid(param, 'expected a date, YYYY-MM-DD or an ISO date-time');
  const d = new Date(raw.length === 10 ? `${raw}T00:00:00Z` : raw);
  if (Number.isNaN(d.getTime())) throw invalid(param, 'is not a valid date');
  return d;
}

/** Usage reports (rollups plus events not rolled up yet) and the period's bill of an org. */
@Injectable()
export class UsageService {
  constructor(
    private readonly access: OrgAccessService,
    private readonly rollups: UsageRollupsRepository,
    private readonly bills: BillCalculator,
    private readonly priceBook: PriceBook,
  ) {}

  /** Usage in [from, to) (default: this month so far), grouped by day, model, tier or key. */
  async report(user: User, slug: string, query: { from?: string; to?: string; group?: string }): Promise<UsageReport> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    const now = new Date();
    const from = parseDate(query.from, 'from') ?? monthStart(now);
    const to = parseDate(query.to, 'to') ?? now;
    if (to <= from) throw invalid('to', 'must be after from');
    if (to.getTime() - from.getTime() > MAX_RANGE_MS) throw invalid('to', 'the range may span at most 400 days');
    const group = (query.group ?? 'day') as UsageGroup;
    if (!GROUPS.includes(group)) throw invalid('group', `expected one of ${GROUPS.join(', ')}`);
    // nano-USD summed, converted once: the figures add up to the cent whatever the grouping
    const groups = new Map<string, { label: string | null; requests: number; promptTokens: number; completionTokens: number; cachedTokens: number; audioSeconds: number; cost: number; saved: number }>();
    const models = new Map<string, { cachedTokens: number; saved: number }>();
    for (const r of await this.rollups.usage(org.id, from, to, group)) {
      const price = this.priceBook.price(r.model, r.tier);
      const saved = price === undefined ? 0 : cachedSavingsNanos(price, r);
      const g = groups.get(r.group) ?? { label: r.label, requests: 0, promptTokens: 0, completionTokens: 0, cachedTokens: 0, audioSeconds: 0, cost: 0, saved: 0 };
      g.label ??= r.label;
      g.requests += r.requests;
      g.promptTokens += r.promptTokens;
      g.completionTokens += r.completionTokens;
      g.cachedTokens += r.cachedTokens;
      g.audioSeconds += r.audioSeconds;
      g.cost += r.costNanos;
      g.saved += saved;
      groups.set(r.group, g);
      const m = models.get(r.model) ?? { cachedTokens: 0, saved: 0 };
      m.cachedTokens += r.cachedTokens;
      m.saved += saved;
      models.set(r.model, m);
    }
    const rows = [...groups].map(([name, g]) => ({
      group: name,
      label: g.label,
      requests: g.requests,
      promptTokens: g.promptTokens,
      completionTokens: g.completionTokens,
      cachedTokens: g.cachedTokens,
      audioSeconds: g.audioSeconds,
      costUsd: g.cost / 1e9,
      cachedSavingsUsd: g.saved / 1e9,
    }));
    const totals = zero();
    let cost = 0;
    let saved = 0;
    for (const g of groups.values()) {
      totals.requests += g.requests;
      totals.promptTokens += g.promptTokens;
      totals.completionTokens += g.completionTokens;
      totals.cachedTokens += g.cachedTokens;
      totals.audioSeconds += g.audioSeconds;
      cost += g.cost;
      saved += g.saved;
    }
    totals.costUsd = cost / 1e9;
    totals.cachedSavingsUsd = saved / 1e9;
    const caching = [...models]
      .filter(([, m]) => m.cachedTokens > 0)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([model, m]) => ({ model, cachedTokens: m.cachedTokens, cachedSavingsUsd: m.saved / 1e9 }));
    return { from: from.toISOString(), to: to.toISOString(), group, rows, totals, caching };
  }

  /**
   * The bill of a calendar month (UTC; default the current one), computed the way Stripe invoices it: one line
   * per price line (model, tier, token type), each rounded to the cent; Stripe's invoice preview beside it
   * when the org is billed through Stripe.
   */
  async bill(user: User, slug: string, period: string | undefined): Promise<OrgBill> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    try {
      return await this.bills.bill(org, period ?? new Date().toISOString().slice(0, 7));
    } catch (err) {
      if (err instanceof InvalidPeriodError) throw invalid('period', 'expected YYYY-MM');
      throw err;
    }
  }
}

/** A usage report as CSV (RFC 4180), one row per group. */
export function usageCsv(report: UsageReport): string {
  const cell = (v: string | number | null) => {
    const s = v === null ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  // cached_savings_usd last: columns a reader already takes by position keep their place
  const lines = [[report.group, 'label', 'requests', 'prompt_tokens', 'completion_tokens', 'cached_tokens', 'audio_seconds', 'cost_usd', 'cached_savings_usd'].join(',')];
  for (const r of report.rows) {
    lines.push([r.group, r.label, r.requests, r.promptTokens, r.completionTokens, r.cachedTokens, r.audioSeconds, r.costUsd.toFixed(9), r.cachedSavingsUsd.toFixed(9)].map(cell).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}
