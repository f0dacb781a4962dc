import { invalidRequest } from '@spot/contract';
import { MAX_NOTICE_DEADLINE_S } from '@spot/tiers';
import { z } from 'zod';

const preemptBody = z.strictObject({
  /** The replica's base URL as the tiers file lists it; omitted: every replica of the tier. */
  endpoint: z.string().min(1).optional(),
  /** Seconds until the replica goes away (0: now). */
  deadline_s: z.number().nonnegative().max(MAX_NOTICE_DEADLINE_S),
});

export type PreemptBody = z.infer<typeof preemptBody>;

/**
 * The body of POST /admin/tiers/:tier/preempt.
 * @throws ApiError 400 naming the first offending field.
 */
export function parsePreemptBody(body: unknown): PreemptBody {
  const parsed = preemptBody.safeParse(body ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const param = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
  return fail(param, issue.message);
}

function fail(param: string | null, message: string): never {
  throw invalidRequest(`Invalid preemption notice${param === null ? '' : ` (${param})`}: ${message}. Expected {"deadline_s": N, "endpoint"?: "<replica URL>"}.`, param, 'invalid_notice');
}
