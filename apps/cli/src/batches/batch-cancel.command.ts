import { BatchesRepository } from '@spot/db';
import { UsageError } from '../cli.errors';
import type { CliCommand } from '../command';
import { BatchNotCancellableError, BatchNotFoundError } from './batches.errors';

const NAME = 'batch cancel';
const BATCH_ID = /^batch_[0-9A-Za-z]{1,64}$/;

/**
 * `batch cancel <batch_id>`: the batch goes `cancelling` (as POST /v1/batches/{id}/cancel does): the worker starts no
 * new line within seconds, lets the running ones finish (billed), then writes its files and marks it `cancelled`.
 */
export const batchCancelCommand: CliCommand = {
  name: NAME,
  synopsis: 'batch cancel <batch_id>',
  summary: 'Cancel a batch: no new lines start; finished lines stay delivered and billed.',
  options: {},
  positionals: ['batch_id'],
  prepare(args) {
    const id = args.positionals[0];
    if (!BATCH_ID.test(id)) throw new UsageError(`batch_id: expected a batch id like batch_abc123, got ${JSON.stringify(id)}`, NAME);
    return async ({ app, print }) => {
      const batches = app.get(BatchesRepository);
      const found = await batches.findById(id);
      if (found === null) throw new BatchNotFoundError(id);
      const row = await batches.requestCancel(found.orgId, id);
      if (row === null) throw new BatchNotFoundError(id);
      if (row.status !== 'cancelling' && row.status !== 'cancelled') throw new BatchNotCancellableError(id, row.status);
      print(row.status === 'cancelled' ? `Batch ${id} is cancelled already` : `Cancelling batch ${id}`);
      print(`  status:     ${row.status}`);
      print(`  progress:   ${row.completed + row.failed} of ${row.total} lines done (${row.failed} failed)`);
      print(`  cancelling: ${row.cancellingAt?.toISOString() ?? '-'}`);
      if (row.status === 'cancelling') print('No new lines start; the lines running finish, then the worker writes its files and marks it cancelled.');
    };
  },
};
