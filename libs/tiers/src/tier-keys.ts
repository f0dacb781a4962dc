/**
 * Redis names (after REDIS_PREFIX) shared by the gateways, which wake tiers and report their use, and the
 * worker, which puts idle tiers to sleep.
 */
export const tierKeys = {
  /** Pub/sub: `{ tier, state: 'waking' | 'awake' | 'asleep', gateway? }`. */
  stateChannel: 'tiers:state',
  /** Held by whoever wakes or puts the tier to sleep: one at a time, across all processes. */
  lock: (tier: string) => `tier:${tier}:lock`,
  /** Capped list of JSON state changes, newest first. */
  history: (tier: string) => `tier:${tier}:history`,
  /** One per gateway, expiring: `{ inflight, lastUsedAt }`. */
  gateway: (tier: string, gateway: string) => `tier:${tier}:gw:${gateway}`,
  gatewayPattern: (tier: string) => `tier:${tier}:gw:*`,
  /** Epoch ms of the last request any gateway sent to the tier. */
  lastUsed: (tier: string) => `tier:${tier}:last-used`,
} as const;

/** A history entry's shape. */
export interface TierHistoryEntry {
  at: string;
  state: 'waking' | 'awake' | 'asleep';
  reason: string;
  by: string;
}
