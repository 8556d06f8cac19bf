import { builder } from './builder.js';
import { ArchivePolicyEnum, ProviderEnum, RepositoryStatusEnum, SyncStrategyEnum } from './enums.js';
import { NotFoundError } from '../errors.js';
import { parseGlobalId } from './globalId.js';
import { pageSize } from './pagination.js';
import { SyncRun } from './syncRun.js';

export const Repository = builder.prismaNode('Repository', {
  id: { field: 'id' },
  // An absent or foreign object resolves to null (Relay), not an error.
  nullable: true,
  findUnique: (id, ctx) => ({ id, tenantId: ctx.tenantId }),
  fields: (t) => ({
    project: t.relation('project'),
    provider: t.expose('provider', { type: ProviderEnum }),
    name: t.exposeString('name', { description: 'owner/name as the host names it' }),
    url: t.exposeString('url', { description: 'clone URL, never with credentials' }),
    branch: t.exposeString('branch'),
    defaultBranch: t.exposeString('defaultBranch', { nullable: true }),
    status: t.expose('status', { type: RepositoryStatusEnum }),
    syncStrategy: t.expose('syncStrategy', { type: SyncStrategyEnum }),
    lastCommitSha: t.exposeString('lastCommitSha', { nullable: true }),
    lastSyncedAt: t.expose('lastSyncedAt', { type: 'DateTime', nullable: true }),
    lastError: t.exposeString('lastError', { nullable: true }),
    archiveUrl: t.exposeString('s3ArchiveUrl', { nullable: true, description: 'newest archive of lastCommitSha' }),
    webhookId: t.exposeString('webhookId', { nullable: true }),
    nextCheckAt: t.expose('nextCheckAt', { type: 'DateTime', nullable: true }),
    consecutiveFailures: t.exposeInt('consecutiveFailures'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    syncRuns: t.relatedConnection(
      'syncRuns',
      { cursor: 'id', ...pageSize, description: 'newest first', query: { orderBy: [{ queuedAt: 'desc' }, { id: 'desc' }] } },
      { name: 'SyncRunConnection' },
      { name: 'SyncRunEdge' },
    ),
  }),
});

export const RepositoryConnection = builder.connectionObject(
  { type: Repository, name: 'RepositoryConnection' },
  { name: 'RepositoryEdge' },
);

builder.queryFields((t) => ({
  repository: t.prismaField({
    type: 'Repository',
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const repository = await ctx.prisma.repository.findFirst({
        ...query,
        where: { id: parseGlobalId(args.id, 'Repository'), tenantId: ctx.tenantId },
      });
      if (!repository) throw new NotFoundError('repository');
      return repository;
    },
  }),
  repositories: t.prismaConnection(
    {
      type: 'Repository',
      cursor: 'id',
      ...pageSize,
      args: {
        projectId: t.arg.id(),
        status: t.arg({ type: RepositoryStatusEnum }),
      },
      resolve: (query, _root, args, ctx) =>
        ctx.prisma.repository.findMany({
          ...query,
          where: {
            tenantId: ctx.tenantId,
            ...(args.projectId ? { projectId: parseGlobalId(args.projectId, 'Project') } : {}),
            ...(args.status ? { status: args.status } : {}),
          },
          orderBy: { createdAt: 'desc' },
        }),
    },
    RepositoryConnection,
  ),
}));

export const WebhookSetup = builder
  .objectRef<{ url: string; secret: string | null; autoConfigured: boolean }>('WebhookSetup')
  .implement({
    fields: (t) => ({
      url: t.exposeString('url', { description: 'where the host must POST' }),
      secret: t.exposeString('secret', {
        nullable: true,
        description: 'shown only here, only when the hook is not auto-configured',
      }),
      autoConfigured: t.exposeBoolean('autoConfigured'),
    }),
  });

builder.relayMutationField(
  'addRepository',
  {
    inputFields: (t) => ({
      projectId: t.id({ required: true }),
      url: t.string({ required: true, description: 'https clone URL or web URL of the repository' }),
      provider: t.field({ type: ProviderEnum, description: 'inferred from the host when omitted' }),
      branch: t.string({ description: 'tracked branch; default: the remote default branch' }),
      syncStrategy: t.field({ type: SyncStrategyEnum, description: 'default AUTO' }),
      archivePolicy: t.field({ type: ArchivePolicyEnum, description: 'default EACH_SYNC' }),
      credentialId: t.id({ description: 'a connected provider credential, for private repositories' }),
    }),
  },
  {
    resolve: (_root, { input }, ctx) =>
      ctx.services.repositories.add({
        tenantId: ctx.tenantId,
        projectId: parseGlobalId(input.projectId, 'Project'),
        url: input.url,
        provider: input.provider ?? null,
        branch: input.branch ?? null,
        syncStrategy: input.syncStrategy ?? null,
        archivePolicy: input.archivePolicy ?? null,
        credentialId: input.credentialId ? parseGlobalId(input.credentialId, 'Credential') : null,
      }),
  },
  {
    outputFields: (t) => ({
      repository: t.field({ type: Repository, resolve: (payload) => payload.repository }),
      webhook: t.field({ type: WebhookSetup, resolve: (payload) => payload.webhook }),
    }),
  },
);

builder.relayMutationField(
  'syncRepository',
  { inputFields: (t) => ({ repositoryId: t.id({ required: true }), force: t.boolean() }) },
  {
    resolve: (_root, { input }, ctx) =>
      ctx.services.repositories.requestSync(ctx.tenantId, parseGlobalId(input.repositoryId, 'Repository'), Boolean(input.force)),
  },
  {
    outputFields: (t) => ({
      repository: t.field({ type: Repository, resolve: (payload) => payload.repository }),
      run: t.field({ type: SyncRun, description: 'the queued or running run it joined', resolve: (payload) => payload.run }),
    }),
  },
);

builder.relayMutationField(
  'removeRepository',
  { inputFields: (t) => ({ repositoryId: t.id({ required: true }) }) },
  {
    resolve: async (_root, { input }, ctx) => {
      await ctx.services.repositories.remove(ctx.tenantId, parseGlobalId(input.repositoryId, 'Repository'));
      return { removedRepositoryId: input.repositoryId };
    },
  },
  { outputFields: (t) => ({ removedRepositoryId: t.id({ resolve: (payload) => payload.removedRepositoryId }) }) },
);
