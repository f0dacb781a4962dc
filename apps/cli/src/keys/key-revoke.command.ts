import { ApiKeysService, parseKeyReference } from '@spot/keys';
import type { CliCommand } from '../command';

/** `key revoke <key-id-or-prefix>`: revokes in Postgres, then tells every gateway over Redis. */
export const keyRevokeCommand: CliCommand = {
  name: 'key revoke',
  synopsis: 'key revoke <key-id-or-prefix>',
  summary: 'Revoke a key; every gateway drops it at once.',
  options: {},
  positionals: ['key-id-or-prefix'],
  prepare(args) {
    const ref = parseKeyReference(args.positionals[0], 'key-id-or-prefix');
    return async ({ app, print }) => {
      const key = await app.get(ApiKeysService).revoke(ref);
      print(`Revoked key ${key.prefix} (${key.name})`);
      print(`  id:       ${key.id}`);
      print(`  revoked:  ${key.revokedAt?.toISOString() ?? ''}`);
      print('The revocation was published to every gateway.');
    };
  },
};
