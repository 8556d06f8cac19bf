import { cp, rm } from 'node:fs/promises';
import path from 'node:path';
import { createUpstream, git } from '../test/support/gitFixtures.js';
import { addRepository, createProject } from './api.js';
import { measure, type BenchContext } from './context.js';
import { baselineCost, serviceCost } from './cost.js';
import { benchResult, type BenchResult } from './report.js';
import { phaseBreakdown, runMarker, runsAfter, runSummary } from './runs.js';
import { Service } from './service.js';
import { deferScheduledChecks, waitForAllSynced, waitForIdle } from './setup.js';
import { inParallel, medianOf, round, timed, waitUntil } from './timing.js';

const workers = 4;

/**
 * One scheduler pass over 1,000 unchanged repositories (every nextCheckAt
 * set to now()) until each has a newer finished run, vs `git ls-remote` of
 * the same URLs with 4 workers. A pass must not fetch.
 */
export async function noChange(ctx: BenchContext): Promise<BenchResult> {
  const repositoryCount = ctx.scale(1000);
  const limits = {
    SYNC_CONCURRENCY: String(workers),
    // All 1,000 repositories share one host.
    SYNC_HOST_CONCURRENCY: String(workers),
  };
  const setupStart = performance.now();
  const [service, urls] = await Promise.all([
    // Registration runs without the scheduler: repositories synced early would fall due and be polled meanwhile.
    Service.start(path.join(ctx.workDir, 'no-change-service'), { ...limits, REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    tinyRepositories(ctx, repositoryCount),
  ]);
  try {
    const client = service.client;
    const projectId = await createProject(client, 'no-change');
    await inParallel(urls, 2 * workers, async (url) => void (await addRepository(client, projectId, url)));
    await waitForAllSynced(service, repositoryCount);
    await waitForIdle(service);
    const registrationMs = performance.now() - setupStart;
    // The measured server: same database and data folder, scheduler polling every 100 ms.
    await deferScheduledChecks(service);
    await service.restart({ ...limits, REPOLENS_SCHEDULER_INTERVAL_MS: '100' });
    ctx.log(`[no-change-1000] ${repositoryCount} repositories registered and synced in ${round(registrationMs / 1000)} s`);

    const samples = await measure(ctx, 'no-change-1000', {
      runs: ctx.runs(3),
      warmup: ctx.warmup(0),
      ours: async () => {
        const marker = await runMarker(service);
        const fetchesBefore = ctx.git.totalFetches();
        let start = 0;
        const { result: ms, cost } = await serviceCost(service, ctx.git, repositoryCount, () =>
          timed(async () => {
            start = Date.now();
            await service.query(`UPDATE "Repository" SET "nextCheckAt" = now()`);
            await waitUntil(async () => (await checked(service, marker)).finished === repositoryCount, {
              intervalMs: 50,
              timeoutMs: 300_000,
              describe: async () => `${(await checked(service, marker)).finished}/${repositoryCount} repositories checked`,
            });
          }),
        );
        const fetches = ctx.git.totalFetches() - fetchesBefore;
        const runs = await runsAfter(service, marker);
        const { skipped } = await checked(service, marker);
        await waitForIdle(service);
        await deferScheduledChecks(service);
        return { ms, detail: { fetches, skipped, phases: phaseBreakdown(runs), runs: runSummary(runs, { start, wallMs: ms }), cost } };
      },
      baseline: async () => {
        const { result: ms, cost } = await baselineCost(ctx.git, repositoryCount, () =>
          timed(() => inParallel(urls, workers, async (url) => void (await git(['ls-remote', url])))),
        );
        return { ms, detail: cost };
      },
    });

    const ours = medianOf(samples.oursDetails);
    const fetchesPerPass = samples.oursDetails.map((detail) => detail.fetches);
    return benchResult('no-change-1000', 1.2, samples, {
      repositories: repositoryCount,
      concurrency: workers,
      setup_registration_ms: round(registrationMs),
      checks: [{ metric: 'fetches', value: Math.max(...fetchesPerPass), max: 0 }],
      fetches_per_pass: fetchesPerPass,
      skipped_per_pass: samples.oursDetails.map((detail) => detail.skipped),
      ours_phases_mean_ms: ours.phases,
      ours_runs: ours.runs,
      ours_cost: ours.cost,
      baseline_cost: medianOf(samples.baselineDetails),
      peak_rss_mb: Math.round(await service.peakRssMb()),
      server_warnings: service.warnings,
    });
  } finally {
    await service.stop();
  }
}

/** Repositories with a run queued after `marker` that has finished, and how many of those were SKIPPED. */
export async function checked(service: Service, marker: string): Promise<{ finished: number; skipped: number }> {
  const [row] = await service.query<{ finished: number; skipped: number }>(
    `SELECT count(DISTINCT "repositoryId")::int AS finished,
            count(DISTINCT "repositoryId") FILTER (WHERE status = 'SKIPPED')::int AS skipped
     FROM "SyncRun" WHERE "queuedAt" > $1::timestamp AND "finishedAt" IS NOT NULL`,
    [marker],
  );
  return row ?? { finished: 0, skipped: 0 };
}

/** Copies of one one-commit bare repository (hooks dropped: nothing runs them). */
export async function tinyRepositories(ctx: BenchContext, count: number, prefix = 'no-change'): Promise<string[]> {
  const template = await createUpstream(ctx.git, `${prefix}/template`, { files: { 'README.md': '# tiny\n' } });
  await rm(path.join(template.bareDir, 'hooks'), { recursive: true, force: true });
  const names = Array.from({ length: count }, (_, index) => `${prefix}/repo-${index}`);
  await inParallel(names, 16, (name) => cp(template.bareDir, path.join(ctx.git.root, `${name}.git`), { recursive: true }));
  return names.map((name) => ctx.git.repoUrl(name));
}
