import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { git } from '../test/support/gitFixtures.js';
import { startFakeGithub } from '../test/support/githubApi.js';
import { AddCredentialDocument, AddRepositoryDocument } from '../test/generated/graphql.js';
import { createProject } from './api.js';
import { measure, type BenchContext } from './context.js';
import { checked, tinyRepositories } from './noChange.js';
import { benchResult, type BenchResult } from './report.js';
import { runMarker } from './runs.js';
import { Service } from './service.js';
import { deferScheduledChecks, waitForAllSynced, waitForIdle } from './setup.js';
import { inParallel, round, timed, waitUntil } from './timing.js';

const workers = 4;

/**
 * poll-1000: 1,000 unchanged repositories on "GitHub" (the REST fake, serving
 * the bench's git server), added with a GitHub credential, checked by the
 * scheduler through the API. The unmeasured first pass stores each branch's
 * ETag; every measured pass must then be all 304s (no request that costs
 * rate limit, no git request), and its wall time is compared with `git
 * ls-remote` of the same 1,000 URLs with 4 workers.
 */
export async function poll1000(ctx: BenchContext): Promise<BenchResult> {
  const repositoryCount = ctx.scale(1000);
  const token = `ghp_${randomBytes(18).toString('hex')}`;
  const github = await startFakeGithub({ gitRoot: ctx.git.root, tokens: { [token]: { login: 'bench', scopes: ['repo'] } }, tokenLimit: 1_000_000 });
  const limits = { SYNC_CONCURRENCY: String(workers), SYNC_HOST_CONCURRENCY: String(workers), GITHUB_API_URL: github.url };
  const [service, urls] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'poll-service'), { ...limits, REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    tinyRepositories(ctx, repositoryCount, 'poll'),
  ]);
  try {
    const client = service.client;
    const projectId = await createProject(client, 'poll');
    const credentialId = (await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host: new URL(ctx.git.url).host, token } })).addCredential.credential.id;
    await inParallel(urls, 2 * workers, async (url) => {
      await client.request(AddRepositoryDocument, { input: { projectId, url, provider: 'GITHUB', credentialId, archivePolicy: 'NONE' } });
    });
    await waitForAllSynced(service, repositoryCount);
    await waitForIdle(service);
    await deferScheduledChecks(service);
    await service.restart({ ...limits, REPOLENS_SCHEDULER_INTERVAL_MS: '100' });
    ctx.log(`[poll-1000] ${repositoryCount} GitHub repositories registered and synced`);

    const gitRequests = () => [...ctx.git.stats.values()].reduce((sum, stats) => sum + stats.requests, 0);
    const samples = await measure(ctx, 'poll-1000', {
      runs: ctx.runs(3),
      // The first pass has no ETags yet (every answer a 200): it stores them.
      warmup: ctx.warmup(1),
      ours: async () => {
        const marker = await runMarker(service);
        github.resetRequests();
        const gitBefore = gitRequests();
        const ms = await timed(async () => {
          await service.query(`UPDATE "Repository" SET "nextCheckAt" = now()`);
          await waitUntil(async () => (await checked(service, marker)).finished === repositoryCount, {
            intervalMs: 50,
            timeoutMs: 300_000,
            describe: async () => `${(await checked(service, marker)).finished}/${repositoryCount} repositories checked`,
          });
        });
        const checks = github.requests.filter((request) => request.path.includes('/commits/'));
        const { skipped } = await checked(service, marker);
        await waitForIdle(service);
        await deferScheduledChecks(service);
        return {
          ms,
          detail: {
            api_requests: checks.length,
            not_modified: checks.filter((request) => request.status === 304).length,
            // Every answer but a 304 counts against GitHub's rate limit.
            rate_limited_requests: checks.filter((request) => request.status !== 304).length,
            git_requests: gitRequests() - gitBefore,
            skipped,
          },
        };
      },
      baseline: async () => ({ ms: await timed(() => inParallel(urls, workers, async (url) => void (await git(['ls-remote', url])))), detail: {} }),
    });
    const details = samples.oursDetails;
    return benchResult('poll-1000', 0.5, samples, {
      repositories: repositoryCount,
      concurrency: workers,
      checks: [
        { metric: 'rate_limited_requests', value: Math.max(...details.map((detail) => detail.rate_limited_requests)), max: 0 },
        { metric: 'git_requests', value: Math.max(...details.map((detail) => detail.git_requests)), max: 0 },
      ],
      ours: details,
      rate_limit_used: github.rateLimit('bench').used,
      peak_rss_mb: round(await service.peakRssMb()),
    });
  } finally {
    await service.stop();
    await github.close();
  }
}
