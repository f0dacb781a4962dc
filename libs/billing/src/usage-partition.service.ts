import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { type UsagePartition, UsagePartitionsRepository } from '@spot/db';

const DAY_MS = 86_400_000;
const DELETE_BATCH = 10_000;
/** Tries of one partition change whose lock was not granted in time (55P03), 0.5 s, 1 s, 2 s apart. */
const LOCK_TRIES = 4;

/** What one pass of {@link UsagePartitionService.ensureAhead} did. */
export interface PartitionPass {
  /** Partitions created, and the rows moved into them out of the default partition. */
  created: string[];
  moved: number;
  /** Days left to a partition of someone else's that overlaps them (a partition is never created over another). */
  overlapped: string[];
  /** Days whose partition could not be created now (locks not granted): rows keep landing in the default. */
  failed: string[];
}

/** What one pass of {@link UsagePartitionService.dropExpired} did. */
export interface RetentionPass {
  /** Partitions dropped whole: every row past retention and rolled up. */
  dropped: string[];
  /** Expired partitions kept because some rows are not rolled up yet (their rolled-up rows were deleted). */
  kept: string[];
  /** Rows deleted one by one: rolled-up rows of kept partitions and of the default partition. */
  deleted: number;
  /** Partitions whose drop could not take its lock now (tried again on the next pass). */
  failed: string[];
}

/** Midnight UTC of the day `at` falls in. */
export function utcDay(at: Date | number): Date {
  const t = typeof at === 'number' ? at : at.getTime();
  return new Date(t - (((t % DAY_MS) + DAY_MS) % DAY_MS));
}

/** The name of the partition of the UTC day starting at `day`: usage_events_pYYYYMMDD. */
export function partitionName(day: Date): string {
  return `usage_events_p${day.toISOString().slice(0, 10).replaceAll('-', '')}`;
}

function lockNotGranted(err: unknown): boolean {
  const text = String((err as { message?: unknown })?.message ?? err);
  return /55P03|lock timeout|could not obtain lock/i.test(text);
}

/**
 * usage_events partitions by UTC day: created ahead (today and USAGE_PARTITION_DAYS_AHEAD days), dropped whole by
 * retention once past USAGE_RETENTION_DAYS and rolled up, instead of deleting rows one by one. The default
 * partition takes any row no day partition covers, so an insert never fails because the worker was late; the
 * next pass creates that day's partition and moves the rows into it. Safe to run from several workers at once.
 */
@Injectable()
export class UsagePartitionService {
  private readonly logger = new Logger('UsagePartitions');

  constructor(
    private readonly partitions: UsagePartitionsRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Rows created before this are past retention: midnight UTC, so that retention drops whole days. */
  retentionCutoff(now: Date): Date {
    return utcDay(now.getTime() - this.config.USAGE_RETENTION_DAYS * DAY_MS);
  }

  /**
   * Creates the partitions of today and the next USAGE_PARTITION_DAYS_AHEAD days, and of every day within
   * retention whose rows wait in the default partition (moving them in). Throws after the pass when a partition
   * could not be created (its job is retried); the rows meanwhile are safe in the default partition.
   */
  async ensureAhead(now = new Date()): Promise<PartitionPass> {
    const today = utcDay(now);
    const days = Array.from({ length: this.config.USAGE_PARTITION_DAYS_AHEAD + 1 }, (_, i) => new Date(today.getTime() + i * DAY_MS));
    for (const day of await this.partitions.defaultDays(this.retentionCutoff(now))) {
      if (!days.some((d) => d.getTime() === day.getTime())) days.push(day);
    }
    const pass = await this.ensureDays(days);
    if (pass.failed.length > 0) throw new Error(`usage_events partitions not created (locks not granted in time): ${pass.failed.join(', ')}`);
    return pass;
  }

  /** Creates the partition of each of these UTC days that no partition covers yet (in order of the days). */
  async ensureDays(days: readonly Date[]): Promise<PartitionPass> {
    const pass: PartitionPass = { created: [], moved: 0, overlapped: [], failed: [] };
    const existing = await this.partitions.list();
    for (const day of [...days].sort((a, b) => a.getTime() - b.getTime())) {
      const end = new Date(day.getTime() + DAY_MS);
      if (existing.some((p) => covers(p, day, end))) continue;
      const name = partitionName(day);
      try {
        const outcome = await this.withLockRetry(() => this.partitions.createPartition(name, day, end));
        if (outcome.created) {
          pass.created.push(name);
          pass.moved += outcome.moved;
          if (outcome.moved > 0) this.logger.log(`created ${name}, moving ${outcome.moved} events out of the default partition`);
        } else {
          pass.overlapped.push(name);
          this.logger.warn(`not creating ${name}: it would overlap ${outcome.overlaps.join(', ')}`);
        }
      } catch (err) {
        if (!lockNotGranted(err)) throw err;
        pass.failed.push(name);
        this.logger.warn(`could not create ${name} now (lock not granted in time); its rows go to the default partition meanwhile`);
      }
    }
    return pass;
  }

  /**
   * Retention: drops every day partition whose day is past USAGE_RETENTION_DAYS and whose rows are all rolled
   * up; one holding rows not rolled up yet is kept (its rolled-up rows are deleted, and it goes on a later pass,
   * once the rollup has caught up). Rolled-up rows of the default partition past retention are deleted.
   * Never removes a row that is not rolled up.
   */
  async dropExpired(now = new Date()): Promise<RetentionPass> {
    const cutoff = this.retentionCutoff(now);
    const pass: RetentionPass = { dropped: [], kept: [], deleted: 0, failed: [] };
    const all = await this.partitions.list();
    for (const p of all) {
      if (p.isDefault || p.to === null || p.to > cutoff) continue;
      try {
        const outcome = await this.withLockRetry(() => this.partitions.dropPartition(p.name, cutoff));
        if (outcome === 'dropped') pass.dropped.push(p.name);
        else if (outcome === 'unrolled') pass.kept.push(p.name);
      } catch (err) {
        if (!lockNotGranted(err)) throw err;
        pass.failed.push(p.name);
        this.logger.warn(`could not drop ${p.name} now (lock not granted in time); next pass`);
      }
    }
    const def = all.find((p) => p.isDefault);
    for (const name of [...pass.kept, ...(def === undefined ? [] : [def.name])]) {
      for (;;) {
        const n = await this.partitions.deleteRolledUp(name, cutoff, DELETE_BATCH);
        pass.deleted += n;
        if (n < DELETE_BATCH) break;
      }
    }
    return pass;
  }

  private async withLockRetry<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (attempt >= LOCK_TRIES || !lockNotGranted(err)) throw err;
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      }
    }
  }
}

/** Whether partition `p` already holds (part of) the day [from, to): then no day partition may be made for it. */
function covers(p: UsagePartition, from: Date, to: Date): boolean {
  return !p.isDefault && (p.from === null || p.from < to) && (p.to === null || p.to > from);
}
