export { API_KEY_PREFIX, mintApiKey, hashApiKey, isWellFormedApiKey } from './api-key';
export type { MintedApiKey } from './api-key';
export { KEY_REVOCATION_CHANNEL, KEY_CHANGED_CHANNEL, ORG_CHANGED_CHANNEL } from './revocation';
export type { KeyRevocationMessage, OrgChangedMessage } from './revocation';
export { OrgChangePublisher } from './org-change.publisher';
export { ApiKeysService } from './api-keys.service';
export type { CreateApiKeyInput, CreatedApiKey, UpdateApiKeyInput } from './api-keys.service';
export { KeysModule } from './keys.module';
export { KeysError, InvalidArgumentError, ApiKeyNotFoundError, RevocationNotPublishedError } from './keys.errors';
export {
  MAX_KEY_NAME_LENGTH,
  MAX_KEY_LIFETIME_MS,
  parseKeyName,
  parseModelIds,
  parseDuration,
  parseKeyReference,
  parseLimit,
} from './key-input';
