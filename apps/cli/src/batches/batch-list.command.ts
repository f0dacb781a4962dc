import { BatchesRepository } from '@spot/db';
import { UsageError } from '../cli.errors';
import { type CliCommand, stringOption } from '../command';
import { parseOrgSlug } from '../orgs/org-input';
import { OrgsService } from '../orgs/orgs.service';
import { batchTable } from './batch-table';

const NAME = 'batch list';
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 1_000;

/** `batch list [--org <slug>] [--limit N]`: the newest batches (of every org, or of one), as a table. */
export const batchListCommand: CliCommand = {
  name: NAME,
  synopsis: 'batch list [--org <slug>] [--limit <n>]',
  summary: `List the newest batches (every org's, or one org's) with status, progress, cost so far (default ${DEFAULT_LIMIT}).`,
  options: { org: { type: 'string' }, limit: { type: 'string' } },
  positionals: [],
  prepare(args) {
    const rawOrg = stringOption(args, 'org');
    const orgSlug = rawOrg === undefined ? undefined : parseOrgSlug(rawOrg, '--org');
    const rawLimit = stringOption(args, 'limit');
    const limit = rawLimit === undefined ? DEFAULT_LIMIT : /^\d{1,4}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= MAX_LIMIT)) {
      throw new UsageError(`--limit: expected a whole number from 1 to ${MAX_LIMIT}, got ${JSON.stringify(rawLimit)}`, NAME);
    }
    return async ({ app, print }) => {
      const org = orgSlug === undefined ? undefined : await app.get(OrgsService).getBySlug(orgSlug, '--org');
      const rows = await app.get(BatchesRepository).recent(limit, org?.id);
      if (rows.length === 0) {
        print(org === undefined ? 'No batches.' : `No batches in org ${org.slug}.`);
        return;
      }
      const listed = rows.map((b) => ({ ...b, finishedAt: b.completedAt ?? b.failedAt ?? b.expiredAt ?? b.cancelledAt }));
      for (const line of batchTable(listed)) print(line);
    };
  },
};
