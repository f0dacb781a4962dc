import type { ApiError } from '@spot/contract';

/** This gateway's knowledge of one org's month ledger (see `commands/admit.lua`), kept by the {@link RateLimiter}. */
export interface Ledger {
  readonly key: string;
  readonly orgId: string;
  /** The ledger's total (spent + live reservations) when last read, nano-USD. */
  base: number;
  /** Live gateways when it was read (the headroom is shared among them while Redis is unreachable). */
  gateways: number;
  /** Epoch ms of that read; 0: never read. */
  seenAt: number;
  /** What this gateway changed since that read: reservations made, minus what settled ones released, plus their cost. */
  delta: number;
  /** Worst cases of this gateway's requests holding (or awaiting) a reservation in it. */
  held: number;
  /** Worst cases of those still awaiting a verdict. */
  pending: number;
  /** Spend settled here and not yet sent to Redis. */
  open: number;
  /** The batch of spend sent and not yet acknowledged (re-sent as is until it is), or null. */
  batch: { seq: number; nanos: number } | null;
  /** Sequence number of the last batch. */
  seq: number;
  /** A settle call for it is on the wire. */
  sending: boolean;
  /** Epoch ms of its last request. */
  lastUse: number;
  /** A read of the month's spend from Postgres (no view of it when Redis became unreachable). */
  loading: Promise<void> | null;
}

export const enum ReservationState {
  /** The verdict is not in yet. */
  Pending,
  /** Admitted: its worst case is reserved until it settles. */
  Held,
  /** Refused, or settled. */
  Done,
}

/**
 * A request's admission by the {@link RateLimiter}: its verdict, and the budget it holds until
 * `RateLimiter.settle`. Owned by the request; only the limiter changes it.
 */
export class Reservation {
  /** null: admitted already. Otherwise a promise of null (admitted) or of the error to answer; it never rejects. */
  verdict: Promise<ApiError | null> | null = null;
  state = ReservationState.Pending;
  /** What the request cost, when it ended before its verdict; -1 otherwise. */
  endedCost = -1;

  constructor(
    /** The org's ledger, or null for a request of an org without a budget (limits only). */
    readonly ledger: Ledger | null,
    /** The worst case reserved, nano-USD. */
    readonly nanos: number,
  ) {}
}
