import type { KeyView } from '../keys/console-keys.service';
import type { OrgView } from '../orgs/orgs.service';
import type { UsageReport } from '../usage/usage.service';
import { escapeHtml, type PageContext, renderPage } from './layout';

// Pages of other features import the layout from here too.
export { escapeHtml, type PageContext, renderPage };

const e = escapeHtml;

/** The layout's context for a page of one of the user's orgs (its role and budget are shown). */
type ViewContext = Omit<PageContext, 'title' | 'body' | 'org'> & { org?: OrgView | null };

export function errorPage(status: number, message: string): string {
  return renderPage({
    title: status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : status === 400 ? 'Please check your input' : 'Something went wrong',
    body: `<p class="error" role="alert">${e(message)}</p><p><a href="/" data-back>Back</a> · <a href="/orgs">Your orgs</a></p>`,
  });
}

/** The sign-in page's message per failure code (the URL carries only the code). */
const SIGN_IN_ERRORS: Record<string, string> = {
  denied: 'Sign-in was cancelled: access was not granted at GitHub. Nothing was changed.',
  state: 'Sign-in could not be verified (the link expired, was used already, or did not start in this browser). Please try again.',
  github: 'GitHub sign-in failed: GitHub did not answer as expected. Please try again in a moment.',
  unconfigured: 'GitHub sign-in is not configured on this console.',
  incomplete: 'Sign-in did not complete. Please try again.',
};

export function signInPage(opts: { error?: string; next?: string | null; signedOut?: boolean; configured: boolean; demo: boolean }): string {
  const parts: string[] = [];
  if (opts.error) parts.push(`<p class="error" role="alert">${e(SIGN_IN_ERRORS[opts.error] ?? SIGN_IN_ERRORS.incomplete)}</p>`);
  if (opts.signedOut) parts.push(`<p class="notice" role="status">You are signed out.</p>`);
  if (!opts.configured) {
    parts.push(`<p class="error">GitHub sign-in is not configured: set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET (or start with <code>npm start</code>, which runs a local demo identity provider).</p>`);
  } else {
    if (opts.demo) {
      parts.push(
        `<p class="notice"><span class="demo">DEMO</span> Sign-in goes to a <strong>local demo identity provider</strong>, not GitHub: it runs on this machine and lets you pick a demo account. Set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET to use GitHub.</p>`,
      );
    }
    const start = opts.next ? `/auth/github?next=${encodeURIComponent(opts.next)}` : '/auth/github';
    parts.push(`<p><a class="button" href="${e(start)}">Sign in with GitHub${opts.demo ? ' (demo)' : ''}</a></p>`);
    parts.push(`<p class="muted">We ask GitHub for your public profile and email address (scopes read:user, user:email).</p>`);
  }
  return renderPage({ title: 'Sign in', body: parts.join('\n') });
}

export function orgsPage(ctx: ViewContext, orgs: OrgView[]): string {
  const list =
    orgs.length === 0
      ? `<p>You do not belong to any org yet. Create one, or ask an owner to invite your GitHub login.</p>`
      : `<table><caption class="muted">Your orgs</caption><thead><tr><th scope="col">Org</th><th scope="col">Slug</th><th scope="col">Your role</th></tr></thead><tbody>${orgs
          .map((o) => `<tr><td><a href="/orgs/${encodeURIComponent(o.slug)}/keys">${e(o.name)}</a></td><td><code>${e(o.slug)}</code></td><td>${e(o.role)}</td></tr>`)
          .join('')}</tbody></table>`;
  const form = `<form method="post" action="/orgs"><fieldset><legend>Create an org</legend>
<input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<label for="org-name">Name</label><input type="text" id="org-name" name="name" required maxlength="100">
<label for="org-slug">Slug</label><input type="text" id="org-slug" name="slug" required pattern="[a-z0-9][a-z0-9\\-]{1,38}[a-z0-9]" aria-describedby="slug-help">
<p id="slug-help" class="muted">3-40 lower-case letters, digits and -; used in URLs.</p>
<button type="submit">Create org</button></fieldset></form>`;
  return renderPage({ ...ctx, title: 'Your orgs', active: 'orgs', body: list + form });
}

