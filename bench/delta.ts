import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { generateLargeRepository, git } from '../test/support/gitFixtures.js';
import { startFakeGithub } from '../test/support/githubApi.js';
import { AddCredentialDocument, AddRepositoryDocument, SyncRepositoryDocument, type SyncStrategy } from '../test/generated/graphql.js';
import { createProject, dbId } from './api.js';
import { measure, type BenchContext } from './context.js';
import { benchResult, type BenchResult } from './report.js';
import { Service } from './service.js';
import { waitForAllSynced, waitForIdle } from './setup.js';
import { medianOf, timed, waitUntil } from './timing.js';

/**
 * delta-vs-fetch: one 10,000-file repository on "GitHub" (the REST fake over
 * the bench's git server), registered twice with a GitHub credential: once
 * with syncStrategy DELTA, once INCREMENTAL. Each run changes one file
 * upstream, then syncs both registrations one after the other (the order
 * alternates). Reported for each: wall time from syncRepository to SYNCED at
 * the new head, and the bytes the servers sent for that sync (the API's
 * answer bodies plus the git server's; both include the CHECK's ref
 * listing). The ratio is DELTA's time over INCREMENTAL's; the bar is on
 * bytes: DELTA must move fewer.
 */
export async function deltaVsFetch(ctx: BenchContext): Promise<BenchResult> {
  const name = 'delta-vs-fetch';
  const files = ctx.scale(10_000);
  const token = `ghp_${randomBytes(18).toString('hex')}`;
  const github = await startFakeGithub({ gitRoot: ctx.git.root, tokens: { [token]: { login: 'bench', scopes: ['repo'] } }, tokenLimit: 1_000_000 });
  const [service, upstream] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'delta-service'), { GITHUB_API_URL: github.url, REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    generateLargeRepository(ctx.git, 'delta/repo-10k', { files, commits: 2 }),
  ]);
  try {
    const client = service.client;
    const credentialId = (await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host: new URL(ctx.git.url).host, token } })).addCredential.credential.id;
    const register = async (strategy: SyncStrategy) => {
      const projectId = await createProject(client, `delta-${strategy.toLowerCase()}`);
      const { addRepository } = await client.request(AddRepositoryDocument, {
        input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId, syncStrategy: strategy, archivePolicy: 'NONE' },
      });
      return addRepository.repository.id;
    };
    const registrations = { DELTA: await register('DELTA'), INCREMENTAL: await register('INCREMENTAL') };
    await waitForAllSynced(service, 2);
    await waitForIdle(service);
    ctx.log(`[${name}] a ${files}-file repository synced twice (DELTA and INCREMENTAL registrations)`);

    let head = '';
    const syncOne = async (strategy: 'DELTA' | 'INCREMENTAL') => {
      const globalId = registrations[strategy];
      const repositoryId = dbId(globalId);
      const apiBefore = github.bytesSent;
      const gitBefore = ctx.git.repoStats(upstream.name);
      const ms = await timed(async () => {
        await client.request(SyncRepositoryDocument, { repositoryId: globalId });
        await waitUntil(
          async () => {
            const [row] = await service.query<{ sha: string | null; status: string }>(`SELECT "lastCommitSha" AS sha, status FROM "Repository" WHERE id = $1::uuid`, [repositoryId]);
            return row?.sha === head && row.status === 'SYNCED';
          },
          { intervalMs: 5, timeoutMs: 120_000, describe: async () => `${strategy} registration not yet at ${head}` },
        );
      });
      const gitAfter = ctx.git.repoStats(upstream.name);
      const [run] = await service.query<{ strategy: string; bytesReceived: number | null; filesChanged: number | null }>(
        `SELECT strategy, "bytesReceived", "filesChanged" FROM "SyncRun" WHERE "repositoryId" = $1::uuid ORDER BY "queuedAt" DESC LIMIT 1`,
        [repositoryId],
      );
      if (run?.strategy !== strategy) throw new Error(`the ${strategy} registration synced with ${run?.strategy}`);
      await waitForIdle(service);
      const apiBytes = github.bytesSent - apiBefore;
      const gitBytes = gitAfter.bytesSent - gitBefore.bytesSent;
      return {
        ms,
        detail: {
          bytes_sent: apiBytes + gitBytes,
          api_bytes: apiBytes,
          git_bytes: gitBytes,
          git_fetches: gitAfter.fetches - gitBefore.fetches,
          run_bytes_received: Number(run.bytesReceived ?? 0),
          files_changed: run.filesChanged,
        },
      };
    };
    const samples = await measure(ctx, name, {
      runs: ctx.runs(5),
      warmup: ctx.warmup(1),
      // One edit: a line added to one file (the repository's files are a few hundred bytes each).
      prepare: async (iteration) => {
        const file = `packages/pkg-${iteration % 25}/src/module-0/file-${iteration % 25}.ts`;
        const content = await git(['show', `HEAD:${file}`], { cwd: upstream.bareDir });
        head = await upstream.commit({ [file]: `${content}\nexport const edit${iteration} = ${iteration};\n` });
      },
      ours: () => syncOne('DELTA'),
      baseline: () => syncOne('INCREMENTAL'),
    });
    const delta = medianOf(samples.oursDetails);
    const fetch = medianOf(samples.baselineDetails);
    return benchResult(name, null, samples, {
      files,
      note: 'ratio = DELTA wall time / INCREMENTAL wall time (reported, no bar); the bar is bytes: DELTA must move fewer',
      // DELTA's bytes as a share of the fetch's, in percent.
      checks: [{ metric: 'bytes_percent_of_fetch', value: (100 * delta.bytes_sent) / fetch.bytes_sent, max: 99.9 }],
      delta_bytes: delta.bytes_sent,
      incremental_bytes: fetch.bytes_sent,
      delta: samples.oursDetails,
      incremental: samples.baselineDetails,
    });
  } finally {
    await service.stop();
    await github.close();
  }
}
