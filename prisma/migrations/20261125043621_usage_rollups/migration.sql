-- AlterTable
ALTER TABLE "usage_events" ADD COLUMN     "rolled_up_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "usage_rollups" (
    "org_id" UUID NOT NULL,
    "key_id" UUID NOT NULL,
    "model" TEXT NOT NULL,
    "tier" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "requests" BIGINT NOT NULL,
    "prompt_tokens" BIGINT NOT NULL,
    "completion_tokens" BIGINT NOT NULL,
    "cached_tokens" BIGINT NOT NULL,
    "cost_nanos" BIGINT NOT NULL,
    "version" BIGINT NOT NULL DEFAULT 1,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "usage_rollups_pkey" PRIMARY KEY ("org_id","key_id","model","tier","hour")
);

-- CreateIndex
CREATE INDEX "usage_rollups_org_id_hour_idx" ON "usage_rollups"("org_id", "hour");

-- The rollup picks unrolled events oldest first; keep that lookup small however large the table grows.
CREATE INDEX "usage_events_unrolled_idx" ON "usage_events" ("created_at") WHERE "rolled_up_at" IS NULL;
