import { Injectable } from '@nestjs/common';
import { BillCalculator, InvalidPeriodError, type OrgBill } from '@spot/billing';
import { type UsageGroup, UsageRollupsRepository, type User } from '@spot/db';
import { invalid } from '../errors/console.errors';
import { OrgAccessService } from '../orgs/org-access.service';

const MAX_RANGE_MS = 400 * 86_400_000;
const GROUPS: readonly UsageGroup[] = ['day', 'model', 'tier', 'key'];

export interface UsageReport {
  from: string;
  to: string;
  group: UsageGroup;
  rows: Array<{ group: string; label: string | null; requests: number; promptTokens: number; completionTokens: number; cachedTokens: number; audioSeconds: number; costUsd: number }>;
  totals: { requests: number; promptTokens: number; completionTokens: number; cachedTokens: number; audioSeconds: number; costUsd: number };
}

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
    const rows = (await this.rollups.usage(org.id, from, to, group)).map((r) => ({
      group: r.group,
      label: r.label,
      requests: r.requests,
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
      cachedTokens: r.cachedTokens,
      audioSeconds: r.audioSeconds,
      costUsd: r.costNanos / 1e9,
    }));
    const totals = rows.reduce(
      (t, r) => ({
        requests: t.requests + r.requests,
        promptTokens: t.promptTokens + r.promptTokens,
        completionTokens: t.completionTokens + r.completionTokens,
        cachedTokens: t.cachedTokens + r.cachedTokens,
        audioSeconds: t.audioSeconds + r.audioSeconds,
        costUsd: t.costUsd + r.costUsd,
      }),
      { requests: 0, promptTokens: 0, completionTokens: 0, cachedTokens: 0, audioSeconds: 0, costUsd: 0 },
    );
    return { from: from.toISOString(), to: to.toISOString(), group, rows, totals };
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
  const lines = [[report.group, 'label', 'requests', 'prompt_tokens', 'completion_tokens', 'cached_tokens', 'audio_seconds', 'cost_usd'].join(',')];
  for (const r of report.rows) {
    lines.push([r.group, r.label, r.requests, r.promptTokens, r.completionTokens, r.cachedTokens, r.audioSeconds, r.costUsd.toFixed(9)].map(cell).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}