function date(iso: string | null): string {
  return iso ? `<time datetime="${e(iso)}">${e(iso.slice(0, 16).replace('T', ' '))} UTC</time>` : '<span class="muted">never</span>';
}

export function keysPage(ctx: ViewContext, keys: KeyView[], models: string[], gatewayUrl: string): string {
  const org = ctx.org!;
  const base = `/orgs/${encodeURIComponent(org.slug)}`;
  const rows = keys
    .map((k) => {
      const status = k.revokedAt ? '<span class="badge">revoked</span>' : k.expiresAt && k.expiresAt < new Date().toISOString() ? '<span class="badge">expired</span>' : '<span class="badge">active</span>';
      const mayChange = org.role !== 'member' || k.createdBy === ctx.user?.login;
      const action =
        k.revokedAt || !mayChange
          ? ''
          : `<a href="${base}/keys/${e(k.id)}" aria-label="${e(`Edit ${k.name}`)}">Edit</a> · <a href="${base}/keys/${e(k.id)}/revoke" aria-label="${e(`Revoke ${k.name}`)}">Revoke…</a>`;
      return `<tr><td>${e(k.name)}</td><td><code>${e(k.prefix)}…</code></td><td>${status}</td><td>${k.allowedModels.length ? k.allowedModels.map((m) => `<code>${e(m)}</code>`).join(' ') : 'all'}</td><td>${k.rpmLimit ?? '–'} / ${k.tpmLimit ?? '–'}</td><td>${e(k.createdBy ?? 'CLI')}</td><td>${date(k.lastUsedAt)}</td><td>${date(k.expiresAt)}</td><td>${action}</td></tr>`;
    })
    .join('');
  const table = keys.length
    ? `<table><caption class="muted">Keys of ${e(org.name)}</caption><thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Status</th><th scope="col">Models</th><th scope="col">RPM / TPM</th><th scope="col">Created by</th><th scope="col">Last used</th><th scope="col">Expires</th><th scope="col"><span class="muted">Actions</span></th></tr></thead><tbody>${rows}</tbody></table>`
    : '<p>No keys yet.</p>';
  const modelBoxes = models
    .map((m, i) => `<label class="check"><input type="checkbox" name="allowedModels" value="${e(m)}" id="model-${i}"> ${e(m)}</label>`)
    .join('');
  const form = `<form method="post" action="${base}/keys"><fieldset><legend>Create a key</legend>
<input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<label for="key-name">Name</label><input type="text" id="key-name" name="name" required maxlength="100" value="default">
<fieldset><legend>Allowed models (none checked: all)</legend>${modelBoxes || '<p class="muted">All models.</p>'}</fieldset>
<label for="key-rpm">Requests per minute (empty: no limit)</label><input type="number" id="key-rpm" name="rpmLimit" min="1">
<label for="key-tpm">Tokens per minute (empty: no limit)</label><input type="number" id="key-tpm" name="tpmLimit" min="1">
<label for="key-expires">Expires in days (empty: never)</label><input type="number" id="key-expires" name="expiresInDays" min="1" max="3650">
<p><button type="submit">Create key</button></p></fieldset></form>`;
  const usage = `<h2>Use it</h2><p>Base URL: <code>${e(gatewayUrl)}</code></p><pre>import OpenAI from 'openai';
const client = new OpenAI({ baseURL: '${e(gatewayUrl)}', apiKey: process.env.SPOT_API_KEY });</pre>`;
  return renderPage({ ...ctx, title: 'API keys', active: 'keys', body: table + form + usage });
}

