-- AlterTable
ALTER TABLE "stripe_webhook_events" ADD COLUMN     "created" TIMESTAMPTZ(3),
ADD COLUMN     "org_id" UUID;

-- CreateIndex
CREATE INDEX "stripe_webhook_events_org_id_created_idx" ON "stripe_webhook_events"("org_id", "created");
