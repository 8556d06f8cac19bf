import { builder } from './builder.js';
import { SyncPhaseEnum, SyncRunStatusEnum, SyncStrategyEnum, SyncTriggerEnum } from './enums.js';

export const SyncRun = builder.prismaNode('SyncRun', {
  id: { field: 'id' },
  // An absent or foreign object resolves to null (Relay), not an error.
  nullable: true,
  findUnique: (id, ctx) => ({ id, tenantId: ctx.tenantId }),
  fields: (t) => ({
    repository: t.relation('repository'),
    trigger: t.expose('trigger', { type: SyncTriggerEnum }),
    strategy: t.expose('strategy', { type: SyncStrategyEnum, nullable: true, description: 'the strategy actually used' }),
    status: t.expose('status', { type: SyncRunStatusEnum }),
    phase: t.expose('phase', { type: SyncPhaseEnum }),
    fromSha: t.exposeString('fromSha', { nullable: true }),
    toSha: t.exposeString('toSha', { nullable: true }),
    filesChanged: t.exposeInt('filesChanged', { nullable: true }),
    bytesReceived: t.exposeFloat('bytesReceived', { nullable: true }),
    triggerCount: t.exposeInt('triggerCount', { description: 'triggers merged into this run' }),
    queuedAt: t.expose('queuedAt', { type: 'DateTime' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    warning: t.exposeString('warning', { nullable: true, description: 'a problem that did not fail the run (an archive that could not be stored)' }),
  }),
});
