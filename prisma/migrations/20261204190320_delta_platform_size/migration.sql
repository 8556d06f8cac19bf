-- AlterTable
ALTER TABLE "Repository" ADD COLUMN     "platformSizeBytes" DOUBLE PRECISION;
