-- CreateTable
CREATE TABLE "RepositoryMetadata" (
    "repositoryId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "languages" JSONB NOT NULL,
    "fileCount" INTEGER NOT NULL,
    "totalBytes" DOUBLE PRECISION NOT NULL,
    "linesOfCode" INTEGER NOT NULL,
    "readmePath" TEXT,
    "license" TEXT,
    "lastCommitAuthor" TEXT,
    "lastCommitAt" TIMESTAMP(3),
    "lastCommitMessage" TEXT,
    "graphSha" TEXT,
    "indexedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "RepositoryMetadata_pkey" PRIMARY KEY ("repositoryId")
);

-- AddForeignKey
ALTER TABLE "RepositoryMetadata" ADD CONSTRAINT "RepositoryMetadata_repositoryId_fkey" FOREIGN KEY ("repositoryId") REFERENCES "Repository"("id") ON DELETE CASCADE ON UPDATE CASCADE;
