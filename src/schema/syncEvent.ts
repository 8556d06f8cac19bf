import { NotFoundError } from '../errors.js';
import type { SyncEventPayload } from '../sync/events.js';
import type { PhaseLogEntry } from '../sync/runRecorder.js';
import { builder } from './builder.js';
import type { GraphQLContext } from './context.js';
import { RepositoryStatusEnum, SyncPhaseEnum } from './enums.js';
import { encodeGlobalId, parseGlobalId } from './globalId.js';
import { releasing } from './limits.js';

const SyncEvent = builder.objectRef<SyncEventPayload>('SyncEvent').implement({
  fields: (t) => ({
    repositoryId: t.id({ resolve: (event) => encodeGlobalId('Repository', event.repositoryId) }),
    runId: t.id({ nullable: true, resolve: (event) => (event.runId ? encodeGlobalId('SyncRun', event.runId) : null) }),
    status: t.field({ type: RepositoryStatusEnum, resolve: (event) => event.status }),
    phase: t.field({ type: SyncPhaseEnum, resolve: (event) => event.phase }),
    progress: t.exposeFloat('progress', { nullable: true, description: '0..1 where known (git transfer progress)' }),
    message: t.exposeString('message', { nullable: true }),
    commitSha: t.exposeString('commitSha', { nullable: true }),
    at: t.expose('at', { type: 'DateTime' }),
  }),
});

builder.subscriptionType({
  fields: (t) => ({
    syncStatus: t.field({
      type: SyncEvent,
      description:
        'Live events of a repository. A subscriber that joins while a run is queued or running first receives the phases that run has already been through.',
      args: { repositoryId: t.arg.id({ required: true }) },
      subscribe: async (_root, args, ctx) => {
        const repositoryId = parseGlobalId(args.repositoryId, 'Repository');
        const exists = await ctx.prisma.repository.count({ where: { id: repositoryId, tenantId: ctx.tenantId } });
        if (!exists) throw new NotFoundError('repository');
        // At most REPOLENS_MAX_SUBSCRIPTIONS_PER_TOKEN open at once; the slot is given back however the stream ends.
        const release = ctx.services.limits.openSubscription(ctx.tokenId);
        return releasing(withCatchUp(ctx, repositoryId), release);
      },
      resolve: (event) => event,
    }),
  }),
});

/**
 * Listens first, then reads the active runs' phase logs, so no event falls in
 * between; live phase events already replayed are dropped.
 */
async function* withCatchUp(ctx: GraphQLContext, repositoryId: string): AsyncGenerator<SyncEventPayload> {
  const live = ctx.services.events.subscribe(repositoryId)[Symbol.asyncIterator]();
  let pending = live.next();
  try {
    const runs = await ctx.prisma.syncRun.findMany({
      where: { repositoryId, activeSlot: { not: null } },
      orderBy: { queuedAt: 'asc' },
      select: { id: true, phaseLog: true },
    });
    const replayed = new Set<string>();
    for (const run of runs) {
      for (const entry of run.phaseLog as unknown as PhaseLogEntry[]) {
        replayed.add(`${run.id}:${entry.phase}`);
        yield {
          repositoryId,
          runId: run.id,
          status: entry.status,
          phase: entry.phase,
          progress: null,
          message: entry.message ?? null,
          commitSha: entry.commitSha ?? null,
          at: new Date(entry.at),
        };
      }
    }
    const ended = ctx.services.events.ended.then(() => ({ done: true as const, value: undefined }));
    for (;;) {
      // The service stopping ends the stream (the client is sent `complete`).
      const next = await Promise.race([pending, ended]);
      if (next.done) return;
      pending = live.next();
      const event = next.value;
      if (event.progress === null && event.runId && replayed.delete(`${event.runId}:${event.phase}`)) continue;
      yield event;
    }
  } finally {
    await live.return?.();
  }
}
