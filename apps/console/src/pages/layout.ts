import { ASSETS } from './assets';

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const e = escapeHtml;


/** Who is signed in, as the header shows it (a `User` row or `@CurrentUser()` both fit). */
export interface PageUser {
  login: string;
  name?: string | null;
  avatarUrl?: string | null;
}

/** An org as the header shows it (an `OrgView` or an `orgs` row both fit). */
export interface PageOrg {
  slug: string;
  name: string;
  /** Set when billing sync to Stripe fails for the org (owners and admins): every org page shows a banner. */
  billingSync?: { reason: string; since: string | null; nextRetryAt: string | null } | null;
}

/** The banner of an org whose usage is not reaching Stripe: what is wrong, since when, and where to fix it. */
function billingSyncBanner(org: PageOrg): string {
  const f = org.billingSync;
  if (!f) return '';
  const since = f.since ? ` since ${e(f.since.slice(0, 16).replace('T', ' '))} UTC` : '';
  const retry = f.nextRetryAt ? ` Next try: ${e(f.nextRetryAt.slice(0, 16).replace('T', ' '))} UTC.` : '';
  return `<div class="error" role="alert" data-testid="billing-sync-failing"><strong>Billing sync to Stripe is failing for this org${since}.</strong> ${e(f.reason)}${retry} <a href="/orgs/${encodeURIComponent(org.slug)}/billing">Open the Bill page</a></div>`;
}

/** What every page needs: its title and body, and for signed-in pages the user, org and CSRF token. */
export interface PageContext {
  title: string;
  user?: PageUser | null;
  /** The session's CSRF token: the sign-out form posts it. */
  csrfToken?: string;
  /** The org the page is about: adds its sections (Keys, Members, Limits, Usage, Batches, Bill) to the header. */
  org?: PageOrg | null;
  /** The user's orgs, for the org switcher. */
  orgs?: PageOrg[];
  active?: 'keys' | 'members' | 'limits' | 'usage' | 'batches' | 'bill' | 'orgs' | 'tiers';
  body: string;
}

/**
 * A whole page: a skip link, the header (org switcher, sections of the current org, Tiers, sign-out), then
 * `<main>` with the title as its `<h1>` and `body` (HTML: escape what you put in it with {@link escapeHtml}).
 */
export function renderPage(p: PageContext): string {
  const nav: string[] = [];
  if (p.user) {
    nav.push(`<a href="/orgs"${p.active === 'orgs' ? ' aria-current="page"' : ''}>Orgs</a>`);
    nav.push(`<a href="/tiers"${p.active === 'tiers' ? ' aria-current="page"' : ''}>Tiers</a>`);
    if (p.org) {
      const base = `/orgs/${encodeURIComponent(p.org.slug)}`;
      for (const [key, label] of [['keys', 'API keys'], ['members', 'Members'], ['limits', 'Limits'], ['usage', 'Usage'], ['batches', 'Batches'], ['billing', 'Bill']] as const) {
        const current = p.active === key || (key === 'billing' && p.active === 'bill');
        nav.push(`<a href="${base}/${key}"${current ? ' aria-current="page"' : ''}>${label}</a>`);
      }
    }
  }
  const switcher =
    p.user && p.orgs && p.orgs.length > 0
      ? `<nav aria-label="Your orgs">${p.orgs
          .map((o) => `<a href="/orgs/${encodeURIComponent(o.slug)}/keys"${p.org?.slug === o.slug ? ' aria-current="true"' : ''}>${e(o.name)}</a>`)
          .join(' · ')}</nav>`
      : '';
  const account = p.user
    ? `<form method="post" action="/auth/logout"><input type="hidden" name="_csrf" value="${e(p.csrfToken)}"><span>${e(p.user.login)}</span> <button type="submit">Sign out</button></form>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${e(p.title)} · spotinference</title><link rel="icon" href="data:,"><link rel="stylesheet" href="${ASSETS.css.url}"><script src="${ASSETS.js.url}" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a><header><strong><a href="/">spotinference</a></strong>${switcher}<nav aria-label="Sections">${nav.join('')}</nav>${account}</header>
<main id="main">${p.org ? billingSyncBanner(p.org) : ''}<h1>${e(p.title)}</h1>
${p.body}
</main></body></html>`;
}

