import { parseOrgName, parseOrgSlug } from './org-input';
import { OrgsService } from './orgs.service';
import { stringOption, type CliCommand } from '../command';

/** `org create <slug> [--name N]`: prints the new org's id and slug. */
export const orgCreateCommand: CliCommand = {
  name: 'org create',
  synopsis: 'org create <slug> [--name <name>]',
  summary: 'Create an org (slug: 3-40 of a-z 0-9 -; name defaults to the slug).',
  options: { name: { type: 'string' } },
  positionals: ['slug'],
  prepare(args) {
    const slug = parseOrgSlug(args.positionals[0], 'slug');
    const rawName = stringOption(args, 'name');
    const name = rawName === undefined ? undefined : parseOrgName(rawName, '--name');
    return async ({ app, print }) => {
      const org = await app.get(OrgsService).create(slug, name);
      print(`Created org ${org.slug}`);
      print(`  id:    ${org.id}`);
      print(`  slug:  ${org.slug}`);
      print(`  name:  ${org.name}`);
    };
  },
};
