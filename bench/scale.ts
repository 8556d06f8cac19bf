import path from 'node:path';
import { rendezvousOwner } from '../src/sync/membership.js';
import type { TestClient } from '../test/support/client.js';
import { addRepository, createProject, dbId, syncRepositories } from './api.js';
import { measure, type BenchContext } from './context.js';
import { smallUpstreams, waitForHeads } from './incremental.js';
import { benchResult, type BenchResult } from './report.js';
import { runMarker } from './runs.js';
import { Service } from './service.js';
import { waitForAllSynced, waitForIdle } from './setup.js';
import { inParallel, medianOf, timed, waitUntil } from './timing.js';

const workers = 4;
const instanceCount = 3;
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Per instance, as in incremental-100; no poll may land inside a measurement. */
const instanceEnv = {
  SYNC_CONCURRENCY: String(workers),
  SYNC_HOST_CONCURRENCY: String(workers),
  REPOLENS_SCHEDULER_INTERVAL_MS: '0',
};

interface Side {
  service: Service;
  clients: TestClient[];
  ids: string[];
}

/**
 * scale-3 (issue 8): incremental-100's work (100 synced repositories, one
 * upstream commit each, every repository synced) done by one instance and by
 * three instances sharing one PostgreSQL database (events and run notices
 * through Redis), on this machine. The sync requests of the three-instance
 * side are spread over its instances (each gets a third of the repositories,
 * most of which it does not own). "ours" is three instances, "baseline" one;
 * the ratio says what the coordination costs on 2 cores. Duplicate
 * executions must be 0: runs beyond one per repository, and fetches beyond
 * one per repository at the git server.
 */
export async function scale3(ctx: BenchContext): Promise<BenchResult> {
  const repositoryCount = ctx.scale(100);
  const upstreams = await smallUpstreams(ctx, repositoryCount, 'scale');
  const single = await startSide(ctx, 'scale-1', 1, repositoryCount, upstreams.map((upstream) => upstream.url));
  let cluster: Side | undefined;
  try {
    cluster = await startSide(ctx, 'scale-3', instanceCount, repositoryCount, upstreams.map((upstream) => upstream.url));
    const three = cluster;
    ctx.log(`[scale-3] ${repositoryCount} repositories synced on 1 and on ${instanceCount} instances`);

    let heads: string[] = [];
    const round = async (side: Side) => {
      const marker = await runMarker(side.service);
      ctx.git.resetStats();
      const ms = await timed(async () => {
        // Each instance is sent its share of the requests, at once.
        const shares = side.clients.map((_, index) => side.ids.filter((__, position) => position % side.clients.length === index));
        await Promise.all(side.clients.map((client, index) => syncRepositories(client, shares[index]!)));
        await waitForHeads(side.service, side.ids.map(dbId), heads);
      });
      // The service's last run ends with its status; wait for every run row to be closed before counting.
      await waitForIdle(side.service);
      const names = upstreams.map((upstream) => upstream.name);
      return { ms, detail: await executions(side, marker, names, (name) => ctx.git.repoStats(name).fetches) };
    };
    const samples = await measure(ctx, 'scale-3', {
      runs: ctx.runs(5),
      warmup: ctx.warmup(1),
      prepare: async (iteration) => {
        heads = [];
        await inParallel(upstreams, workers, async (upstream, index) => {
          heads[index] = await upstream.commit({ [`changes/${iteration}.md`]: `change ${iteration} of ${upstream.name}\n` });
        });
      },
      ours: () => round(three),
      baseline: () => round(single),
    });
    const ours = samples.oursDetails.map((detail) => detail.executions);
    const sum = (key: keyof Executions) => ours.reduce((total, detail) => total + detail[key], 0);
    return benchResult('scale-3', null, samples, {
      repositories: repositoryCount,
      instances: instanceCount,
      concurrency_per_instance: workers,
      ours_is: `${instanceCount} instances`,
      baseline_is: '1 instance',
      checks: [
        { metric: 'duplicate_executions', value: sum('duplicateRuns') + sum('duplicateFetches'), max: 0 },
        { metric: 'runs_away_from_owner', value: sum('awayFromOwner'), max: 0 },
      ],
      ours_executions: medianOf(ours),
      baseline_executions: medianOf(samples.baselineDetails.map((detail) => detail.executions)),
      ours_runs_per_instance: samples.oursDetails.map((detail) => detail.perInstance),
      server_warnings: single.service.warnings + three.service.warnings,
    });
  } finally {
    await Promise.all([single.service.stop(), cluster?.service.stop()]);
  }
}

