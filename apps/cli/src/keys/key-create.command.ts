import { ApiKeysService, parseDuration, parseKeyName, parseLimit, parseModelIds } from '@spot/keys';
import { UsageError } from '../cli.errors';
import { stringOption, type CliCommand } from '../command';
import { parseOrgSlug } from '../orgs/org-input';
import { OrgsService } from '../orgs/orgs.service';

const DEFAULT_KEY_NAME = 'default';

/**
 * `key create --org <slug> ...`: prints a summary, then the new key alone on the last line of stdout
 * (scripts take it with `| tail -1`). The key is printed here once and nowhere else.
 */
export const keyCreateCommand: CliCommand = {
  name: 'key create',
  synopsis:
    'key create --org <slug> [--name <name>] [--models <a,b>] [--expires-in <90m|12h|30d|1w>] [--rpm <n>] [--tpm <n>]',
  summary: 'Mint an API key; the secret is printed once, alone on the last line.',
  options: {
    org: { type: 'string' },
    name: { type: 'string' },
    models: { type: 'string' },
    'expires-in': { type: 'string' },
    rpm: { type: 'string' },
    tpm: { type: 'string' },
  },
  positionals: [],
  prepare(args) {
    const rawOrg = stringOption(args, 'org');
    if (rawOrg === undefined) throw new UsageError('--org is required', 'key create');
    const orgSlug = parseOrgSlug(rawOrg, '--org');
    const name = parseKeyName(stringOption(args, 'name') ?? DEFAULT_KEY_NAME, '--name');
    const rawModels = stringOption(args, 'models');
    const allowedModels = rawModels === undefined ? [] : parseModelIds(rawModels, '--models');
    const rawExpiresIn = stringOption(args, 'expires-in');
    const lifetimeMs = rawExpiresIn === undefined ? null : parseDuration(rawExpiresIn, '--expires-in');
    const rpmLimit = parseLimit(stringOption(args, 'rpm'), '--rpm');
    const tpmLimit = parseLimit(stringOption(args, 'tpm'), '--tpm');

    return async ({ app, print }) => {
      const org = await app.get(OrgsService).getBySlug(orgSlug, '--org');
      const created = await app.get(ApiKeysService).create({
        orgId: org.id,
        name,
        allowedModels,
        expiresAt: lifetimeMs === null ? null : new Date(Date.now() + lifetimeMs),
        createdById: null,
        rpmLimit,
        tpmLimit,
      });
      print(`Created key "${created.name}" for org ${org.slug}`);
      print(`  id:       ${created.id}`);
      print(`  prefix:   ${created.prefix}`);
      print(`  org:      ${org.slug}`);
      print(`  models:   ${created.allowedModels.length === 0 ? 'all' : created.allowedModels.join(', ')}`);
      print(`  expires:  ${created.expiresAt ? `${created.expiresAt.toISOString()} (in ${rawExpiresIn})` : 'never'}`);
      if (rpmLimit !== null) print(`  rpm:      ${rpmLimit}`);
      if (tpmLimit !== null) print(`  tpm:      ${tpmLimit}`);
      print('Copy the key now; it is not stored and cannot be shown again:');
      print(created.key);
    };
  },
};
