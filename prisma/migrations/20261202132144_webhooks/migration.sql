-- CreateEnum
CREATE TYPE "PullRequestState" AS ENUM ('OPEN', 'CLOSED', 'MERGED');

-- CreateEnum
CREATE TYPE "WebhookOutcome" AS ENUM ('QUEUED', 'COALESCED', 'IGNORED', 'DUPLICATE', 'FAILED');

-- AlterTable
ALTER TABLE "Repository" ADD COLUMN     "identityKey" TEXT,
ADD COLUMN     "lastWebhookAt" TIMESTAMP(3),
ADD COLUMN     "webhookSecret" TEXT;

-- Backfill: repositories added before webhooks are found by their identity too.
UPDATE "Repository" SET "identityKey" = lower("host" || '/' || "name");

-- CreateTable
CREATE TABLE "PullRequest" (
    "id" UUID NOT NULL,
    "repositoryId" UUID NOT NULL,
    "number" INTEGER NOT NULL,
    "title" TEXT,
    "state" "PullRequestState" NOT NULL,
    "headSha" TEXT,
    "baseBranch" TEXT,
    "providerUpdatedAt" TIMESTAMP(3),
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "PullRequest_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "WebhookDelivery" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "repositoryId" UUID NOT NULL,
    "provider" "Provider" NOT NULL,
    "event" TEXT NOT NULL,
    "deliveryId" TEXT NOT NULL,
    "receivedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "action" JSONB NOT NULL,
    "outcome" "WebhookOutcome",
    "error" TEXT,
    "processedAt" TIMESTAMP(3),

    CONSTRAINT "WebhookDelivery_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "PullRequest_repositoryId_state_updatedAt_idx" ON "PullRequest"("repositoryId", "state", "updatedAt" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "PullRequest_repositoryId_number_key" ON "PullRequest"("repositoryId", "number");

-- CreateIndex
CREATE INDEX "WebhookDelivery_repositoryId_receivedAt_idx" ON "WebhookDelivery"("repositoryId", "receivedAt" DESC);

-- CreateIndex
CREATE INDEX "WebhookDelivery_processedAt_idx" ON "WebhookDelivery"("processedAt");

-- CreateIndex
CREATE UNIQUE INDEX "WebhookDelivery_repositoryId_deliveryId_key" ON "WebhookDelivery"("repositoryId", "deliveryId");

-- CreateIndex
CREATE INDEX "Repository_identityKey_idx" ON "Repository"("identityKey");

-- AddForeignKey
ALTER TABLE "PullRequest" ADD CONSTRAINT "PullRequest_repositoryId_fkey" FOREIGN KEY ("repositoryId") REFERENCES "Repository"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "WebhookDelivery" ADD CONSTRAINT "WebhookDelivery_repositoryId_fkey" FOREIGN KEY ("repositoryId") REFERENCES "Repository"("id") ON DELETE CASCADE ON UPDATE CASCADE;
