-- CreateEnum
CREATE TYPE "ArchivePolicy" AS ENUM ('NONE', 'EACH_SYNC', 'DAILY');

-- AlterTable
ALTER TABLE "Repository" ADD COLUMN     "archivePolicy" "ArchivePolicy" NOT NULL DEFAULT 'EACH_SYNC',
ADD COLUMN     "localBytes" DOUBLE PRECISION,
ADD COLUMN     "localUsedAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "SyncRun" ADD COLUMN     "warning" TEXT;

-- CreateTable
CREATE TABLE "Snapshot" (
    "id" UUID NOT NULL,
    "repositoryId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "bytes" DOUBLE PRECISION NOT NULL,
    "sha256" TEXT NOT NULL,
    "manifestKey" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Snapshot_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "Snapshot_repositoryId_createdAt_idx" ON "Snapshot"("repositoryId", "createdAt" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "Snapshot_repositoryId_commitSha_key" ON "Snapshot"("repositoryId", "commitSha");

-- AddForeignKey
ALTER TABLE "Snapshot" ADD CONSTRAINT "Snapshot_repositoryId_fkey" FOREIGN KEY ("repositoryId") REFERENCES "Repository"("id") ON DELETE CASCADE ON UPDATE CASCADE;
