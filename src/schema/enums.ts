import { ArchivePolicy, Provider, RepositoryStatus, SyncPhase, SyncRunStatus, SyncStrategy, SyncTrigger } from '../generated/prisma/enums.js';
import { builder } from './builder.js';

export const ProviderEnum = builder.enumType(Provider, { name: 'Provider' });
export const RepositoryStatusEnum = builder.enumType(RepositoryStatus, { name: 'RepositoryStatus' });
export const SyncStrategyEnum = builder.enumType(SyncStrategy, { name: 'SyncStrategy' });
export const SyncTriggerEnum = builder.enumType(SyncTrigger, { name: 'SyncTrigger' });
export const SyncRunStatusEnum = builder.enumType(SyncRunStatus, { name: 'SyncRunStatus' });
export const SyncPhaseEnum = builder.enumType(SyncPhase, { name: 'SyncPhase' });
export const ArchivePolicyEnum = builder.enumType(ArchivePolicy, {
  name: 'ArchivePolicy',
  description: 'when a synced commit is archived (snapshot and per-file artifacts)',
});

builder.scalarType('DateTime', {
  description: 'An ISO-8601 timestamp in UTC',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => {
    const date = new Date(String(value));
    if (Number.isNaN(date.getTime())) throw new TypeError('DateTime must be an ISO-8601 timestamp');
    return date;
  },
});
