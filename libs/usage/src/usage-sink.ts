import { ApiKeysRepository, UsageEventsRepository } from '@spot/db';
import type { UsageEvent } from './usage-event';

/** Where {@link UsageRecorder} writes. Implementations must be idempotent on `requestId`. */
export interface UsageSink {
  /** Inserts rows, skipping request ids already stored; resolves to how many rows were new. */
  insertMany(rows: readonly UsageEvent[]): Promise<number>;
  /** Bumps `api_keys.last_used_at` (never backwards) for these keys. */
  touchLastUsed(ids: readonly string[], at: Date): Promise<void>;
}

/** The production {@link UsageSink}: the two Postgres repositories. */
export class RepositoryUsageSink implements UsageSink {
  constructor(
    private readonly events: UsageEventsRepository,
    private readonly keys: ApiKeysRepository,
  ) {}

  insertMany(rows: readonly UsageEvent[]): Promise<number> {
    return this.events.insertMany(rows);
  }

  touchLastUsed(ids: readonly string[], at: Date): Promise<void> {
    return this.keys.touchLastUsed(ids, at);
  }
}
