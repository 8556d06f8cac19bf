import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  triggers: Counter<'trigger' | 'coalesced'>;
  runs: Counter<'trigger' | 'outcome'>;
  runDuration: Histogram<'trigger' | 'outcome'>;
  queueDepth: Gauge;
  runningRuns: Gauge;
  repositoriesByStatus: Gauge<'status'>;
  archiveDuration: Histogram<'part' | 'outcome'>;
  archiveObjects: Counter<'part'>;
  indexDuration: Histogram<'mode' | 'outcome'>;
  indexedFiles: Counter<'mode'>;
}

/** One registry per app instance, so tests can run several apps in one process. */
export function createMetrics(countRepositoriesByStatus: () => Promise<Record<string, number>>): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'repolens_' });
  return {
    registry,
    triggers: new Counter({
      name: 'repolens_sync_triggers_total',
      help: 'Sync triggers received, by kind and whether they merged into a queued run',
      labelNames: ['trigger', 'coalesced'],
      registers: [registry],
    }),
    runs: new Counter({
      name: 'repolens_sync_runs_total',
      help: 'Finished sync runs by trigger and outcome',
      labelNames: ['trigger', 'outcome'],
      registers: [registry],
    }),
    runDuration: new Histogram({
      name: 'repolens_sync_run_duration_seconds',
      help: 'Duration of sync runs',
      labelNames: ['trigger', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600],
      registers: [registry],
    }),
    archiveDuration: new Histogram({
      name: 'repolens_archive_duration_seconds',
      help: 'Time to store a commit in the archive store: snapshot (.tar.gz) or per-file artifacts (blobs + manifest)',
      labelNames: ['part', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600],
      registers: [registry],
    }),
    archiveObjects: new Counter({
      name: 'repolens_archive_objects_uploaded_total',
      help: 'Objects written to the archive store: snapshot, blob, manifest',
      labelNames: ['part'],
      registers: [registry],
    }),
    indexDuration: new Histogram({
      name: 'repolens_index_duration_seconds',
      help: 'Time of the INDEXING phase (metadata and code graph), by mode (full, incremental) and outcome',
      labelNames: ['mode', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600],
      registers: [registry],
    }),
    indexedFiles: new Counter({
      name: 'repolens_indexed_files_total',
      help: 'Files read by the INDEXING phase (parsed or measured), by mode',
      labelNames: ['mode'],
      registers: [registry],
    }),
    queueDepth: new Gauge({ name: 'repolens_sync_queue_depth', help: 'Runs waiting in this process', registers: [registry] }),
    runningRuns: new Gauge({ name: 'repolens_sync_running', help: 'Runs executing in this process', registers: [registry] }),
    repositoriesByStatus: new Gauge({
      name: 'repolens_repositories',
      help: 'Repositories by status',
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        const counts = await countRepositoriesByStatus();
        this.reset();
        for (const [status, count] of Object.entries(counts)) this.set({ status }, count);
      },
    }),
  };
}
