import { MAX_NOTICE_DEADLINE_S, noticesFor, PreemptionNoticeStore } from '@spot/tiers';
import { UsageError } from '../cli.errors';
import { type CliCommand, stringOption } from '../command';
import { parseDuration } from './duration';
import { CLI_BY, noticeReplicas } from './tier-notice';

const NAME = 'tier preempt';
/** Without --in: GCP's warning (AWS gives 2 minutes). */
const DEFAULT_IN_S = 30;

/**
 * `tier preempt <tier> [--endpoint URL] [--in 30s]`: a preemption notice, recorded in Redis, which every gateway
 * takes at once: no new requests to the replicas, a sleeping fallback is woken, streams move at the deadline.
 */
export const tierPreemptCommand: CliCommand = {
  name: NAME,
  synopsis: 'tier preempt <tier> [--endpoint URL] [--in 30s]',
  summary: `Announce that a replica (every replica of the tier without --endpoint) goes away in --in (default ${DEFAULT_IN_S}s; 2m, 90s...).`,
  options: { endpoint: { type: 'string' }, in: { type: 'string' } },
  positionals: ['tier'],
  prepare(args) {
    const tier = args.positionals[0];
    const endpoint = stringOption(args, 'endpoint');
    const inText = stringOption(args, 'in');
    const inS = inText === undefined ? DEFAULT_IN_S : parseDuration(inText);
    if (inS === null) throw new UsageError(`--in: expected a duration like 30s, 2m or 1500ms, got ${JSON.stringify(inText)}`, NAME);
    if (inS > MAX_NOTICE_DEADLINE_S) throw new UsageError(`--in: at most ${MAX_NOTICE_DEADLINE_S / 3600}h`, NAME);
    return async ({ app, print }) => {
      const notices = noticesFor(tier, noticeReplicas(app, tier, endpoint), inS, 'cli', CLI_BY, Date.now());
      await app.get(PreemptionNoticeStore).put(notices);
      for (const n of notices) print(`Noticed ${n.endpoint} (tier ${tier}): goes away at ${new Date(n.deadlineAt).toISOString()} (in ${inS} s)`);
      print('Every gateway stops sending these replicas new requests now.');
    };
  },
};
