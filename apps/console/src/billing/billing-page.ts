import { escapeHtml as e, type PageContext, renderPage } from '../pages/views';
import type { BillingView } from './console-billing.service';

const cents = (c: number) => `$${(c / 100).toFixed(2)}`;
const int = (n: number) => n.toLocaleString('en-US');
/** Cents per token as USD per 1M tokens, for people. */
const perMtok = (unitCents: string) => `$${(Number(unitCents) * 10_000).toLocaleString('en-US', { maximumFractionDigits: 6 })}/M`;
/** Cents per second of audio as USD per minute, for people. */
const perMinute = (unitCents: string) => `$${((Number(unitCents) * 60) / 100).toLocaleString('en-US', { maximumFractionDigits: 6 })}/min`;

/** /orgs/:slug/billing: status, the enable button, the period's bill per price line and Stripe's preview beside it. */
export function billingPage(ctx: Omit<PageContext, 'title' | 'body' | 'active'>, view: BillingView, canEnable: boolean): string {
  const slug = encodeURIComponent(ctx.org?.slug ?? '');
  const bill = view.bill;
  let state: string;
  if (view.stripe === 'off') {
    state = `<p class="notice">Stripe billing is off on this deployment (no <code>STRIPE_SECRET_KEY</code>). Usage and bills still work; nothing is charged.</p>`;
  } else if (!view.enabled) {
    state = canEnable
      ? `<form method="post" action="/orgs/${slug}/billing/enable"><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<p>This org is not billed through Stripe yet.</p><button type="submit">Enable billing</button></form>`
      : `<p class="notice">This org is not billed through Stripe yet; an admin or owner can enable it.</p>`;
  } else {
    state = `<p>Billed through Stripe: customer <code>${e(view.customerId)}</code>, subscription <code>${e(view.subscriptionId)}</code>,
status <span class="badge">${e(view.status)}</span>${view.statusSince ? ` since ${e(view.statusSince.slice(0, 16).replace('T', ' '))} UTC` : ''}.</p>`;
  }
  const rows = bill.lines
    .map(
      (l) =>
        `<tr><td>${e(l.model)}</td><td>${e(l.tier)}</td><td>${e(l.direction.replace('_', ' '))}</td><td>${l.direction === 'audio' ? `${int(l.tokens)} s` : int(l.tokens)}</td><td>${e(l.direction === 'audio' ? perMinute(l.unitAmountDecimal) : perMtok(l.unitAmountDecimal))}</td><td>${cents(l.amountCents)}</td></tr>`,
    )
    .join('');
  const preview =
    bill.stripe === null
      ? ''
      : bill.stripe.totalCents === null
        ? `<p class="error">Stripe's invoice preview could not be fetched: ${e(bill.stripe.error)}</p>`
        : `<p>Stripe's invoice preview: <strong data-testid="stripe-preview">${cents(bill.stripe.totalCents)}</strong>${
            bill.stripe.totalCents === bill.totalCents ? ' (agrees with ours)' : ` <span class="error">(differs from ours: usage not synced yet)</span>`
          }</p>`;
  const refused = bill.refused.events > 0 ? `<p class="error">${int(bill.refused.tokens)} tokens (${bill.refused.events} meter events) were refused by Stripe and are not on the invoice.</p>` : '';
  return renderPage({
    ...ctx,
    title: `Billing, ${bill.period}`,
    active: 'bill',
    body: `${state}
<table><caption class="muted">${e(bill.from.slice(0, 10))} to ${e(bill.to.slice(0, 10))} (UTC), one line per Stripe price, each rounded to the cent</caption>
<thead><tr><th scope="col">Model</th><th scope="col">Tier</th><th scope="col">Direction</th><th scope="col">Tokens</th><th scope="col">Price</th><th scope="col">Amount</th></tr></thead>
<tbody>${rows || '<tr><td colspan="6">No usage in this period.</td></tr>'}</tbody>
<tfoot><tr><th scope="row" colspan="5">Our figure</th><td><strong data-testid="our-total">${cents(bill.totalCents)}</strong></td></tr></tfoot></table>
${preview}${refused}<p><a href="/orgs/${slug}/usage">Usage</a> · <a href="/api/orgs/${slug}/billing?period=${e(bill.period)}">JSON</a></p>`,
  });
}
