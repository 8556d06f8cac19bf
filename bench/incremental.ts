import path from 'node:path';
import { createUpstream, git, type Upstream } from '../test/support/gitFixtures.js';
import { addRepository, createProject, dbId, syncRepositories } from './api.js';
import { measure, type BenchContext } from './context.js';
import { benchResult, type BenchResult } from './report.js';
import { gitRequestsPer, gitTotals, medianPerKey, phaseBreakdown, runMarker, runsAfter, runSummary, type GitTotals } from './runs.js';
import { Service } from './service.js';
import { inParallel, median, timed, waitUntil } from './timing.js';
import { waitForAllSynced } from './setup.js';

const repositoryCount = 100;
const workers = 4;

/**
 * 100 synced repositories each get one upstream commit; one request syncs
 * them all (SYNC_CONCURRENCY=4) vs `git fetch` + `git reset --hard` of 100
 * clones with 4 workers.
 */
export async function incremental(ctx: BenchContext): Promise<BenchResult> {
  const [service, upstreams] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'incremental-service'), {
      SYNC_CONCURRENCY: String(workers),
      SYNC_HOST_CONCURRENCY: String(workers),
      // No poll may land inside a measurement.
      REPOLENS_SCHEDULER_INTERVAL_MS: '0',
    }),
    smallUpstreams(ctx, repositoryCount),
  ]);
  try {
    const client = service.client;
    const projectId = await createProject(client, 'incremental');
    const ids: string[] = [];
    await inParallel(upstreams, workers, async (upstream, index) => void (ids[index] = await addRepository(client, projectId, upstream.url)));
    const clones = upstreams.map((_, index) => path.join(ctx.workDir, 'incremental-clones', String(index)));
    await Promise.all([
      waitForAllSynced(service, repositoryCount),
      inParallel(upstreams, workers, (upstream, index) => git(['clone', '--quiet', '--', upstream.url, clones[index]!]).then(() => undefined)),
    ]);
    ctx.log(`[incremental-100] ${repositoryCount} repositories synced and cloned`);

    let heads: string[] = [];
    const breakdowns: Record<string, number>[] = [];
    const summaries: ReturnType<typeof runSummary>[] = [];
    const transactions: number[] = [];
    let requests: { ours?: GitTotals; baseline?: GitTotals } = {};

    const samples = await measure(ctx, 'incremental-100', {
      runs: ctx.runs(3),
      prepare: async (iteration) => {
        heads = [];
        await inParallel(upstreams, workers, async (upstream, index) => {
          heads[index] = await upstream.commit({ [`changes/${iteration}.md`]: `change ${iteration} of ${upstream.name}\n` });
        });
      },
      ours: async () => {
        const xactsBefore = await service.serverTransactions();
        const [marker, gitBefore] = [await runMarker(service), gitTotals(ctx.git)];
        const took = await timed(async () => {
          await syncRepositories(client, ids);
          await waitForHeads(service, ids.map(dbId), heads);
        });
        requests = { ...requests, ours: gitRequestsPer(gitTotals(ctx.git), gitBefore, repositoryCount) };
        const runs = await runsAfter(service, marker);
        breakdowns.push(phaseBreakdown(runs));
        summaries.push(runSummary(runs, took));
        transactions.push(((await service.serverTransactions()) - xactsBefore) / repositoryCount);
        return took;
      },
      baseline: async () => {
        const gitBefore = gitTotals(ctx.git);
        const took = await timed(() =>
          inParallel(clones, workers, async (clone) => {
            await git(['fetch', '--quiet', 'origin'], { cwd: clone });
            await git(['reset', '--quiet', '--hard', 'origin/main'], { cwd: clone });
          }),
        );
        requests = { ...requests, baseline: gitRequestsPer(gitTotals(ctx.git), gitBefore, repositoryCount) };
        const head = await git(['rev-parse', 'HEAD'], { cwd: clones.at(-1)! });
        if (head !== heads.at(-1)) throw new Error(`baseline clone is at ${head}, expected ${heads.at(-1)}`);
        return took;
      },
    });

    const measured = ctx.warmup;
    return benchResult('incremental-100', 1.25, samples, {
      repositories: repositoryCount,
      concurrency: workers,
      checks: [{ metric: 'peak_rss_mb', value: await service.peakRssMb(), max: 200 }],
      ours_phases_mean_ms: medianPerKey(breakdowns.slice(measured)),
      ours_run_summary: summaries.slice(measured),
      db_transactions_per_sync: median(transactions.slice(measured)),
      git_requests_per_sync: requests,
    });
  } finally {
    await service.stop();
  }
}

/** Small repositories of a few files each. */
async function smallUpstreams(ctx: BenchContext, count: number): Promise<Upstream[]> {
  const upstreams: Upstream[] = [];
  await inParallel(Array.from({ length: count }, (_, index) => index), workers, async (index) => {
    upstreams[index] = await createUpstream(ctx.git, `incremental/repo-${index}`, {
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
async function waitForHeads(service: Service, repositoryIds: string[], heads: string[]): Promise<void> {
  const synced = async () => {
    const [row] = await service.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "Repository" r JOIN unnest($1::uuid[], $2::text[]) AS e(id, sha) ON r.id = e.id
       WHERE r.status = 'SYNCED' AND r."lastCommitSha" = e.sha`,
      [repositoryIds, heads],
    );
    return row?.n ?? 0;
  };
  await waitUntil(async () => (await synced()) === repositoryIds.length, {
    intervalMs: 25,
    timeoutMs: 300_000,
    describe: async () => `${await synced()}/${repositoryIds.length} repositories synced at the new head`,
  });
}
