-- AlterTable
ALTER TABLE "orgs" ADD COLUMN     "billing_sync_error" TEXT,
ADD COLUMN     "billing_sync_error_code" TEXT,
ADD COLUMN     "billing_sync_failed_at" TIMESTAMPTZ(3),
ADD COLUMN     "billing_sync_failures" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "billing_sync_retry_at" TIMESTAMPTZ(3);