export function keyCreatedPage(ctx: ViewContext, key: string, name: string, gatewayUrl: string): string {
  const base = `/orgs/${encodeURIComponent(ctx.org!.slug)}`;
  return renderPage({
    ...ctx,
    title: 'Your new API key',
    active: 'keys',
    body: `<p class="notice" role="status">Copy this key now: <strong>you will not see it again</strong>. We store only its hash.</p>
<p><label for="new-key">Key “${e(name)}”</label><input type="text" id="new-key" class="secret" readonly value="${e(key)}" size="70" data-testid="new-key">
<button type="button" id="copy" hidden>Copy</button></p>
<pre>export OPENAI_BASE_URL=${e(gatewayUrl)}
export OPENAI_API_KEY=${e(key)}</pre>
<p><a href="${base}/keys">Done: back to the keys</a></p>`,
  });
}

export function keyGonePage(ctx: ViewContext): string {
  const base = `/orgs/${encodeURIComponent(ctx.org!.slug)}`;
  return renderPage({
    ...ctx,
    title: 'Key already shown',
    active: 'keys',
    body: `<p class="error" role="alert">A new key is shown once only, and this one was already shown (or the link expired). If you did not copy it, revoke it and create another.</p><p><a href="${base}/keys">Back to the keys</a></p>`,
  });
}

/** Expiry choices of the key form: keep what it is, never, or a number of days from now. */
const EXPIRY_CHOICES: Array<[string, string]> = [
  ['never', 'Never'],
  ['7', 'In 7 days'],
  ['30', 'In 30 days'],
  ['90', 'In 90 days'],
  ['365', 'In a year'],
];

/** /orgs/:org/keys/:id: a key's settings (name, allowed models, limits, expiry), saved with POST/redirect/GET. */
export function keyPage(ctx: ViewContext, key: KeyView, models: string[], saved: boolean): string {
  const base = `/orgs/${encodeURIComponent(ctx.org!.slug)}`;
  const status = key.revokedAt ? `revoked ${date(key.revokedAt)}` : 'active';
  const facts = `<table><caption class="sr-only">About this key</caption><tbody>
<tr><th scope="row">Key</th><td><code>${e(key.prefix)}…</code> (${status})</td></tr>
<tr><th scope="row">Created</th><td>${date(key.createdAt)} by ${e(key.createdBy ?? 'the CLI')}</td></tr>
<tr><th scope="row">Last used</th><td>${date(key.lastUsedAt)}</td></tr>
<tr><th scope="row">Expires</th><td>${date(key.expiresAt)}</td></tr></tbody></table>`;
  if (key.revokedAt) {
    return renderPage({ ...ctx, title: `Key ${key.name}`, active: 'keys', body: `${facts}<p>A revoked key cannot be changed.</p><p><a href="${base}/keys">Back to the keys</a></p>` });
  }
  // models the key allows but the tiers no longer serve stay listed, so a save does not drop them silently
  const all = [...new Set([...models, ...key.allowedModels])].sort();
  const boxes = all
    .map(
      (m, i) =>
        `<label class="check"><input type="checkbox" name="allowedModels" value="${e(m)}" id="edit-model-${i}"${key.allowedModels.includes(m) ? ' checked' : ''}> ${e(m)}${models.includes(m) ? '' : ' <span class="muted">(not served now)</span>'}</label>`,
    )
    .join('');
  const expiry = [['keep', key.expiresAt ? `Keep (${key.expiresAt.slice(0, 16).replace('T', ' ')} UTC)` : 'Keep (never)'], ...EXPIRY_CHOICES]
    .map(([v, label]) => `<option value="${v}"${v === 'keep' ? ' selected' : ''}>${e(label)}</option>`)
    .join('');
  const form = `<form method="post" action="${base}/keys/${e(key.id)}"><fieldset><legend>Settings</legend>
<input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<label for="edit-name">Name</label><input type="text" id="edit-name" name="name" required maxlength="100" value="${e(key.name)}">
${all.length ? `<input type="hidden" name="modelsShown" value="1"><fieldset><legend>Allowed models (none checked: all)</legend>${boxes}</fieldset>` : '<p class="muted">Allowed models: the model list is unavailable; they stay as they are.</p>'}
<label for="edit-rpm">Requests per minute (empty: no limit)</label><input type="number" id="edit-rpm" name="rpmLimit" min="1" value="${key.rpmLimit ?? ''}">
<label for="edit-tpm">Tokens per minute (empty: no limit)</label><input type="number" id="edit-tpm" name="tpmLimit" min="1" value="${key.tpmLimit ?? ''}">
<label for="edit-expiry">Expiry</label><select id="edit-expiry" name="expires">${expiry}</select>
<p><button type="submit">Save changes</button> <a href="${base}/keys">Cancel</a></p></fieldset></form>`;
  const notice = saved ? '<p class="notice" role="status">Saved. Every gateway applies the change within a second.</p>' : '';
  return renderPage({
    ...ctx,
    title: `Key ${key.name}`,
    active: 'keys',
    body: `${notice}${facts}${form}<p><a href="${base}/keys/${e(key.id)}/revoke" class="button danger">Revoke this key…</a></p>`,
  });
}

