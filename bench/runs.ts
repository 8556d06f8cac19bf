import type { Service } from './service.js';
import { round } from './timing.js';

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

/**
 * Mean run time (claimed → finished), runs in flight on average over the
 * measurement, and when the last run was queued (how fast triggers arrived).
 */
export function runSummary(runs: readonly RunRow[], window: { start: number; wallMs: number }) {
  const busy = runs.reduce((sum, run) => sum + Number(run.runMs ?? 0), 0);
  const queuedAt = runs.map((run) => Date.parse(run.phaseLog[0]?.at ?? '') - window.start);
  return {
    mean_run_ms: round(busy / Math.max(1, runs.length), 1),
    mean_runs_in_flight: round(busy / window.wallMs, 2),
    last_queued_after_ms: round(Math.max(...queuedAt)),
  };
}
