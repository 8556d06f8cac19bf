-- AlterTable
ALTER TABLE "Repository" ADD COLUMN     "checkEtag" TEXT;
