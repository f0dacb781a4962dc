/**
 * GitHub's wire format, as its docs and real responses show it: the OAuth error bodies of the web flow, the
 * three encodings of the token response, and the REST user objects. No state and no I/O here.
 */

const DOCS = 'https://docs.github.com';
const AUTHORIZE_ERRORS = `${DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/`;
const TOKEN_ERRORS = `${DOCS}/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/`;

/** An OAuth error as GitHub words it: on the callback's query string, or in a token response body. */
export interface OAuthErrorBody {
  error: string;
  error_description: string;
  error_uri: string;
}

/** Sent to the callback when the user presses Cancel. */
export const ACCESS_DENIED: OAuthErrorBody = {
  error: 'access_denied',
  error_description: 'The user has denied your application access.',
  error_uri: `${AUTHORIZE_ERRORS}#access-denied`,
};

/** Sent to the registered callback when the authorize request's redirect_uri is not under it. */
export const AUTHORIZE_REDIRECT_URI_MISMATCH: OAuthErrorBody = {
  error: 'redirect_uri_mismatch',
  error_description: 'The redirect_uri MUST match the registered callback URL for this application.',
  error_uri: `${AUTHORIZE_ERRORS}#redirect-uri-mismatch`,
};

/** Token endpoint: wrong or unknown client_id / client_secret. */
export const INCORRECT_CLIENT_CREDENTIALS: OAuthErrorBody = {
  error: 'incorrect_client_credentials',
  error_description: 'The client_id and/or client_secret passed are incorrect.',
  error_uri: `${TOKEN_ERRORS}#incorrect-client-credentials`,
};

/** Token endpoint: redirect_uri differs from the one the code was issued for (GitHub's docs give this anchor). */
export const TOKEN_REDIRECT_URI_MISMATCH: OAuthErrorBody = {
  error: 'redirect_uri_mismatch',
  error_description: 'The redirect_uri MUST match the registered callback URL for this application.',
  error_uri: `${AUTHORIZE_ERRORS}#redirect-uri-mismatch2`,
};

/** Token endpoint: code unknown, used, expired, issued to another client, or (here) failing its PKCE check. */
export const BAD_VERIFICATION_CODE: OAuthErrorBody = {
  error: 'bad_verification_code',
  error_description: 'The code passed is incorrect or expired.',
  error_uri: `${TOKEN_ERRORS}#bad-verification-code`,
};

/** The successful token response's fields, in GitHub's order. */
export interface TokenResponseBody {
  access_token: string;
  token_type: 'bearer';
  scope: string;
}

export interface EncodedBody {
  contentType: string;
  body: string;
}

/**
 * Encodes a token endpoint answer the way GitHub picks it from the Accept header: JSON for
 * `application/json`, XML for `application/xml`, and form encoding otherwise (GitHub's default, which
 * node-oauth, and so passport-oauth2, parses when JSON.parse fails). Errors travel the same way, with 200.
 */
