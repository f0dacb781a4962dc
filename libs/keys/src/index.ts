export { API_KEY_PREFIX, mintApiKey, hashApiKey, isWellFormedApiKey } from './api-key';
export type { MintedApiKey } from './api-key';
export { KEY_REVOCATION_CHANNEL } from './revocation';
export type { KeyRevocationMessage } from './revocation';
