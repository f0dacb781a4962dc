import { html, type SafeHtml } from '../pages/html';
import { type PageContext, renderPage } from '../pages/views';
import type { BatchPage, BatchView } from './console-batches.service';

const usd = (n: number) => `$${n.toFixed(n !== 0 && Math.abs(n) < 0.01 ? 6 : 2)}`;
const int = (n: number) => n.toLocaleString('en-US');

function time(iso: string | null): SafeHtml {
  return iso === null ? html`<span class="muted">–</span>` : html`<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`;
}

/** completed + failed of total; indeterminate while the input is being validated (the total is not known yet). */
function progress(b: BatchView): SafeHtml {
  const label = `Progress of ${b.id}`;
  if (b.status === 'validating') return html`<progress aria-label="${label}"></progress> <span class="muted">validating</span>`;
  if (b.requestCounts.total === 0) return html`<span class="muted">–</span>`;
  const pct = Math.floor((b.done / b.requestCounts.total) * 100);
  return html`<progress value="${b.done}" max="${b.requestCounts.total}" aria-label="${label}">${pct}%</progress> ${pct}%`;
}

function about(b: BatchView): SafeHtml {
  const meta = Object.entries(b.metadata ?? {});
  return html`<code>${b.id}</code>${b.key ? html`<br><span class="muted">key ${b.key.name} (<code>${b.key.prefix}…</code>)</span>` : ''}${
    meta.length ? html`<dl class="meta">${meta.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>` : ''
  }`;
}

function status(b: BatchView): SafeHtml {
  const badge = html`<span class="badge" data-status="${b.status}">${b.status.replace('_', ' ')}</span>`;
  if (b.errors.length === 0) return badge;
  const shown = b.errors.slice(0, 5);
  return html`${badge}<details><summary>${b.errors.length} validation error${b.errors.length === 1 ? '' : 's'}</summary><ul>${shown.map(
    (e) => html`<li>${e.line === null ? '' : `line ${e.line}: `}${e.message} <code>${e.code}</code></li>`,
  )}</ul>${b.errors.length > shown.length ? html`<p class="muted">and ${b.errors.length - shown.length} more (see the JSON)</p>` : ''}</details>`;
}

function files(base: string, b: BatchView): SafeHtml {
  const links: SafeHtml[] = [];
  if (b.outputFileId) links.push(html`<a href="${base}/${b.id}/output" download>Output</a>`);
  if (b.errorFileId) links.push(html`<a href="${base}/${b.id}/errors" download>Errors</a>`);
  links.push(html`<a href="${base}/${b.id}/input" download>Input</a>`);
  return html`${links.map((l, i) => (i === 0 ? l : html` · ${l}`))}`;
}

function cancelForm(base: string, b: BatchView, csrfToken: string): SafeHtml | '' {
  if (!b.cancellable) return '';
  return html`<form method="post" action="${base}/${b.id}/cancel" class="inline" data-confirm="${`Cancel batch ${b.id}? Lines already done stay done and billed; no new ones start.`}"><input type="hidden" name="_csrf" value="${csrfToken}"><button type="submit" class="danger" aria-label="${`Cancel ${b.id}`}">Cancel</button></form>`;
}

function row(base: string, b: BatchView, csrfToken: string): SafeHtml {
  const c = b.requestCounts;
  return html`<tr data-batch="${b.id}"><td>${about(b)}</td><td>${status(b)}</td><td>${progress(b)}</td><td data-testid="counts">${int(b.requestCounts.completed)} completed · ${int(c.failed)} failed · ${int(c.total)} total</td><td><code>${b.endpoint}</code>${b.model ? html`<br><code>${b.model}</code>` : ''}</td><td>${time(b.createdAt)}</td><td>${time(b.finishedAt)}${
    b.finishedAt === null ? html`<br><span class="muted">window ends ${time(b.expiresAt)}</span>` : ''
  }</td><td><span data-testid="cost">${usd(b.costUsd)}</span>${
    b.usage.totalTokens > 0 ? html`<br><span class="muted" data-testid="tokens">${int(b.usage.inputTokens)} in · ${int(b.usage.outputTokens)} out</span>` : ''
  }</td><td>${files(base, b)}</td><td>${cancelForm(base, b, csrfToken)}</td></tr>`;
}

/** /orgs/:org/batches: the org's batches, newest first, a page at a time, with progress, cost, downloads and cancel. */
export function batchesPage(ctx: Omit<PageContext, 'title' | 'body' | 'active'>, page: BatchPage, opts: { after: string | null; cancelled: string | null }): string {
  const slug = encodeURIComponent(ctx.org?.slug ?? '');
  const base = `/orgs/${slug}/batches`;
  const csrf = ctx.csrfToken ?? '';
  const notice = opts.cancelled
    ? html`<p class="notice" role="status">Batch <code>${opts.cancelled}</code> is being cancelled: lines already running finish (and are billed), no new ones start; then its files are written.</p>`
    : '';
  const table = page.data.length
    ? html`<table class="batches"><caption class="muted">Batches of ${ctx.org?.name ?? ''}, newest first. Cost is what the finished lines cost so far, at the batch price, and their tokens.</caption>
<thead><tr><th scope="col">Batch</th><th scope="col">Status</th><th scope="col">Progress</th><th scope="col">Requests</th><th scope="col">Endpoint, model</th><th scope="col">Created</th><th scope="col">Finished</th><th scope="col">Cost</th><th scope="col">Files</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
<tbody>${page.data.map((b) => row(base, b, csrf))}</tbody></table>`
    : html`<p>${opts.after ? 'No older batches.' : 'No batches yet.'}</p>`;
  const nav: SafeHtml[] = [];
  if (opts.after) nav.push(html`<a href="${base}">Newest batches</a>`);
  if (page.nextAfter) nav.push(html`<a href="${`${base}?after=${encodeURIComponent(page.nextAfter)}`}" rel="next">Older batches</a>`);
  nav.push(html`<a href="${`/api/orgs/${slug}/batches`}">JSON</a>`);
  const help = html`<p class="muted">Create batches with the Batch API and one of the org's keys: <code>files.create</code> a JSONL file with purpose <code>batch</code>, then <code>batches.create</code>. They run on spot capacity, each line done and billed once, at the batch price.</p>`;
  const body = html`${notice}${help}${table}<p>${nav.map((l, i) => (i === 0 ? l : html` · ${l}`))}</p>`;
  return renderPage({ ...ctx, title: 'Batches', active: 'batches', body: body.value });
}
