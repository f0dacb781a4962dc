-- AlterTable
ALTER TABLE "usage_events" ADD COLUMN     "audio_seconds" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "usage_rollups" ADD COLUMN     "audio_seconds" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "synced_audio" BIGINT NOT NULL DEFAULT 0;
