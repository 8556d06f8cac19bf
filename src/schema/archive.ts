import { builder } from './builder.js';
import { ArchivePolicyEnum, SyncStrategyEnum } from './enums.js';
import { parseGlobalId } from './globalId.js';
import { pageSize } from './pagination.js';
import { Repository } from './repository.js';

builder.prismaObject('Snapshot', {
  description: 'An archived commit: the working copy (with .git) as a .tar.gz in the archive store',
  fields: (t) => ({
    commitSha: t.exposeString('commitSha'),
    key: t.exposeString('key', { description: 'repos/<repositoryId>/<commitSha>.tar.gz' }),
    url: t.string({ resolve: (snapshot, _args, ctx) => ctx.services.files.urlOf(snapshot.key) }),
    bytes: t.exposeFloat('bytes'),
    sha256: t.exposeString('sha256', { description: 'checksum of the stored archive, checked on restore' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const LocalCopy = builder.objectRef<{ present: boolean; bytes: number | null; lastUsedAt: Date | null }>('LocalCopy').implement({
  description: "This instance's working copy: absent until the first sync, and after an eviction until the next one",
  fields: (t) => ({
    present: t.exposeBoolean('present'),
    bytes: t.exposeFloat('bytes', { nullable: true, description: 'size of its files when last measured' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
  }),
});

const RepositoryFile = builder
  .objectRef<{ path: string; commitSha: string; blobSha: string; size: number; encoding: string; content: string }>('RepositoryFile')
  .implement({
    description: 'A file at a commit (a symlink gives its target)',
    fields: (t) => ({
      path: t.exposeString('path'),
      commitSha: t.exposeString('commitSha'),
      blobSha: t.exposeString('blobSha'),
      size: t.exposeFloat('size'),
      encoding: t.exposeString('encoding', { description: 'utf8 | base64' }),
      content: t.exposeString('content'),
    }),
  });

builder.prismaObjectFields('Repository', (t) => ({
  archivePolicy: t.expose('archivePolicy', { type: ArchivePolicyEnum }),
  snapshots: t.relatedConnection(
    'snapshots',
    { cursor: 'id', ...pageSize, description: 'newest first', query: { orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] } },
    { name: 'SnapshotConnection' },
    { name: 'SnapshotEdge' },
  ),
  localCopy: t.field({
    type: LocalCopy,
    nullable: true,
    resolve: async (repository, _args, ctx) => {
      const present = await ctx.services.copies.exists(repository.id);
      return { present, bytes: present ? repository.localBytes : null, lastUsedAt: repository.localUsedAt };
    },
  }),
  file: t.field({
    type: RepositoryFile,
    nullable: true,
    description: 'a file at a commit (default: lastCommitSha), from the working copy or the archived per-file artifacts; null when absent',
    args: { path: t.arg.string({ required: true }), commitSha: t.arg.string() },
    resolve: (repository, args, ctx) => ctx.services.files.read(repository, args.path, args.commitSha),
  }),
}));

builder.relayMutationField(
  'updateRepository',
  {
    inputFields: (t) => ({
      repositoryId: t.id({ required: true }),
      syncStrategy: t.field({ type: SyncStrategyEnum }),
      archivePolicy: t.field({ type: ArchivePolicyEnum }),
    }),
  },
  {
    resolve: async (_root, { input }, ctx) => ({
      repository: await ctx.services.repositories.update({
        tenantId: ctx.tenantId,
        repositoryId: parseGlobalId(input.repositoryId, 'Repository'),
        syncStrategy: input.syncStrategy ?? null,
        archivePolicy: input.archivePolicy ?? null,
      }),
    }),
  },
  { outputFields: (t) => ({ repository: t.field({ type: Repository, resolve: (payload) => payload.repository }) }) },
);
