import { Injectable } from '@nestjs/common';
import { type TierStreamCounts, UsageEventsRepository } from '@spot/db';

/** The window the tiers page counts continued and lost streams over. */
export const TIER_STREAMS_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * What streams went through on each tier over the last 24 h, over every org (the tiers page is an operator's view):
 * continued off the tier after its engine was lost, continuations the tier served, and streams it lost.
 */
@Injectable()
export class TierStreamsService {
  constructor(private readonly usage: UsageEventsRepository) {}

  /** Tier name → its counts; a tier missing from the map had none. */
  async last24h(now = Date.now()): Promise<ReadonlyMap<string, TierStreamCounts>> {
    const rows = await this.usage.streamCountsByTier(new Date(now - TIER_STREAMS_WINDOW_MS));
    return new Map(rows.map((r) => [r.tier, r]));
  }
}