export function encodeTokenEndpointBody(accept: string | undefined, fields: TokenResponseBody | OAuthErrorBody): EncodedBody {
  const wants = (accept ?? '').toLowerCase();
  const pairs: [string, string][] = Object.entries(fields);
  if (wants.includes('application/json')) {
    return { contentType: 'application/json; charset=utf-8', body: JSON.stringify(fields) };
  }
  if (wants.includes('application/xml')) {
    const inner = pairs.map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`).join('');
    return { contentType: 'application/xml; charset=utf-8', body: `<OAuth>${inner}</OAuth>` };
  }
  // GitHub's form answer lists access_token, scope, token_type in that order.
  const ordered: [string, string][] =
    'access_token' in fields ? [['access_token', fields.access_token], ['scope', fields.scope], ['token_type', fields.token_type]] : pairs;
  return { contentType: 'application/x-www-form-urlencoded; charset=utf-8', body: new URLSearchParams(ordered).toString() };
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The REST API's error envelope, with the `status` string GitHub now adds. */
export interface ApiErrorBody {
  message: string;
  documentation_url: string;
  status: string;
}

export const BAD_CREDENTIALS: ApiErrorBody = { message: 'Bad credentials', documentation_url: `${DOCS}/rest`, status: '401' };

export const REQUIRES_AUTHENTICATION: ApiErrorBody = {
  message: 'Requires authentication',
  documentation_url: `${DOCS}/rest/users/users#get-the-authenticated-user`,
  status: '401',
};

/** What GitHub answers on /user/emails to a token without the `user` or `user:email` scope: 404, not 403. */
export const EMAILS_NOT_FOUND: ApiErrorBody = {
  message: 'Not Found',
  documentation_url: `${DOCS}/rest/users/emails#list-email-addresses-for-the-authenticated-user`,
  status: '404',
};

export const NOT_FOUND: ApiErrorBody = { message: 'Not Found', documentation_url: `${DOCS}/rest`, status: '404' };

export const SERVER_ERROR = { message: 'Server Error' } as const;

/** One entry of GET /user/emails. */
export interface GitHubEmailJson {
  email: string;
  primary: boolean;
  verified: boolean;
  visibility: 'public' | 'private' | null;
}

/** The account data a fake user is built from (see FakeGitHubUser in fake-github.ts). */
export interface UserRecord {
  id: number;
  login: string;
  name?: string;
  email?: string | null;
  emails?: GitHubEmailJson[];
  avatarUrl?: string;
}

/** A legacy GraphQL node id, as GitHub still returns for older accounts: base64 of `04:User<id>`. */
export function nodeIdOf(id: number): string {
  return Buffer.from(`04:User${id}`).toString('base64');
}

/**
 * GET /user for the token's owner: GitHub's "private user" object (public fields plus the owner-only ones).
 * `email` is the *public* email only, null when the user keeps it private, as on GitHub.
 */
export function authenticatedUserJson(user: UserRecord, apiUrl: string, webUrl: string): Record<string, unknown> {
  const url = `${apiUrl}/users/${user.login}`;
  return {
    login: user.login,
    id: user.id,
    node_id: nodeIdOf(user.id),
    avatar_url: user.avatarUrl ?? `${webUrl}/avatars/u/${user.id}?v=4`,
    gravatar_id: '',
    url,
    html_url: `${webUrl}/${user.login}`,
    followers_url: `${url}/followers`,
    following_url: `${url}/following{/other_user}`,
    gists_url: `${url}/gists{/gist_id}`,
    starred_url: `${url}/starred{/owner}{/repo}`,
    subscriptions_url: `${url}/subscriptions`,
    organizations_url: `${url}/orgs`,
    repos_url: `${url}/repos`,
    events_url: `${url}/events{/privacy}`,
    received_events_url: `${url}/received_events`,
    type: 'User',
    user_view_type: 'private',
    site_admin: false,
    name: user.name ?? null,
    company: null,
    blog: '',
    location: null,
    email: user.email ?? null,
    hireable: null,
    bio: null,
    twitter_username: null,
    notification_email: user.email ?? null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: '2020-01-01T00:00:00Z',
    updated_at: '2020-01-01T00:00:00Z',
    private_gists: 0,
    total_private_repos: 0,
    owned_private_repos: 0,
    disk_usage: 0,
    collaborators: 0,
    two_factor_authentication: false,
    plan: { name: 'free', space: 976562499, collaborators: 0, private_repos: 10000 },
  };
}

/**
 * GET /user/emails. Every GitHub account has a primary address; a fake user given none gets its
 * public email, or else a private noreply address, so that passport-github2 (which fails on an empty list)
 * behaves as it would against a real account.
 */
export function emailsJson(user: UserRecord): GitHubEmailJson[] {
  if (user.emails && user.emails.length > 0) return user.emails.map((e) => ({ ...e }));
  if (user.email) return [{ email: user.email, primary: true, verified: true, visibility: 'public' }];
  return [{ email: `${user.id}+${user.login}@users.noreply.github.com`, primary: true, verified: true, visibility: 'private' }];
}

/** Scopes as GitHub reads them from an authorize request: comma or space separated, deduplicated. */
export function parseScopes(raw: string | undefined): string[] {
  if (!raw) return [];
  return [...new Set(raw.split(/[\s,]+/).filter((s) => s.length > 0))];
}

/** Whether a token with these scopes may read /user/emails. */
export function canReadEmails(scopes: readonly string[]): boolean {
  return scopes.includes('user') || scopes.includes('user:email');
}
