-- AlterTable
ALTER TABLE "usage_events" DROP CONSTRAINT "usage_events_pkey",
ADD COLUMN     "segment" SMALLINT NOT NULL DEFAULT 0,
ADD CONSTRAINT "usage_events_pkey" PRIMARY KEY ("request_id", "segment");
