-- CreateTable
CREATE TABLE "responses" (
    "id" TEXT NOT NULL,
    "org_id" UUID NOT NULL,
    "key_id" UUID,
    "model" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "previous_response_id" TEXT,
    "input" JSONB NOT NULL,
    "response" JSONB NOT NULL,
    "request_id" TEXT NOT NULL,

    CONSTRAINT "responses_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "responses_org_id_created_at_idx" ON "responses"("org_id", "created_at");

-- CreateIndex
CREATE INDEX "responses_expires_at_idx" ON "responses"("expires_at");