export function revokePage(ctx: ViewContext, key: KeyView): string {
  const base = `/orgs/${encodeURIComponent(ctx.org!.slug)}`;
  return renderPage({
    ...ctx,
    title: `Revoke ${key.name}?`,
    active: 'keys',
    body: `<p>Revoking <code>${e(key.prefix)}…</code> (“${e(key.name)}”) makes every request with it fail with 401 within a second. This cannot be undone.</p>
<form method="post" action="${base}/keys/${e(key.id)}/revoke"><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<button type="submit" class="danger">Revoke key</button> <a href="${base}/keys">Cancel</a></form>`,
  });
}

export function membersPage(
  ctx: ViewContext,
  data: { members: Array<{ login: string; name: string | null; role: string; joinedAt: string }>; invitations: Array<{ login: string; role: string; invitedAt: string }> },
): string {
  const org = ctx.org!;
  const base = `/orgs/${encodeURIComponent(org.slug)}`;
  const manage = org.role !== 'member';
  const owner = org.role === 'owner';
  const removeForm = (login: string, label: string) =>
    `<form method="post" action="${base}/members/${encodeURIComponent(login)}/remove" class="inline" data-confirm="${e(`${label} ${login}?`)}"><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}"><button type="submit" class="danger" aria-label="${e(`${label} ${login}`)}">${label}</button></form>`;
  // admins change members and admins; owners anyone (the last owner is refused by the service)
  const roleForm = (m: { login: string; role: string }, i: number) =>
    manage && (owner || m.role !== 'owner')
      ? `<form method="post" action="${base}/members/${encodeURIComponent(m.login)}/role" class="inline"><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<label for="role-${i}" class="sr-only">Role of ${e(m.login)}</label><select id="role-${i}" name="role">${(owner ? ['member', 'admin', 'owner'] : ['member', 'admin'])
          .map((r) => `<option${r === m.role ? ' selected' : ''}>${r}</option>`)
          .join('')}</select> <button type="submit">Change role</button></form> `
      : '';
  const members = `<table><caption class="muted">Members</caption><thead><tr><th scope="col">GitHub login</th><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Joined</th><th scope="col"><span class="muted">Actions</span></th></tr></thead><tbody>${data.members
    .map((m, i) => {
      const self = m.login === ctx.user?.login;
      return `<tr><td>${e(m.login)}</td><td>${e(m.name ?? '')}</td><td>${e(m.role)}</td><td>${date(m.joinedAt)}</td><td>${roleForm(m, i)}${manage || self ? removeForm(m.login, self ? 'Leave' : 'Remove') : ''}</td></tr>`;
    })
    .join('')}</tbody></table>`;
  const invites = data.invitations.length
    ? `<h2>Pending invitations</h2><ul>${data.invitations.map((i) => `<li>${e(i.login)} as ${e(i.role)} ${manage ? removeForm(i.login, 'Withdraw') : ''}</li>`).join('')}</ul>`
    : '';
  const form = manage
    ? `<form method="post" action="${base}/members"><fieldset><legend>Invite by GitHub login</legend><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<label for="invite-login">GitHub login</label><input type="text" id="invite-login" name="login" required>
<label for="invite-role">Role</label><select id="invite-role" name="role"><option>member</option><option>admin</option>${org.role === 'owner' ? '<option>owner</option>' : ''}</select>
<p class="muted">They join the next time they sign in.</p><button type="submit">Invite</button></fieldset></form>`
    : '';
  return renderPage({ ...ctx, title: 'Members', active: 'members', body: members + invites + form });
}

