import path from 'node:path';
import { createUpstream, git, type Upstream } from '../test/support/gitFixtures.js';
import { addRepository, createProject, dbId, syncRepositories } from './api.js';
import { measure, type BenchContext } from './context.js';
import { baselineCost, serviceCost } from './cost.js';
import { benchResult, type BenchResult } from './report.js';
import { phaseBreakdown, runMarker, runsAfter, runSummary } from './runs.js';
import { Service } from './service.js';
import { waitForAllSynced } from './setup.js';
import { inParallel, medianOf, round, timed, waitUntil } from './timing.js';

const workers = 4;

/**
 * 100 synced repositories each get one upstream commit; one request syncs
 * them all (SYNC_CONCURRENCY=4) vs `git fetch` + `git reset --hard` of 100
 * clones with 4 workers.
 */
export async function incremental(ctx: BenchContext): Promise<BenchResult> {
  const repositoryCount = ctx.scale(100);
  const [service, upstreams] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'incremental-service'), {
      SYNC_CONCURRENCY: String(workers),
      // All 100 repositories share one host.
      SYNC_HOST_CONCURRENCY: String(workers),
      // No poll may land inside a measurement.
      REPOLENS_SCHEDULER_INTERVAL_MS: '0',
    }),
    smallUpstreams(ctx, repositoryCount),
  ]);
  try {
    const rssAtStart = await service.rssMb();
    const client = service.client;
    const projectId = await createProject(client, 'incremental');
    const ids: string[] = [];
    await inParallel(upstreams, 2 * workers, async (upstream, index) => void (ids[index] = await addRepository(client, projectId, upstream.url)));
    const clones = upstreams.map((_, index) => path.join(ctx.workDir, 'incremental-clones', String(index)));
    await Promise.all([
      waitForAllSynced(service, repositoryCount),
      inParallel(upstreams, workers, async (upstream, index) => void (await git(['clone', '--quiet', '--', upstream.url, clones[index]!]))),
    ]);
    const peakAfterSetup = await service.peakRssMb();
    ctx.log(`[incremental-100] ${repositoryCount} repositories synced and cloned`);

    let heads: string[] = [];
    const samples = await measure(ctx, 'incremental-100', {
      runs: ctx.runs(3),
      warmup: ctx.warmup(0),
      prepare: async (iteration) => {
        heads = [];
        await inParallel(upstreams, workers, async (upstream, index) => {
          heads[index] = await upstream.commit({ [`changes/${iteration}.md`]: `change ${iteration} of ${upstream.name}\n` });
        });
      },
      ours: async () => {
        const marker = await runMarker(service);
        let start = 0;
        const { result: ms, cost } = await serviceCost(service, ctx.git, repositoryCount, () =>
          timed(async () => {
            start = Date.now();
            await syncRepositories(client, ids);
            await waitForHeads(service, ids.map(dbId), heads);
          }),
        );
        const runs = await runsAfter(service, marker);
        return { ms, detail: { phases: phaseBreakdown(runs), runs: runSummary(runs, { start, wallMs: ms }), cost } };
      },
      baseline: async () => {
        const { result: ms, cost } = await baselineCost(ctx.git, repositoryCount, () =>
          timed(() =>
            inParallel(clones, workers, async (clone) => {
              await git(['fetch', '--quiet', 'origin'], { cwd: clone });
              await git(['reset', '--quiet', '--hard', 'origin/main'], { cwd: clone });
            }),
          ),
        );
        const head = await git(['rev-parse', 'HEAD'], { cwd: clones.at(-1)! });
        if (head !== heads.at(-1)) throw new Error(`baseline clone is at ${head}, expected ${heads.at(-1)}`);
        return { ms, detail: { cost, mean_repository_ms: round((ms * workers) / repositoryCount, 1) } };
      },
    });

    const ours = medianOf(samples.oursDetails);
    return benchResult('incremental-100', 1.25, samples, {
      repositories: repositoryCount,
      concurrency: workers,
      checks: [{ metric: 'peak_rss_mb', value: await service.peakRssMb(), max: 200 }],
      rss_mb: { after_start: round(rssAtStart), peak_after_setup: round(peakAfterSetup) },
      ours_phases_mean_ms: ours.phases,
      ours_runs: ours.runs,
      ours_cost: ours.cost,
      baseline: medianOf(samples.baselineDetails),
      server_warnings: service.warnings,
    });
  } finally {
    await service.stop();
  }
}

/** Small repositories of a few files each. */
export async function smallUpstreams(ctx: BenchContext, count: number, prefix = 'incremental'): Promise<Upstream[]> {
  const upstreams: Upstream[] = [];
  await inParallel(Array.from({ length: count }, (_, index) => index), workers, async (index) => {
    upstreams[index] = await createUpstream(ctx.git, `${prefix}/repo-${index}`, {
      files: {
        'README.md': `# repo ${index}\n`,
        'package.json': `{ "name": "repo-${index}", "version": "1.0.0" }\n`,
        'src/index.ts': `export const id = ${index};\n`,
        'src/util.ts': 'export const twice = (n: number) => 2 * n;\n',
      },
    });
  });
  return upstreams;
}

/** Until every repository is SYNCED at its expected head. */
export async function waitForHeads(service: Service, repositoryIds: string[], heads: string[]): Promise<void> {
  const synced = async () => {
    const [row] = await service.query<{ n: number; failed: number; error: string | null }>(
      `SELECT count(*) FILTER (WHERE r.status = 'SYNCED' AND r."lastCommitSha" = e.sha)::int AS n,
              count(*) FILTER (WHERE r.status = 'FAILED')::int AS failed, min(r."lastError") AS error
       FROM "Repository" r JOIN unnest($1::uuid[], $2::text[]) AS e(id, sha) ON r.id = e.id`,
      [repositoryIds, heads],
    );
    // A failed sync will not reach the head: stop now rather than at the timeout.
    if (row?.failed) throw new Error(`${row.failed} repositories failed their sync: ${row.error}`);
    return row?.n ?? 0;
  };
  await waitUntil(async () => (await synced()) === repositoryIds.length, {
    intervalMs: 25,
    timeoutMs: 300_000,
    describe: async () => `${await synced()}/${repositoryIds.length} repositories synced at the new head`,
  });
}
