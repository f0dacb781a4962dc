import { Injectable } from '@nestjs/common';
import type { Prisma } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** One partition of usage_events. */
export interface UsagePartition {
  name: string;
  /** The DEFAULT partition: rows no range partition covers. */
  isDefault: boolean;
  /** Its range [from, to); null for the default partition (and for a MINVALUE/MAXVALUE bound). */
  from: Date | null;
  to: Date | null;
}

/** What {@link UsagePartitionsRepository.createPartition} did. */
export type CreateOutcome = { created: true; moved: number } | { created: false; overlaps: string[] };

/** What {@link UsagePartitionsRepository.dropPartition} did. */
export type DropOutcome = 'dropped' | 'unrolled' | 'not_expired';

/**
 * How long partition DDL waits for a lock before it gives up (and is tried again later). Creating a partition
 * locks the default partition, dropping one locks the parent table: every insert would queue behind a DDL
 * statement waiting for a long query, so the wait is kept short.
 */
const LOCK_TIMEOUT = '2s';
/** Partition DDL by several workers (or the CLI) at once is serialized by this transaction-level advisory lock. */
const ADVISORY_LOCK = 'spot:usage_events:partitions';
/** A day partition is named after its UTC day. */
const DAY_NAME = /^usage_events_p\d{8}$/;

type Tx = Prisma.TransactionClient;

/** A partition name that may go into DDL: ours, or one Postgres reported (quoted as an identifier either way). */
function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

async function partitionsOf(db: Tx | PrismaService): Promise<UsagePartition[]> {
  // The bounds are read back as timestamptz in this session, whatever its TimeZone rendered them as.
  const rows = await db.$queryRaw<Array<{ name: string; bound: string; from: Date | null; to: Date | null }>>`
    SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
      (regexp_match(pg_get_expr(c.relpartbound, c.oid), $r$FROM \\('([^']+)'\\)$r$))[1]::timestamptz AS "from",
      (regexp_match(pg_get_expr(c.relpartbound, c.oid), $r$TO \\('([^']+)'\\)$r$))[1]::timestamptz AS "to"
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'public.usage_events'::regclass
    ORDER BY 3 NULLS LAST, 1`;
  return rows.map((r) => ({ name: r.name, isDefault: r.bound === 'DEFAULT', from: r.from, to: r.to }));
}

/**
 * The partitions of usage_events (RANGE on created_at, one per UTC day, and a DEFAULT one): created ahead by the
 * worker, dropped by retention. Prisma does not model partitions; this repository owns their DDL. Every change
 * runs in one transaction under an advisory lock (so concurrent workers take turns) with a short lock_timeout
 * (a lock not granted in time fails with 55P03 and changes nothing: the caller tries again later).
 */
