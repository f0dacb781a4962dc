import { UsageRollupService } from '@spot/billing';
import type { CliCommand } from '../command';

/** `usage rollup`: one exactly-once pass now, safe beside the worker's scheduler. */
export const usageRollupCommand: CliCommand = {
  name: 'usage rollup',
  synopsis: 'usage rollup',
  summary: 'Fold new usage events into hourly rollups now (safe while workers run).',
  options: {},
  positionals: [],
  prepare() {
    return async ({ app, print }) => {
      const pass = await app.get(UsageRollupService).runPass();
      print(`rolled up ${pass.events} events into ${pass.rollups} rollup rows in ${(pass.ms / 1000).toFixed(2)}s`);
    };
  },
};
