import type { FastifyInstance } from 'fastify';

/**
 * The console's Content-Security-Policy: scripts and styles only from the console itself (the pages have no
 * inline script, style or event handler: see pages/assets.ts), nothing framed and no framing, forms post only
 * here, no plugins, no <base> tricks.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** Sent with every answer of the console (pages, JSON, errors, assets). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  // URLs carry org slugs, key ids and one-time flash ids: other sites get no referrer at all
  'referrer-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
};

/** Adds {@link SECURITY_HEADERS} to every reply, error replies included (onSend runs for all of them). */
export function addSecurityHeaders(fastify: FastifyInstance): void {
  fastify.addHook('onSend', (_req, reply, payload, done) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
      if (!reply.hasHeader(name)) reply.header(name, value);
    }
    done(null, payload);
  });
}
