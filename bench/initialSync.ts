import { rm } from 'node:fs/promises';
import path from 'node:path';
import { generateLargeRepository, git } from '../test/support/gitFixtures.js';
import { addRepository, createProject, dbId, removeRepository, watchSync } from './api.js';
import { measure, type BenchContext } from './context.js';
import { baselineCost, serviceCost } from './cost.js';
import { benchResult, type BenchResult } from './report.js';
import { phaseBreakdown, runMarker, runsAfter } from './runs.js';
import { Service } from './service.js';
import { medianOf, timed } from './timing.js';

/**
 * addRepository of a ~5,000-file, ~300-commit repository until the
 * subscription reports SYNCED, vs `git clone` of the same URL. Every run is a
 * fresh clone: the repository is removed (untimed) after each.
 */
export async function initialSync(ctx: BenchContext): Promise<BenchResult> {
  const repository = { files: ctx.scale(5000), commits: ctx.scale(300) };
  const [service, upstream] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'initial-sync-service'), { REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    generateLargeRepository(ctx.git, 'initial-sync/large', repository),
  ]);
  try {
    const client = service.client;
    const projectId = await createProject(client, 'initial-sync');

    const samples = await measure(ctx, 'initial-sync', {
      runs: ctx.runs(5),
      warmup: ctx.warmup(1),
      ours: async () => {
        const marker = await runMarker(service);
        const { result, cost } = await serviceCost(service, ctx.git, 1, async () => {
          const sentAt = Date.now();
          const start = performance.now();
          const repositoryId = await addRepository(client, projectId, upstream.url);
          const watch = watchSync(client, repositoryId);
          const end = await watch.done.finally(() => watch.close());
          return { repositoryId, sentAt, ...end, ms: performance.now() - start };
        });
        if (result.event.phase !== 'DONE') throw new Error(`initial sync ended ${result.event.phase}: ${result.event.message}`);
        const runs = (await runsAfter(service, marker)).filter((run) => run.repositoryId === dbId(result.repositoryId));
        const phases = phaseBreakdown(runs, { first: { phase: 'request', at: result.sentAt }, last: { phase: 'observed', at: result.at } });
        await removeRepository(client, result.repositoryId);
        return { ms: result.ms, detail: { phases, cost } };
      },
      baseline: async (iteration) => {
        const target = path.join(ctx.workDir, 'initial-sync-clones', String(iteration));
        const { result: ms, cost } = await baselineCost(ctx.git, 1, () => timed(() => git(['clone', '--', upstream.url, target])));
        await rm(target, { recursive: true, force: true });
        return { ms, detail: cost };
      },
    });

    const ours = medianOf(samples.oursDetails);
    return benchResult('initial-sync', 1.15, samples, {
      repository,
      ours_phases_ms: ours.phases,
      ours_cost: ours.cost,
      baseline_cost: medianOf(samples.baselineDetails),
      server_warnings: service.warnings,
    });
  } finally {
    await service.stop();
  }
}
