-- AlterTable
ALTER TABLE "batches" ADD COLUMN     "cached_tokens" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "input_tokens" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "model" TEXT,
ADD COLUMN     "output_tokens" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "reasoning_tokens" BIGINT NOT NULL DEFAULT 0;
