/**
 * Redis names (after REDIS_PREFIX) shared by the gateways, which wake tiers and report their use, and the
 * worker, which puts idle tiers to sleep.
 */
export const tierKeys = {
  /**
   * Pub/sub: `{ tier, state: 'waking' | 'awake' | 'asleep' | 'draining', gateway, epoch? }`. `draining` is the
   * worker about to put the tier to sleep: each gateway stops sending it work and acknowledges `epoch` in its
   * report, with what it still has in flight there.
   */
  stateChannel: 'tiers:state',
  /** Set (to the drain's epoch) while the worker drains the tier: a gateway that starts meanwhile reads it. */
  draining: (tier: string) => `tier:${tier}:draining`,
  /** Held by whoever wakes or puts the tier to sleep: one at a time, across all processes. */
  lock: (tier: string) => `tier:${tier}:lock`,
  /** Capped list of JSON state changes, newest first. */
  history: (tier: string) => `tier:${tier}:history`,
  /** One per gateway, expiring: {@link TierGatewayReport}. */
  gateway: (tier: string, gateway: string) => `tier:${tier}:gw:${gateway}`,
  gatewayPattern: (tier: string) => `tier:${tier}:gw:*`,
  /** Epoch ms of the last request any gateway sent to the tier. */
  lastUsed: (tier: string) => `tier:${tier}:last-used`,
  /**
   * A preemption notice on one replica of the tier (`PreemptionNotice` as JSON), expiring some minutes
   * after its deadline; `endpoint` is the replica's base URL as the catalog spells it (no trailing slash).
   */
  notice: (tier: string, endpoint: string) => `tier:${tier}:notice:${endpoint}`,
  /** Pub/sub: a `NoticeMessage`, a notice taken or cleared, so every gateway hears of it at once. */
  noticeChannel: 'tiers:notices',
} as const;

/** What a gateway reports about one tier, about once a second (and at once when the worker drains the tier). */
export interface TierGatewayReport {
  /** Requests this gateway has on the tier's engines now. */
  inflight: number;
  /** Requests held waiting for the tier to wake. */
  waiters: number;
  /** Epoch ms of this gateway's last request to the tier (0: none). */
  lastUsedAt: number;
  /** The last drain epoch this gateway acknowledged (it sends the tier nothing new after it). */
  ack: string | null;
}

/** A history entry's shape. */
export interface TierHistoryEntry {
  at: string;
  state: 'waking' | 'awake' | 'asleep';
  reason: string;
  by: string;
}
