import { BillingSyncService } from '@spot/billing';
import type { CliCommand } from '../command';

/** `billing sync`: one exactly-once Stripe sync pass now, safe beside the worker's scheduler. */
export const billingSyncCommand: CliCommand = {
  name: 'billing sync',
  synopsis: 'billing sync',
  summary: 'Push new usage to Stripe meter events now (safe while workers run).',
  options: {},
  positionals: [],
  prepare() {
    return async ({ app, print }) => {
      const pass = await app.get(BillingSyncService).runPass();
      if (!pass.enabled) {
        print('billing sync is off: STRIPE_SECRET_KEY is not set (usage and bills still work)');
        return;
      }
      print(
        `synced ${pass.rollups} rollups: ${pass.queued} meter events queued, ${pass.accepted} accepted, ` +
          `${pass.duplicates} already billed, ${pass.rejected} refused, ${pass.pending} pending in ${(pass.ms / 1000).toFixed(2)}s`,
      );
      for (const org of pass.failing) {
        print(
          `failing org ${org.slug}: Stripe ${org.code}, ${org.failures} failure(s) in a row, usage held, ` +
            `next try ${org.retryAt === null ? 'at the next pass' : `after ${org.retryAt.toISOString()}`}`,
        );
      }
    };
  },
};
