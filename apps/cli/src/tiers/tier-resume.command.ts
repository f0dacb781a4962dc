import { PreemptionNoticeStore } from '@spot/tiers';
import { type CliCommand, stringOption } from '../command';
import { CLI_BY, noticeReplicas } from './tier-notice';

/** `tier resume <tier> [--endpoint URL]`: clears preemption notices; the replicas take requests again at once. */
export const tierResumeCommand: CliCommand = {
  name: 'tier resume',
  synopsis: 'tier resume <tier> [--endpoint URL]',
  summary: 'Clear the preemption notice of a replica (every replica of the tier without --endpoint): back in rotation.',
  options: { endpoint: { type: 'string' } },
  positionals: ['tier'],
  prepare(args) {
    const tier = args.positionals[0];
    const endpoint = stringOption(args, 'endpoint');
    return async ({ app, print }) => {
      const endpoints = noticeReplicas(app, tier, endpoint);
      await app.get(PreemptionNoticeStore).clear(
        endpoints.map((e) => ({ tier, endpoint: e })),
        CLI_BY,
      );
      for (const e of endpoints) print(`Cleared any notice on ${e} (tier ${tier}).`);
    };
  },
};
