-- CreateEnum
CREATE TYPE "BillingStatus" AS ENUM ('none', 'active', 'trialing', 'past_due', 'unpaid', 'canceled', 'incomplete');

-- AlterTable
ALTER TABLE "orgs" ADD COLUMN     "billing_status" "BillingStatus" NOT NULL DEFAULT 'none',
ADD COLUMN     "billing_status_at" TIMESTAMPTZ(3),
ADD COLUMN     "monthly_budget_micros" BIGINT,
ADD COLUMN     "stripe_customer_id" TEXT,
ADD COLUMN     "stripe_subscription_id" TEXT;

-- AlterTable
ALTER TABLE "usage_events" ADD COLUMN     "cost_nanos" BIGINT NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "sessions" (
    "id" CHAR(64) NOT NULL,
    "user_id" UUID NOT NULL,
    "csrf_token" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "sessions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "invitations" (
    "id" UUID NOT NULL,
    "org_id" UUID NOT NULL,
    "github_login" TEXT NOT NULL,
    "role" "MemberRole" NOT NULL DEFAULT 'member',
    "invited_by_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "accepted_at" TIMESTAMPTZ(3),

    CONSTRAINT "invitations_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "sessions_user_id_idx" ON "sessions"("user_id");

-- CreateIndex
CREATE INDEX "sessions_expires_at_idx" ON "sessions"("expires_at");

-- CreateIndex
CREATE INDEX "invitations_github_login_idx" ON "invitations"("github_login");

-- CreateIndex
CREATE UNIQUE INDEX "invitations_org_id_github_login_key" ON "invitations"("org_id", "github_login");

-- CreateIndex
CREATE UNIQUE INDEX "orgs_stripe_customer_id_key" ON "orgs"("stripe_customer_id");

-- CreateIndex
CREATE UNIQUE INDEX "orgs_stripe_subscription_id_key" ON "orgs"("stripe_subscription_id");

-- CreateIndex
CREATE INDEX "users_login_idx" ON "users"("login");

-- AddForeignKey
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invitations" ADD CONSTRAINT "invitations_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "orgs"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "invitations" ADD CONSTRAINT "invitations_invited_by_id_fkey" FOREIGN KEY ("invited_by_id") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;
