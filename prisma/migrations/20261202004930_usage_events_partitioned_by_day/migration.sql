-- usage_events partitioned by day: native declarative partitioning, RANGE on created_at, one partition per UTC day
-- (usage_events_pYYYYMMDD) and a DEFAULT partition (usage_events_default) so that an insert never fails when no day
-- partition covers its row. The worker creates day partitions ahead and drops them past retention
-- (UsagePartitionsRepository); Prisma does not model partitioning, so schema.prisma describes the parent alone.
--
-- A partitioned table's unique keys must include the partition key: the primary key becomes
-- (request_id, segment, created_at). Inserts stay idempotent on it because created_at is the request's start,
-- fixed when the gateway builds the event and carried unchanged through the journal and spool replays.
--
-- The whole script is one transaction: the old table is locked, its rows copied into partitions covering their
-- days (plus today and the next 7 days), and it is dropped; a failure leaves it as it was.
LOCK TABLE "usage_events" IN ACCESS EXCLUSIVE MODE;

ALTER TABLE "usage_events" RENAME TO "usage_events_unpartitioned";
ALTER TABLE "usage_events_unpartitioned" RENAME CONSTRAINT "usage_events_pkey" TO "usage_events_unpartitioned_pkey";
ALTER INDEX "usage_events_org_id_created_at_idx" RENAME TO "usage_events_unpartitioned_org_id_created_at_idx";
ALTER INDEX "usage_events_unrolled_idx" RENAME TO "usage_events_unpartitioned_unrolled_idx";

-- the columns of schema.prisma's model (rows are copied into them by name, below)
CREATE TABLE "usage_events" (
    "request_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "org_id" UUID NOT NULL,
    "key_id" UUID NOT NULL,
    "model" TEXT NOT NULL,
    "tier" TEXT NOT NULL,
    "prompt_tokens" INTEGER NOT NULL,
    "completion_tokens" INTEGER NOT NULL,
    "cached_tokens" INTEGER NOT NULL DEFAULT 0,
    "ttft_ms" INTEGER,
    "duration_ms" INTEGER NOT NULL,
    "status" SMALLINT NOT NULL,
    "estimated" BOOLEAN NOT NULL DEFAULT false,
    "cost_nanos" BIGINT NOT NULL DEFAULT 0,
    "rolled_up_at" TIMESTAMPTZ(3),
    "batch_id" TEXT,
    "audio_seconds" INTEGER NOT NULL DEFAULT 0,
    "segment" SMALLINT NOT NULL DEFAULT 0
) PARTITION BY RANGE ("created_at");

CREATE TABLE "usage_events_default" PARTITION OF "usage_events" DEFAULT;

DO $$
DECLARE
  d date;
BEGIN
  FOR d IN
    SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM usage_events_unpartitioned
    UNION
    SELECT generate_series((now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 7, interval '1 day')::date
  LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
      'usage_events_p' || to_char(d, 'YYYYMMDD'), to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00', to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
  END LOOP;
END
$$;

-- by name: the old table's column order depends on the order its ALTERs ran in (databases that applied
-- the audio, batch and segment migrations in another order hold the same columns in another order)
INSERT INTO "usage_events" ("request_id", "created_at", "org_id", "key_id", "model", "tier", "prompt_tokens", "completion_tokens", "cached_tokens", "ttft_ms", "duration_ms", "status", "estimated", "cost_nanos", "rolled_up_at", "batch_id", "audio_seconds", "segment")
  SELECT "request_id", "created_at", "org_id", "key_id", "model", "tier", "prompt_tokens", "completion_tokens", "cached_tokens", "ttft_ms", "duration_ms", "status", "estimated", "cost_nanos", "rolled_up_at", "batch_id", "audio_seconds", "segment" FROM "usage_events_unpartitioned";

-- indexes after the copy: each partition's is built in one pass rather than row by row
ALTER TABLE "usage_events" ADD CONSTRAINT "usage_events_pkey" PRIMARY KEY ("request_id", "segment", "created_at");
CREATE INDEX "usage_events_org_id_created_at_idx" ON "usage_events"("org_id", "created_at");
-- The rollup picks unrolled events oldest first; keep that lookup small however large the table grows.
CREATE INDEX "usage_events_unrolled_idx" ON "usage_events" ("created_at") WHERE "rolled_up_at" IS NULL;

DROP TABLE "usage_events_unpartitioned";
