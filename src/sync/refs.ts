import { createHash } from 'node:crypto';
import { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import type { Prisma } from '../storage/database.js';
import type { RemoteState } from './remote.js';

/** A ref listing that differs from the one stored: its rows and digest. */
export interface RefsChange {
  digest: string;
  rows: { kind: 'BRANCH' | 'TAG'; name: string; sha: string }[];
}

/**
 * The branches and tags a CHECK saw, when they differ from what is stored.
 * The listing's digest lives on the repository row, so an unchanged listing
 * costs no writes.
 */
export function refsChange(repository: { refsDigest: string | null }, remote: RemoteState): RefsChange | null {
  const rows = [
    ...[...remote.branches].map(([name, sha]) => ({ kind: 'BRANCH' as const, name, sha })),
    ...[...remote.tags].map(([name, sha]) => ({ kind: 'TAG' as const, name, sha })),
  ].sort((a, b) => `${a.kind}/${a.name}`.localeCompare(`${b.kind}/${b.name}`));
  const digest = createHash('sha256')
    .update(rows.map((row) => `${row.kind} ${row.name} ${row.sha}`).join('\n'))
    .digest('hex');
  return digest === repository.refsDigest ? null : { digest, rows };
}

/**
 * Common table expressions that make the repository's Ref rows equal the
 * listing: refs gone upstream deleted, new and moved ones upserted (the two
 * touch different rows, so one statement does both). For a statement that
 * also sets Repository.refsDigest, so the rows and the digest change together.
 */
export function refsCtes(repositoryId: string, change: RefsChange, now: Date): PrismaNamespace.Sql {
  const listing = JSON.stringify(change.rows);
  return PrismaNamespace.sql`
    listing AS (SELECT * FROM jsonb_to_recordset(${listing}::jsonb) AS t(kind text, name text, sha text)),
    refs_gone AS (
      DELETE FROM "Ref" AS ref WHERE ref."repositoryId" = ${repositoryId}::uuid
        AND NOT EXISTS (SELECT 1 FROM listing WHERE listing.kind = ref.kind::text AND listing.name = ref.name)
    ),
    refs_set AS (
      INSERT INTO "Ref" (id, "repositoryId", kind, name, sha, "updatedAt")
      SELECT gen_random_uuid(), ${repositoryId}::uuid, listing.kind::"RefKind", listing.name, listing.sha, ${now} FROM listing
      ON CONFLICT ("repositoryId", kind, name) DO UPDATE SET sha = EXCLUDED.sha, "updatedAt" = EXCLUDED."updatedAt"
        WHERE "Ref".sha <> EXCLUDED.sha
    )`;
}

/** Stores the listing on its own (outside a sync run): one statement, none when unchanged. */
export async function recordRefs(prisma: Prisma, repository: { id: string; refsDigest: string | null }, remote: RemoteState): Promise<void> {
  const change = refsChange(repository, remote);
  if (!change) return;
  const now = new Date();
  await prisma.$executeRaw`
    WITH ${refsCtes(repository.id, change, now)}
    UPDATE "Repository" SET "refsDigest" = ${change.digest}, "updatedAt" = ${now} WHERE id = ${repository.id}::uuid`;
}
