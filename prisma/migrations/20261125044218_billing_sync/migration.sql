-- AlterTable
ALTER TABLE "orgs" ADD COLUMN     "billing_since" TIMESTAMPTZ(3),
ADD COLUMN     "stripe_account" TEXT;

-- AlterTable
ALTER TABLE "usage_rollups" ADD COLUMN     "synced_cached" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "synced_input" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "synced_output" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "synced_version" BIGINT NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "billing_lines" (
    "account" TEXT NOT NULL,
    "line_key" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "tier" TEXT NOT NULL,
    "direction" TEXT NOT NULL,
    "unit_amount_decimal" TEXT NOT NULL,
    "event_name" TEXT NOT NULL,
    "meter_id" TEXT NOT NULL,
    "product_id" TEXT NOT NULL,
    "price_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "billing_lines_pkey" PRIMARY KEY ("account","line_key")
);

-- CreateTable
CREATE TABLE "billing_subscription_items" (
    "org_id" UUID NOT NULL,
    "account" TEXT NOT NULL,
    "line_key" TEXT NOT NULL,
    "item_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "billing_subscription_items_pkey" PRIMARY KEY ("org_id","account","line_key")
);

-- CreateTable
CREATE TABLE "meter_event_outbox" (
    "identifier" TEXT NOT NULL,
    "account" TEXT NOT NULL,
    "org_id" UUID NOT NULL,
    "stripe_customer_id" TEXT NOT NULL,
    "line_key" TEXT NOT NULL,
    "event_name" TEXT NOT NULL,
    "value" BIGINT NOT NULL,
    "timestamp" TIMESTAMPTZ(3) NOT NULL,
    "key_id" UUID NOT NULL,
    "model" TEXT NOT NULL,
    "tier" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "direction" TEXT NOT NULL,
    "rollup_version" BIGINT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "claimed_until" TIMESTAMPTZ(3),
    "sent_at" TIMESTAMPTZ(3),
    "accepted_at" TIMESTAMPTZ(3),
    "last_error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "meter_event_outbox_pkey" PRIMARY KEY ("identifier")
);

-- CreateTable
CREATE TABLE "stripe_webhook_events" (
    "id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stripe_webhook_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "billing_lines_account_model_tier_direction_idx" ON "billing_lines"("account", "model", "tier", "direction");

-- CreateIndex
CREATE INDEX "meter_event_outbox_account_status_created_at_idx" ON "meter_event_outbox"("account", "status", "created_at");

-- CreateIndex
CREATE INDEX "meter_event_outbox_org_id_timestamp_idx" ON "meter_event_outbox"("org_id", "timestamp");

-- Billing sync looks for rollups with unsynced changes; keep that lookup small.
CREATE INDEX "usage_rollups_unsynced_idx" ON "usage_rollups" ("org_id") WHERE "version" > "synced_version";
