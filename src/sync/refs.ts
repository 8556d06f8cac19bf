import { createHash } from 'node:crypto';
import type { Prisma } from '../storage/database.js';
import type { RemoteState } from './remote.js';

/**
 * Stores the branches and tags the CHECK saw. The listing's digest lives on
 * the repository row, so an unchanged listing costs no writes.
 */
export async function recordRefs(
  prisma: Prisma,
  repository: { id: string; refsDigest: string | null },
  remote: RemoteState,
): Promise<void> {
  const rows = [
    ...[...remote.branches].map(([name, sha]) => ({ kind: 'BRANCH' as const, name, sha })),
    ...[...remote.tags].map(([name, sha]) => ({ kind: 'TAG' as const, name, sha })),
  ].sort((a, b) => `${a.kind}/${a.name}`.localeCompare(`${b.kind}/${b.name}`));
  const digest = createHash('sha256')
    .update(rows.map((row) => `${row.kind} ${row.name} ${row.sha}`).join('\n'))
    .digest('hex');
  if (digest === repository.refsDigest) return;
  await prisma.$transaction([
    prisma.ref.deleteMany({ where: { repositoryId: repository.id } }),
    prisma.ref.createMany({ data: rows.map((row) => ({ ...row, repositoryId: repository.id })) }),
    prisma.repository.update({ where: { id: repository.id }, data: { refsDigest: digest } }),
  ]);
}
