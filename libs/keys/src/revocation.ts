/** Redis pub/sub channel (after the configured prefix) on which revoked keys' hashes are announced. */
export const KEY_REVOCATION_CHANNEL = 'keys:revoked';

/** What is published on {@link KEY_REVOCATION_CHANNEL}: the key's SHA-256, never the key. */
export interface KeyRevocationMessage {
  secretHash: string;
  keyId: string;
}