export function limitsPage(ctx: ViewContext, keys: KeyView[]): string {
  const org = ctx.org!;
  const base = `/orgs/${encodeURIComponent(org.slug)}`;
  const admin = org.role !== 'member';
  const budget = `<form method="post" action="${base}/budget"><fieldset><legend>Monthly budget</legend><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<p>When this month's spend plus a request's worst case would pass the budget, the API answers 429 <code>insufficient_quota</code>.</p>
<label for="budget">USD per calendar month (UTC); empty: no budget</label><input type="number" id="budget" name="monthlyBudgetUsd" min="0" step="0.01" value="${org.monthlyBudgetUsd ?? ''}" ${admin ? '' : 'disabled'}>
${admin ? '<p><button type="submit">Save budget</button></p>' : '<p class="muted">Admins and owners can change it.</p>'}</fieldset></form>`;
  const active = keys.filter((k) => !k.revokedAt);
  const rows = active
    .map(
      (k) => `<tr><td>${e(k.name)} <code>${e(k.prefix)}…</code></td><td><form method="post" action="${base}/keys/${e(k.id)}/limits"><input type="hidden" name="_csrf" value="${e(ctx.csrfToken)}">
<label for="rpm-${e(k.id)}">RPM</label><input type="number" id="rpm-${e(k.id)}" name="rpmLimit" min="1" value="${k.rpmLimit ?? ''}">
<label for="tpm-${e(k.id)}">TPM</label><input type="number" id="tpm-${e(k.id)}" name="tpmLimit" min="1" value="${k.tpmLimit ?? ''}">
<button type="submit">Save limits</button></form></td></tr>`,
    )
    .join('');
  const table = active.length ? `<h2>Per-key limits</h2><p class="muted">Empty: no limit. Over a limit, the API answers 429 <code>rate_limit_exceeded</code>.</p><table><tbody>${rows}</tbody></table>` : '';
  return renderPage({ ...ctx, title: 'Limits', active: 'limits', body: budget + table });
}

const usd = (n: number) => `$${n.toFixed(n !== 0 && Math.abs(n) < 0.01 ? 6 : 2)}`;
const int = (n: number) => n.toLocaleString('en-US');

/** Daily tokens (bars) and cost (line) as inline SVG, with a text alternative. */
function dailyChart(report: UsageReport): string {
  const days = report.rows;
  if (days.length === 0) return '';
  const w = 720;
  const h = 180;
  const pad = 30;
  const maxTokens = Math.max(1, ...days.map((d) => d.promptTokens + d.completionTokens));
  const maxCost = Math.max(1e-9, ...days.map((d) => d.costUsd));
  const step = (w - 2 * pad) / days.length;
  const bars = days
    .map((d, i) => {
      const bh = ((d.promptTokens + d.completionTokens) / maxTokens) * (h - 2 * pad);
      return `<rect x="${(pad + i * step + 2).toFixed(1)}" y="${(h - pad - bh).toFixed(1)}" width="${Math.max(1, step - 4).toFixed(1)}" height="${bh.toFixed(1)}" fill="#2456d6"><title>${e(d.group)}: ${int(d.promptTokens + d.completionTokens)} tokens, ${usd(d.costUsd)}</title></rect>`;
    })
    .join('');
  const line = days.map((d, i) => `${(pad + i * step + step / 2).toFixed(1)},${(h - pad - (d.costUsd / maxCost) * (h - 2 * pad)).toFixed(1)}`).join(' ');
  return `<figure><svg role="img" aria-labelledby="chart-title" viewBox="0 0 ${w} ${h}" width="100%" class="chart">
<title id="chart-title">Tokens per day (bars, up to ${int(maxTokens)}) and cost per day (line, up to ${usd(maxCost)})</title>
<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#b8bfcc"/>${bars}
<polyline points="${line}" fill="none" stroke="#b42318" stroke-width="2"/>
<text x="${pad}" y="${h - 8}" font-size="11">${e(days[0].group)}</text><text x="${w - pad}" y="${h - 8}" font-size="11" text-anchor="end">${e(days[days.length - 1].group)}</text>
</svg><figcaption class="muted">Bars: tokens per day. Red line: cost per day.</figcaption></figure>`;
}

