import { rm } from 'node:fs/promises';
import path from 'node:path';
import { generateLargeRepository, git } from '../test/support/gitFixtures.js';
import { addRepository, createProject, dbId, removeRepository, watchSync } from './api.js';
import { measure, type BenchContext } from './context.js';
import { benchResult, type BenchResult } from './report.js';
import { gitRequestsPer, gitTotals, medianPerKey, phaseBreakdown, runMarker, runsAfter, type RunRow } from './runs.js';
import { Service } from './service.js';
import { median, timed } from './timing.js';

/**
 * addRepository of a ~5,000-file, ~300-commit repository until the
 * subscription reports SYNCED, vs `git clone` of the same URL. Every run is a
 * fresh clone: the repository is removed (untimed) after each.
 */
export async function initialSync(ctx: BenchContext): Promise<BenchResult> {
  const [service, upstream] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'initial-sync-service'), { REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    generateLargeRepository(ctx.git, 'initial-sync/large', { files: 5000, commits: 300 }),
  ]);
  try {
    const client = service.client;
    const projectId = await createProject(client, 'initial-sync');
    const runs: RunRow[] = [];
    const marks: { first: { phase: string; at: number }; last: { phase: string; at: number } }[] = [];
    const transactions: number[] = [];
    const requests = { ours: gitTotals(ctx.git), baseline: gitTotals(ctx.git) };

    const samples = await measure(ctx, 'initial-sync', {
      runs: ctx.runs(5),
      ours: async () => {
        const xactsBefore = await service.serverTransactions();
        const [marker, gitBefore] = [await runMarker(service), gitTotals(ctx.git)];
        const sentAt = Date.now();
        const start = performance.now();
        const repositoryId = await addRepository(client, projectId, upstream.url);
        const watch = watchSync(client, repositoryId);
        const { event, at } = await watch.done.finally(() => watch.close());
        const took = performance.now() - start;
        if (event.phase !== 'DONE' || event.status !== 'SYNCED') throw new Error(`initial sync ended ${event.phase}: ${event.message}`);
        requests.ours = gitRequestsPer(gitTotals(ctx.git), gitBefore, 1);
        runs.push(...(await runsAfter(service, marker)).filter((run) => run.repositoryId === dbId(repositoryId)));
        marks.push({ first: { phase: 'request', at: sentAt }, last: { phase: 'observed', at } });
        transactions.push((await service.serverTransactions()) - xactsBefore);
        await removeRepository(client, repositoryId);
        return took;
      },
      baseline: async (iteration) => {
        const target = path.join(ctx.workDir, 'initial-sync-clones', String(iteration));
        const gitBefore = gitTotals(ctx.git);
        const took = await timed(() => git(['clone', '--', upstream.url, target]));
        requests.baseline = gitRequestsPer(gitTotals(ctx.git), gitBefore, 1);
        await rm(target, { recursive: true, force: true });
        return took;
      },
    });

    // Warm-up runs are in the lists too; the breakdown covers the measured ones.
    const measured = runs.slice(ctx.warmup).map((run, index) => phaseBreakdown([run], marks[ctx.warmup + index]));
    return benchResult('initial-sync', 1.15, samples, {
      repository: { files: 5000, commits: 300 },
      ours_phases_median_ms: medianPerKey(measured),
      db_transactions_per_sync: median(transactions.slice(ctx.warmup)),
      git_requests_per_sync: requests,
    });
  } finally {
    await service.stop();
  }
}