@Injectable()
export class UsagePartitionsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Every partition, range partitions in order of their start, then the default one. */
  list(): Promise<UsagePartition[]> {
    return partitionsOf(this.prisma);
  }

  /** The UTC days (midnight) of the rows in the default partition from `since` on, in order. */
  async defaultDays(since: Date): Promise<Date[]> {
    const def = (await this.list()).find((p) => p.isDefault);
    if (def === undefined) return [];
    const rows = await this.prisma.$queryRawUnsafe<Array<{ day: Date }>>(
      `SELECT DISTINCT date_trunc('day', created_at, 'UTC') AS day FROM ${ident(def.name)} WHERE created_at >= $1::timestamptz ORDER BY 1`,
      since.toISOString(),
    );
    return rows.map((r) => r.day);
  }

  /**
   * Creates the partition `name` for [from, to) unless a partition already overlaps that range (then nothing is
   * done and the overlapping partitions are named). Rows of that range waiting in the default partition are
   * moved into the new one in the same transaction, before it is attached: no row is lost or doubled (they keep
   * their rolled_up_at), and the default never holds a row a range partition covers, which Postgres forbids.
   * The new table is attached (SHARE UPDATE EXCLUSIVE on the parent, so inserts and the rollup go on) rather
   * than created as PARTITION OF (ACCESS EXCLUSIVE); only the default partition is locked exclusively meanwhile.
   */
  async createPartition(name: string, from: Date, to: Date): Promise<CreateOutcome> {
    if (!DAY_NAME.test(name)) throw new Error(`not a usage_events day partition name: ${name}`);
    return this.prisma.$transaction(
      async (tx) => {
        await this.lock(tx);
        const partitions = await partitionsOf(tx);
        const overlaps = partitions.filter((p) => !p.isDefault && (p.from === null || p.from < to) && (p.to === null || p.to > from)).map((p) => p.name);
        if (overlaps.length > 0) return { created: false, overlaps };
        // the parent first, as every insert and query locks it before its partitions
        await tx.$executeRawUnsafe('LOCK TABLE ONLY usage_events IN SHARE UPDATE EXCLUSIVE MODE');
        await tx.$executeRawUnsafe(`CREATE TABLE ${ident(name)} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
        let moved = 0;
        const def = partitions.find((p) => p.isDefault);
        if (def !== undefined) {
          await tx.$executeRawUnsafe(`LOCK TABLE ${ident(def.name)} IN ACCESS EXCLUSIVE MODE`);
          // by name, not position: a partition's columns need not be in the parent's order
          const [cols] = await tx.$queryRaw<Array<{ list: string }>>`
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS list FROM pg_attribute
            WHERE attrelid = 'public.usage_events'::regclass AND attnum > 0 AND NOT attisdropped`;
          moved = await tx.$executeRawUnsafe(
            `WITH moved AS (DELETE FROM ${ident(def.name)} WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz RETURNING ${cols.list})
             INSERT INTO ${ident(name)} (${cols.list}) SELECT ${cols.list} FROM moved`,
            from.toISOString(),
            to.toISOString(),
          );
        }
        // the bounds are ours (ISO instants), not input: DDL takes no parameters
        await tx.$executeRawUnsafe(`ALTER TABLE usage_events ATTACH PARTITION ${ident(name)} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`);
        return { created: true, moved };
      },
      { maxWait: 10_000, timeout: 600_000 },
    );
  }

  /**
   * Drops the partition `name` if its whole range ends at or before `cutoff` and every row in it is rolled up
   * (`unrolled` otherwise: the caller deletes its rolled-up rows instead). The parent is locked first (ACCESS
   * EXCLUSIVE, as DROP needs it), so no row can arrive between the check and the drop.
   */
  dropPartition(name: string, cutoff: Date): Promise<DropOutcome> {
    return this.prisma.$transaction(
      async (tx) => {
        await this.lock(tx);
        await tx.$executeRawUnsafe('LOCK TABLE ONLY usage_events IN ACCESS EXCLUSIVE MODE');
        const p = (await partitionsOf(tx)).find((x) => x.name === name);
        if (p === undefined || p.isDefault || p.to === null || p.to > cutoff) return 'not_expired';
        // usage_events_unrolled_idx: one index probe
        const [unrolled] = await tx.$queryRawUnsafe<Array<{ any: boolean }>>(`SELECT EXISTS (SELECT 1 FROM ${ident(name)} WHERE rolled_up_at IS NULL) AS any`);
        if (unrolled.any) return 'unrolled';
        await tx.$executeRawUnsafe(`DROP TABLE ${ident(name)}`);
        return 'dropped';
      },
      { maxWait: 10_000, timeout: 60_000 },
    );
  }

  /** Deletes up to `limit` rolled-up rows created before `before` from one partition; returns how many. Never an unrolled one. */
  deleteRolledUp(partition: string, before: Date, limit: number): Promise<number> {
    const t = ident(partition);
    return this.prisma.$executeRawUnsafe(
      // one partition, so ctid names a row; = ANY(ARRAY(...)) makes it a TID scan, not a join over the partition
      `DELETE FROM ${t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${t} WHERE rolled_up_at IS NOT NULL AND created_at < $1::timestamptz LIMIT $2))`,
      before.toISOString(),
      limit,
    );
  }

  private async lock(tx: Tx): Promise<void> {
    await tx.$executeRawUnsafe(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
    await tx.$queryRaw`SELECT pg_advisory_xact_lock(hashtext(${ADVISORY_LOCK}))::text`;
  }
}