export function usagePage(ctx: ViewContext, report: UsageReport): string {
  const base = `/orgs/${encodeURIComponent(ctx.org!.slug)}`;
  const q = (group: string) => `?group=${group}&from=${encodeURIComponent(report.from.slice(0, 10))}&to=${encodeURIComponent(report.to)}`;
  const groups = (['day', 'model', 'tier', 'key'] as const)
    .map((g) => (g === report.group ? `<strong>${g}</strong>` : `<a href="${base}/usage${q(g)}">${g}</a>`))
    .join(' · ');
  const rows = report.rows
    .map(
      (r) =>
        `<tr><td>${e(r.label ?? r.group)}</td><td>${int(r.requests)}</td><td>${int(r.promptTokens)}</td><td>${int(r.completionTokens)}</td><td>${int(r.cachedTokens)}</td><td>${usd(r.cachedSavingsUsd)}</td><td>${int(r.audioSeconds)}</td><td>${usd(r.costUsd)}</td></tr>`,
    )
    .join('');
  const t = report.totals;
  const table = `<table><caption class="muted">${e(report.from.slice(0, 10))} to ${e(report.to.slice(0, 16).replace('T', ' '))} UTC, by ${e(report.group)}</caption>
<thead><tr><th scope="col">${e(report.group)}</th><th scope="col">Requests</th><th scope="col">Prompt tokens</th><th scope="col">Completion tokens</th><th scope="col">Cached tokens</th><th scope="col">Saved by caching</th><th scope="col">Audio seconds</th><th scope="col">Cost</th></tr></thead>
<tbody>${rows || '<tr><td colspan="8">No usage in this period.</td></tr>'}</tbody>
<tfoot><tr><th scope="row">Total</th><td>${int(t.requests)}</td><td>${int(t.promptTokens)}</td><td>${int(t.completionTokens)}</td><td>${int(t.cachedTokens)}</td><td data-testid="cached-savings-total">${usd(t.cachedSavingsUsd)}</td><td>${int(t.audioSeconds)}</td><td>${usd(t.costUsd)}</td></tr></tfoot></table>`;
  const caching = report.caching.length
    ? `<h2>Prompt caching</h2><p class="muted">Prompt tokens the engine read from its cache are billed at the model's cached input price; saved is what they would have cost more at the input price.</p>
<table><thead><tr><th scope="col">Model</th><th scope="col">Cached tokens</th><th scope="col">Saved</th></tr></thead>
<tbody>${report.caching.map((m) => `<tr><td>${e(m.model)}</td><td>${int(m.cachedTokens)}</td><td>${usd(m.cachedSavingsUsd)}</td></tr>`).join('')}</tbody>
<tfoot><tr><th scope="row">Total</th><td>${int(t.cachedTokens)}</td><td>${usd(t.cachedSavingsUsd)}</td></tr></tfoot></table>`
    : '';
  const csv = `/api/orgs/${encodeURIComponent(ctx.org!.slug)}/usage.csv${q(report.group)}`;
  return renderPage({
    ...ctx,
    title: 'Usage',
    active: 'usage',
    body: `<p>Group by: ${groups} · <a href="${csv}">Download CSV</a></p>${report.group === 'day' ? dailyChart(report) : ''}${table}${caching}`,
  });
}
