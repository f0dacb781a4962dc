/** Redis pub/sub channel (after the configured prefix) on which revoked keys' hashes are announced. */
export const KEY_REVOCATION_CHANNEL = 'keys:revoked';

/** What is published on {@link KEY_REVOCATION_CHANNEL}: the key's SHA-256, never the key. */
export interface KeyRevocationMessage {
  secretHash: string;
  keyId: string;
}

/**
 * Redis pub/sub channel (after the configured prefix) on which a change to an org that the gateway caches
 * with its keys (monthly budget, billing status) is announced; gateways drop that org's cached keys.
 */
export const ORG_CHANGED_CHANNEL = 'orgs:changed';

/** What is published on {@link ORG_CHANGED_CHANNEL}. */
export interface OrgChangedMessage {
  orgId: string;
}

/**
 * Redis pub/sub channel (after the configured prefix) on which a key whose settings changed (name, allowed
 * models, limits, expiry) is announced, with the same message as a revocation; gateways re-read it.
 */
export const KEY_CHANGED_CHANNEL = 'keys:changed';