async function startSide(ctx: BenchContext, name: string, instances: number, repositoryCount: number, urls: string[]): Promise<Side> {
  const env = instances > 1 ? { ...instanceEnv, REDIS_URL: redisUrl } : instanceEnv;
  const service = await Service.start(path.join(ctx.workDir, `${name}-0`), env);
  const clients = [service.client];
  for (let index = 1; index < instances; index++) clients.push((await service.startPeer(path.join(ctx.workDir, `${name}-${index}`), env)).client);
  if (instances > 1) {
    // Until every instance has seen the others (heartbeats every 2 s).
    await waitUntil(async () => (await liveInstances(service)).length === instances, { intervalMs: 100, timeoutMs: 30_000, describe: async () => `${(await liveInstances(service)).length} instances live` });
    await new Promise((resolve) => setTimeout(resolve, 4_500));
  }
  const projectId = await createProject(service.client, name);
  const ids: string[] = [];
  await inParallel(urls, 2 * workers, async (url, index) => void (ids[index] = await addRepository(clients[index % clients.length]!, projectId, url)));
  await waitForAllSynced(service, repositoryCount);
  return { service, clients, ids };
}

async function liveInstances(service: Service): Promise<string[]> {
  return (await service.query<{ id: string }>('SELECT id FROM "Instance" ORDER BY id')).map((row) => row.id);
}

interface Executions {
  runs: number;
  /** Runs beyond one per repository. */
  duplicateRuns: number;
  /** Fetches at the git server beyond one per repository. */
  duplicateFetches: number;
  /** Runs executed by an instance other than the repository's owner among the live ones (0 with one instance). */
  awayFromOwner: number;
}

/** One round's executions, and the runs each live instance executed (most first, "50/30/20"). */
interface Round {
  executions: Executions;
  perInstance: string;
}

async function executions(side: Side, marker: string, names: string[], fetchesOf: (name: string) => number): Promise<Round> {
  const runs = await side.service.query<{ repositoryId: string; claimedBy: string }>(
    `SELECT "repositoryId", "claimedBy" FROM "SyncRun" WHERE "queuedAt" > $1::timestamp AND "finishedAt" IS NOT NULL`,
    [marker],
  );
  const perRepository = new Map<string, number>();
  for (const run of runs) perRepository.set(run.repositoryId, (perRepository.get(run.repositoryId) ?? 0) + 1);
  const instances = await liveInstances(side.service);
  const owners = instances.length ? instances : [...new Set(runs.map((run) => run.claimedBy))];
  const perInstance = new Map<string, number>();
  for (const run of runs) perInstance.set(run.claimedBy, (perInstance.get(run.claimedBy) ?? 0) + 1);
  const duplicateFetches = names.reduce((total, name) => total + Math.max(0, fetchesOf(name) - 1), 0);
  return {
    executions: {
      runs: runs.length,
      duplicateRuns: [...perRepository.values()].reduce((total, count) => total + Math.max(0, count - 1), 0),
      duplicateFetches,
      awayFromOwner: runs.filter((run) => rendezvousOwner(run.repositoryId, owners) !== run.claimedBy).length,
    },
    perInstance: owners
      .map((owner) => perInstance.get(owner) ?? 0)
      .sort((a, b) => b - a)
      .join('/'),
  };
}
