import type { GitServer, RepoStats } from '../test/support/gitServer.js';
import type { Service } from './service.js';
import { median, round } from './timing.js';

/** Where the service's time went, from its own SyncRun rows. */
export interface RunRow {
  repositoryId: string;
  status: string;
  phaseLog: { phase: string; at: string }[];
  runMs: number | null;
}

/** The newest queuedAt so far: runs queued after it belong to the next measurement. */
export async function runMarker(service: Service): Promise<string> {
  const [row] = await service.query<{ marker: string }>(`SELECT coalesce(max("queuedAt"), 'epoch')::text AS marker FROM "SyncRun"`);
  return row?.marker ?? 'epoch';
}

export async function runsAfter(service: Service, marker: string): Promise<RunRow[]> {
  return service.query<RunRow>(
    `SELECT "repositoryId", status, "phaseLog",
            extract(epoch FROM ("finishedAt" - "startedAt")) * 1000 AS "runMs"
     FROM "SyncRun" WHERE "queuedAt" > $1::timestamp AND "finishedAt" IS NOT NULL`,
    [marker],
  );
}

type Mark = { phase: string; at: number };

/**
 * Mean milliseconds per run between consecutive recorded phases, keyed
 * "QUEUED→CHECKING" etc. Local marks (when the request was sent, when the
 * client saw the end) can be added before the first and after the last phase.
 */
export function phaseBreakdown(runs: readonly RunRow[], marks: { first?: Mark; last?: Mark } = {}): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const run of runs) {
    const entries: Mark[] = run.phaseLog.map((entry) => ({ phase: entry.phase, at: Date.parse(entry.at) }));
    if (marks.first) entries.unshift(marks.first);
    if (marks.last) entries.push(marks.last);
    entries.slice(1).forEach((entry, index) => {
      const key = `${entries[index]?.phase}→${entry.phase}`;
      totals[key] = (totals[key] ?? 0) + (entry.at - (entries[index]?.at ?? entry.at));
    });
  }
  return Object.fromEntries(Object.entries(totals).map(([key, total]) => [key, round(total / Math.max(1, runs.length), 1)]));
}

/** Median of each key over several breakdowns (one per measured iteration). */
export function medianPerKey(records: readonly Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(records.flatMap((record) => Object.keys(record)))];
  return Object.fromEntries(keys.map((key) => [key, median(records.map((record) => record[key] ?? 0))]));
}

/** Mean run time (claimed → finished) and how many runs were in flight on average over `wallMs`. */
export function runSummary(runs: readonly RunRow[], wallMs: number): { mean_run_ms: number; mean_runs_in_flight: number } {
  const busy = runs.reduce((sum, run) => sum + Number(run.runMs ?? 0), 0);
  return { mean_run_ms: round(busy / Math.max(1, runs.length), 1), mean_runs_in_flight: round(busy / wallMs, 2) };
}

export type GitTotals = Omit<RepoStats, 'bytesSent'>;

/** Smart-HTTP requests the git server answered so far, over every repository. */
export function gitTotals(server: GitServer): GitTotals {
  const totals: GitTotals = { requests: 0, infoRefs: 0, lsRefs: 0, fetches: 0 };
  for (const stats of server.stats.values()) {
    totals.requests += stats.requests;
    totals.infoRefs += stats.infoRefs;
    totals.lsRefs += stats.lsRefs;
    totals.fetches += stats.fetches;
  }
  return totals;
}

/** Requests between two snapshots, per synced repository. */
export function gitRequestsPer(after: GitTotals, before: GitTotals, repositories: number): GitTotals {
  const per = (key: keyof GitTotals) => round((after[key] - before[key]) / repositories, 2);
  return { requests: per('requests'), infoRefs: per('infoRefs'), lsRefs: per('lsRefs'), fetches: per('fetches') };
}
