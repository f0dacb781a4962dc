/** Base of the errors the keys library throws; `code` is stable, messages are for people. */
export abstract class KeysError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An input that does not fit its rule; `argument` names it (`--expires-in`, `name`...). */
export class InvalidArgumentError extends KeysError {
  readonly code = 'invalid_argument';

  constructor(
    readonly argument: string,
    message: string,
  ) {
    super(`${argument}: ${message}`);
  }
}

/** No key has this id or prefix. */
export class ApiKeyNotFoundError extends KeysError {
  readonly code = 'api_key_not_found';

  constructor(readonly idOrPrefix: string) {
    super(`no API key with id or prefix ${idOrPrefix}`);
  }
}

/**
 * The key is revoked in Postgres but the announcement to the gateways failed: they drop it when their
 * cache entry expires (KEY_CACHE_TTL_MS) instead of at once. Revoking again republishes.
 */
export class RevocationNotPublishedError extends KeysError {
  readonly code = 'revocation_not_published';

  constructor(
    readonly keyId: string,
    options?: ErrorOptions,
  ) {
    super(
      `key ${keyId} is revoked, but the revocation could not be published to Redis; ` +
        'gateways will drop it when their cache entry expires. Run the revoke again to republish.',
      options,
    );
  }
}
