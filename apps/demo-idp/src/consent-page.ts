/**
 * The fake's HTML: the consent page (plain forms, no script) and its error pages. Every page says, first
 * and plainly, that this is a local stand-in and not GitHub.
 */

/** The label every page carries. */
export const DEMO_LABEL = 'Local demo identity provider (not GitHub)';

export interface ConsentUser {
  id: number;
  login: string;
  name?: string;
}

export interface ConsentPageInput {
  /** Opaque handle of the parked authorize request, posted back by every form. */
  handle: string;
  clientId: string;
  redirectUri: string;
  scopes: string[];
  users: readonly ConsentUser[];
  /** A `login` hint from the authorize request: that user is listed first. */
  loginHint?: string;
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)} · ${DEMO_LABEL}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
.banner{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.75rem 1rem;font-weight:600}
ul{list-style:none;padding:0}li{margin:.5rem 0}
button{font:inherit;padding:.4rem .9rem;border-radius:6px;border:1px solid #8c959f;cursor:pointer}
button.approve{background:#1f883d;color:#fff;border-color:#1a7f37}
code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}
</style>
</head>
<body>
<p class="banner" role="note">${DEMO_LABEL}: a stand-in for GitHub sign-in on this machine. No GitHub account is involved and no password is asked for.</p>
<main>
${body}
</main>
</body>
</html>
`;
}

function hidden(handle: string): string {
  return `<input type="hidden" name="authorization_request" value="${escapeHtml(handle)}">`;
}

/** The page GET /login/oauth/authorize shows: one form per fake user (Authorize as …) and a Cancel form. */
export function consentPage(input: ConsentPageInput): string {
  const users = [...input.users].sort((a, b) => Number(b.login === input.loginHint) - Number(a.login === input.loginHint));
  const scopeText = input.scopes.length > 0 ? input.scopes.map((s) => `<code>${escapeHtml(s)}</code>`).join(', ') : 'public profile only';
  const items = users
    .map((u) => {
      const who = u.name ? `${u.name} (@${u.login})` : `@${u.login}`;
      return `<li><form method="post" action="/login/oauth/authorize">${hidden(input.handle)}<input type="hidden" name="login" value="${escapeHtml(u.login)}"><button type="submit" class="approve" name="decision" value="approve">Authorize as ${escapeHtml(who)}</button></form></li>`;
    })
    .join('\n');
  const list = users.length > 0 ? `<ul aria-labelledby="choose">\n${items}\n</ul>` : '<p>No demo users are configured, so there is no one to sign in as.</p>';
  return page(
    'Authorize application',
    `<h1>Authorize <code>${escapeHtml(input.clientId)}</code></h1>
<p>The application wants to sign you in and read: ${scopeText}.</p>
<p>You will be sent back to <code>${escapeHtml(input.redirectUri)}</code>.</p>
<h2 id="choose">Sign in as</h2>
${list}
<form method="post" action="/login/oauth/authorize">${hidden(input.handle)}<button type="submit" name="decision" value="deny">Cancel</button></form>`,
  );
}

/** An error page (GitHub shows a plain page rather than redirecting when it cannot trust the request). */
export function errorPage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n<p>${escapeHtml(message)}</p>`);
}

/** GET / : what this server is, for whoever opens it in a browser. */
export function indexPage(apiUrl: string): string {
  return page(
    'About',
    `<h1>${DEMO_LABEL}</h1>
<p>This server imitates GitHub's OAuth web flow so that the console's “Sign in with GitHub” works without GitHub.</p>
<ul>
<li>Authorize: <code>/login/oauth/authorize</code></li>
<li>Token: <code>/login/oauth/access_token</code></li>
<li>API: <code>${escapeHtml(apiUrl)}/user</code>, <code>${escapeHtml(apiUrl)}/user/emails</code></li>
</ul>`,
  );
}

/** A small SVG avatar with the user's initial, so avatar_url works offline. */
export function avatarSvg(login: string): string {
  const initial = escapeHtml((login[0] ?? '?').toUpperCase());
  let hue = 0;
  for (const ch of login) hue = (hue * 31 + ch.charCodeAt(0)) % 360;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120" viewBox="0 0 120 120" role="img" aria-label="${escapeHtml(login)}"><rect width="120" height="120" fill="hsl(${hue},45%,55%)"/><text x="60" y="78" font-family="sans-serif" font-size="56" text-anchor="middle" fill="#fff">${initial}</text></svg>`;
}
