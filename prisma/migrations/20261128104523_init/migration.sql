-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "Provider" AS ENUM ('GITHUB', 'GITLAB', 'GIT');

-- CreateEnum
CREATE TYPE "RepositoryStatus" AS ENUM ('PENDING', 'SYNCING', 'SYNCED', 'OUTDATED', 'FAILED');

-- CreateEnum
CREATE TYPE "SyncStrategy" AS ENUM ('AUTO', 'FULL', 'INCREMENTAL', 'DELTA');

-- CreateEnum
CREATE TYPE "SyncTrigger" AS ENUM ('INITIAL', 'MANUAL', 'WEBHOOK', 'SCHEDULED');

-- CreateEnum
CREATE TYPE "SyncRunStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'SKIPPED', 'FAILED', 'CANCELLED');

-- CreateEnum
CREATE TYPE "SyncPhase" AS ENUM ('QUEUED', 'CHECKING', 'CLONING', 'FETCHING', 'RESTORING', 'APPLYING', 'INDEXING', 'ARCHIVING', 'DONE', 'SKIPPED', 'FAILED');

-- CreateEnum
CREATE TYPE "RefKind" AS ENUM ('BRANCH', 'TAG');

-- CreateTable
CREATE TABLE "Tenant" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Tenant_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ApiToken" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "tokenHash" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastUsedAt" TIMESTAMP(3),

    CONSTRAINT "ApiToken_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Project" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Project_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Credential" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "provider" "Provider" NOT NULL,
    "host" TEXT NOT NULL,
    "login" TEXT,
    "scopes" TEXT[],
    "encryptedSecret" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Credential_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Repository" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "projectId" UUID NOT NULL,
    "provider" "Provider" NOT NULL,
    "name" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "host" TEXT NOT NULL,
    "branch" TEXT NOT NULL,
    "followsDefaultBranch" BOOLEAN NOT NULL DEFAULT false,
    "defaultBranch" TEXT,
    "status" "RepositoryStatus" NOT NULL DEFAULT 'PENDING',
    "syncStrategy" "SyncStrategy" NOT NULL DEFAULT 'AUTO',
    "lastCommitSha" TEXT,
    "lastSyncedAt" TIMESTAMP(3),
    "lastError" TEXT,
    "s3ArchiveUrl" TEXT,
    "webhookId" TEXT,
    "credentialId" UUID,
    "nextCheckAt" TIMESTAMP(3),
    "lastChangedAt" TIMESTAMP(3),
    "consecutiveFailures" INTEGER NOT NULL DEFAULT 0,
    "refsDigest" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Repository_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "SyncRun" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "repositoryId" UUID NOT NULL,
    "trigger" "SyncTrigger" NOT NULL,
    "priority" INTEGER NOT NULL,
    "force" BOOLEAN NOT NULL DEFAULT false,
    "targetSha" TEXT,
    "strategy" "SyncStrategy",
    "status" "SyncRunStatus" NOT NULL DEFAULT 'QUEUED',
    "activeSlot" "SyncRunStatus" DEFAULT 'QUEUED',
    "phase" "SyncPhase" NOT NULL DEFAULT 'QUEUED',
    "fromSha" TEXT,
    "toSha" TEXT,
    "filesChanged" INTEGER,
    "bytesReceived" DOUBLE PRECISION,
    "triggerCount" INTEGER NOT NULL DEFAULT 1,
    "queuedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),
    "error" TEXT,
    "phaseLog" JSONB NOT NULL DEFAULT '[]',
    "claimedBy" TEXT,

    CONSTRAINT "SyncRun_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Ref" (
    "id" UUID NOT NULL,
    "repositoryId" UUID NOT NULL,
    "kind" "RefKind" NOT NULL,
    "name" TEXT NOT NULL,
    "sha" TEXT NOT NULL,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Ref_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Tenant_name_key" ON "Tenant"("name");

-- CreateIndex
CREATE UNIQUE INDEX "ApiToken_tokenHash_key" ON "ApiToken"("tokenHash");

-- CreateIndex
CREATE INDEX "Project_tenantId_createdAt_idx" ON "Project"("tenantId", "createdAt");

-- CreateIndex
CREATE UNIQUE INDEX "Project_tenantId_name_key" ON "Project"("tenantId", "name");

-- CreateIndex
CREATE INDEX "Credential_tenantId_provider_idx" ON "Credential"("tenantId", "provider");

-- CreateIndex
CREATE INDEX "Repository_tenantId_createdAt_idx" ON "Repository"("tenantId", "createdAt");

-- CreateIndex
CREATE INDEX "Repository_tenantId_status_idx" ON "Repository"("tenantId", "status");

-- CreateIndex
CREATE INDEX "Repository_nextCheckAt_idx" ON "Repository"("nextCheckAt");

-- CreateIndex
CREATE UNIQUE INDEX "Repository_projectId_url_branch_key" ON "Repository"("projectId", "url", "branch");

-- CreateIndex
CREATE INDEX "SyncRun_repositoryId_queuedAt_idx" ON "SyncRun"("repositoryId", "queuedAt" DESC);

-- CreateIndex
CREATE INDEX "SyncRun_status_priority_idx" ON "SyncRun"("status", "priority");

-- CreateIndex
CREATE UNIQUE INDEX "SyncRun_repositoryId_activeSlot_key" ON "SyncRun"("repositoryId", "activeSlot");

-- CreateIndex
CREATE UNIQUE INDEX "Ref_repositoryId_kind_name_key" ON "Ref"("repositoryId", "kind", "name");

-- AddForeignKey
ALTER TABLE "ApiToken" ADD CONSTRAINT "ApiToken_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Project" ADD CONSTRAINT "Project_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Credential" ADD CONSTRAINT "Credential_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Repository" ADD CONSTRAINT "Repository_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Repository" ADD CONSTRAINT "Repository_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Repository" ADD CONSTRAINT "Repository_credentialId_fkey" FOREIGN KEY ("credentialId") REFERENCES "Credential"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "SyncRun" ADD CONSTRAINT "SyncRun_repositoryId_fkey" FOREIGN KEY ("repositoryId") REFERENCES "Repository"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Ref" ADD CONSTRAINT "Ref_repositoryId_fkey" FOREIGN KEY ("repositoryId") REFERENCES "Repository"("id") ON DELETE CASCADE ON UPDATE CASCADE;
