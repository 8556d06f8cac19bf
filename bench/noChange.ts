import { cp, rm } from 'node:fs/promises';
import path from 'node:path';
import { createUpstream, git } from '../test/support/gitFixtures.js';
import { addRepository, createProject } from './api.js';
import { measure, type BenchContext } from './context.js';
import { benchResult, type BenchResult } from './report.js';
import { gitRequestsPer, gitTotals, medianPerKey, phaseBreakdown, runMarker, runsAfter, runSummary, type GitTotals } from './runs.js';
import { Service } from './service.js';
import { deferScheduledChecks, waitForAllSynced, waitForIdle } from './setup.js';
import { inParallel, median, waitUntil } from './timing.js';

const repositoryCount = 1000;
const workers = 4;

/**
 * One scheduler pass over 1,000 unchanged repositories (every nextCheckAt
 * set to now()) until each has a newer finished run, vs `git ls-remote` of
 * the same URLs with 4 workers. No pass may fetch.
 */
export async function noChange(ctx: BenchContext): Promise<BenchResult> {
  const [service, urls] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'no-change-service'), {
      SYNC_CONCURRENCY: String(workers),
      SYNC_HOST_CONCURRENCY: String(workers),
      REPOLENS_SCHEDULER_INTERVAL_MS: '100',
    }),
    tinyRepositories(ctx, repositoryCount),
  ]);
  try {
    const client = service.client;
    const projectId = await createProject(client, 'no-change');
    await inParallel(urls, workers, async (url) => void (await addRepository(client, projectId, url)));
    await waitForAllSynced(service, repositoryCount);
    await waitForIdle(service);
    await deferScheduledChecks(service);
    ctx.log(`[no-change-1000] ${repositoryCount} repositories registered and synced`);

    const breakdowns: Record<string, number>[] = [];
    const summaries: ReturnType<typeof runSummary>[] = [];
    const transactions: number[] = [];
    const passes: { skipped: number; fetches: number; requests: GitTotals }[] = [];

    const samples = await measure(ctx, 'no-change-1000', {
      runs: ctx.runs(3),
      ours: async () => {
        const xactsBefore = await service.serverTransactions();
        const [marker, gitBefore] = [await runMarker(service), gitTotals(ctx.git)];
        const start = performance.now();
        await service.query(`UPDATE "Repository" SET "nextCheckAt" = now()`);
        await waitUntil(async () => (await finished(service, marker)).finished === repositoryCount, {
          intervalMs: 50,
          timeoutMs: 300_000,
          describe: async () => `${(await finished(service, marker)).finished}/${repositoryCount} repositories checked`,
        });
        const took = performance.now() - start;
        const gitAfter = gitTotals(ctx.git);
        const runs = await runsAfter(service, marker);
        passes.push({
          skipped: (await finished(service, marker)).skipped,
          fetches: gitAfter.fetches - gitBefore.fetches,
          requests: gitRequestsPer(gitAfter, gitBefore, repositoryCount),
        });
        breakdowns.push(phaseBreakdown(runs));
        summaries.push(runSummary(runs, took));
        transactions.push(((await service.serverTransactions()) - xactsBefore) / repositoryCount);
        await waitForIdle(service);
        await deferScheduledChecks(service);
        return took;
      },
      baseline: async () => {
        const start = performance.now();
        await inParallel(urls, workers, (url) => git(['ls-remote', url]).then(() => undefined));
        return performance.now() - start;
      },
    });

    const measured = passes.slice(ctx.warmup);
    return benchResult('no-change-1000', 1.2, samples, {
      repositories: repositoryCount,
      concurrency: workers,
      checks: [{ metric: 'fetches', value: Math.max(...measured.map((pass) => pass.fetches)), max: 0 }],
      skipped_per_pass: measured.map((pass) => pass.skipped),
      ours_phases_median_ms: medianPerKey(breakdowns.slice(ctx.warmup)),
      ours_run_summary: summaries.slice(ctx.warmup),
      db_transactions_per_check: median(transactions.slice(ctx.warmup)),
      git_requests_per_check: measured.at(-1)?.requests,
      peak_rss_mb: Math.round(await service.peakRssMb()),
    });
  } finally {
    await service.stop();
  }
}

/** Repositories with a run queued after `marker` that has finished, and how many of those were SKIPPED. */
async function finished(service: Service, marker: string): Promise<{ finished: number; skipped: number }> {
  const [row] = await service.query<{ finished: number; skipped: number }>(
    `SELECT count(DISTINCT "repositoryId")::int AS finished,
            count(DISTINCT "repositoryId") FILTER (WHERE status = 'SKIPPED')::int AS skipped
     FROM "SyncRun" WHERE "queuedAt" > $1::timestamp AND "finishedAt" IS NOT NULL`,
    [marker],
  );
  return row ?? { finished: 0, skipped: 0 };
}

/** Copies of one one-commit bare repository (hooks dropped: nothing runs them). */
async function tinyRepositories(ctx: BenchContext, count: number): Promise<string[]> {
  const template = await createUpstream(ctx.git, 'no-change/template', { files: { 'README.md': '# tiny\n' } });
  await rm(path.join(template.bareDir, 'hooks'), { recursive: true, force: true });
  const names = Array.from({ length: count }, (_, index) => `no-change/repo-${index}`);
  await inParallel(names, 16, (name) => cp(template.bareDir, path.join(ctx.git.root, `${name}.git`), { recursive: true }));
  return names.map((name) => ctx.git.repoUrl(name));
}
