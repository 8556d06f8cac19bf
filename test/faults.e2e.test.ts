import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect } from 'vitest';
import { openDatabase } from '../src/storage/database.js';
import { createApiToken } from '../src/storage/tenants.js';
import { AddRepositoryDocument, CreateProjectDocument, SyncRepositoryDocument } from './generated/graphql.js';
import { TestClient } from './support/client.js';
import { createTestDatabase } from './support/database.js';
import { createUpstream, git, type Upstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { startPrivatePostgres, type PrivatePostgres } from './support/privatePostgres.js';
import { faultSuite } from './support/reliabilityReport.js';
import { killAllServers, startServer, type ServerProcess } from './support/serverProcess.js';
import { deliver, githubHeaders, loadFixture, retarget } from './support/webhooks.js';
import { exists, waitFor } from './support/wait.js';
import { expectIntactCopy } from './support/workingCopy.js';

// The fault suite (issue 7 item 1) beside test/recovery.e2e.test.ts (the
// process killed) and test/indexing-recovery.e2e.test.ts: what the service's
// surroundings do to it. Every scenario runs real `repolens serve` processes
// against a real PostgreSQL and a git smart-HTTP server that injects the
// faults, and checks afterwards that nothing accepted was lost, that every
// repository ends where upstream is, and that no working copy is corrupt.

interface RunRow {
  id: string;
  trigger: string;
  status: string;
  activeSlot: string | null;
  toSha: string | null;
  error: string | null;
}
interface RepositoryRow {
  status: string;
  lastCommitSha: string | null;
  lastError: string | null;
  consecutiveFailures: number;
  nextCheckAt: Date | null;
}

/** One scenario's surroundings: a database (its own server when it is to fail), a data folder, a token. */
interface World {
  databaseUrl: string;
  dataDir: string;
  token: string;
  db: pg.Client;
  server?: ServerProcess;
  cleanup(): Promise<void>;
}

const execFileAsync = promisify(execFile);

let gitServer: GitServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  gitServer = await startGitServer();
});

afterEach(async () => {
  await killAllServers();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

afterAll(async () => {
  await killAllServers();
  await gitServer?.close();
});

function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
}

/** Starts the service on `databaseUrl` (it migrates the database) and opens the test's own connection to it. */
async function createWorld(databaseUrl: string, env: Record<string, string> = {}, dataDir?: string): Promise<World> {
  const folder = dataDir ?? (await mkdtemp(path.join(tmpdir(), 'repolens-faults-')));
  const server = await serve(databaseUrl, folder, env);
  // The project's own token code, so that the server accepts it.
  const handle = await openDatabase({ databaseUrl, dataDir: folder });
  let token: string;
  try {
    token = (await createApiToken(handle.prisma, 'acme')).token;
  } finally {
    await handle.close();
  }
  const db = new pg.Client({ connectionString: databaseUrl });
  db.on('error', () => undefined);
  await db.connect();
  const world: World = {
    databaseUrl,
    dataDir: folder,
    token,
    db,
    server,
    async cleanup() {
      await db.end().catch(() => undefined);
      if (!dataDir) await rm(folder, { recursive: true, force: true });
    },
  };
  cleanups.push(() => world.cleanup());
  return world;
}

function serve(databaseUrl: string, dataDir: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  return startServer({ databaseUrl, dataDir, env: { REPOLENS_SCHEDULER_INTERVAL_MS: '0', ...env } });
}

async function runsOf(db: pg.Client, repositoryId: string): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    'SELECT id, trigger, status, "activeSlot", "toSha", error FROM "SyncRun" WHERE "repositoryId" = $1 ORDER BY "queuedAt"',
    [repositoryId],
  );
  return rows;
}

async function repositoryRow(db: pg.Client, repositoryId: string): Promise<RepositoryRow> {
  const { rows } = await db.query<RepositoryRow>(
    'SELECT status, "lastCommitSha", "lastError", "consecutiveFailures", "nextCheckAt" FROM "Repository" WHERE id = $1',
    [repositoryId],
  );
  if (!rows[0]) throw new Error(`no repository ${repositoryId}`);
  return rows[0];
}

function copyOf(w: World, repositoryId: string): string {
  return path.join(w.dataDir, 'repos', repositoryId);
}

/** SYNCED at `sha` with no run left queued or running, and an intact copy there. */
async function expectSyncedAt(w: World, repositoryId: string, sha: string, timeoutMs = 60_000): Promise<void> {
  try {
    await waitFor(`repository ${repositoryId} SYNCED at ${sha.slice(0, 7)}`, () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message}\nits runs: ${JSON.stringify(await runsOf(w.db, repositoryId))}`);
  }
  await waitFor('no active run', () => runsOf(w.db, repositoryId), (runs) => runs.every((run) => run.activeSlot === null), timeoutMs);
  await expectIntactCopy(copyOf(w, repositoryId), sha);
}

interface Added {
  name: string;
  globalId: string;
  upstream: Upstream;
  repositoryId: string;
  webhookSecret: string;
}

async function addRepositories(
  w: World,
  client: TestClient,
  names: string[],
  files: () => Record<string, string>,
  options: { branch?: string; host?: GitServer; wait?: boolean } = {},
): Promise<Added[]> {
  const { branch = 'master', host = gitServer, wait = true } = options;
  const projectId = (await client.request(CreateProjectDocument, { name: `faults-${randomBytes(4).toString('hex')}` })).createProject.project.id;
  const added: Added[] = [];
  for (const name of names) {
    const upstream = await createUpstream(host, name, { files: files(), branch });
    const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
    added.push({ name, upstream, globalId: addRepository.repository.id, repositoryId: dbId(addRepository.repository.id), webhookSecret: addRepository.webhook.secret! });
  }
  if (wait) for (const repo of added) await expectSyncedAt(w, repo.repositoryId, await repo.upstream.head());
  return added;
}

/** A signed GitHub push delivery (a published payload) for `repo`, moving its branch from `before` to `after`. */
async function pushDelivery(repo: Added, before: string, after: string): Promise<{ body: Buffer; headers: Record<string, string> }> {
  const raw = await loadFixture('github-push-commits-drone.json');
  const published = JSON.parse(raw.toString('utf8')) as { before: string; after: string };
  const body = retarget(raw, { url: repo.upstream.url, name: repo.name }, { [published.before]: before, [published.after]: after });
  return { body, headers: githubHeaders('push', body, repo.webhookSecret) };
}

async function readiness(server: ServerProcess): Promise<number> {
  return fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(5_000) }).then(
    (response) => response.status,
    () => 0,
  );
}

const suite = faultSuite({
  name: 'database, disk, git host and upstream',
  file: 'test/faults.e2e.test.ts',
  intro: [
    'Each scenario runs `repolens serve` processes against a real PostgreSQL and a git smart-HTTP server',
    '(`git http-backend`) that injects the fault, then checks that every trigger the service accepted was acted',
    'on, that every repository ends SYNCED at upstream\'s head (or FAILED with the error named, when that is the',
    'expected outcome), and that every working copy passes `git fsck --full` with a clean tree.',
  ],
});

describe('faults around the service', { timeout: 240_000 }, () => {
  suite.scenario(
    'PostgreSQL restarted while syncs and webhook deliveries are in flight',
    {
      fault: 'the service\'s PostgreSQL server stopped (`pg_ctl stop -m fast`, every connection terminated) for 3 s as fetches end (others queued behind them) and signed pushes arrive every 100 ms, then started again',
      checks: '/readyz answers 503 while it is down and 200 after, and GraphQL answers 503 UNAVAILABLE with Retry-After; the process stays up; deliveries it could not store are answered 503 with Retry-After, and every one answered 202 is processed; every repository ends SYNCED at its newest commit with an intact copy; no run is left QUEUED or RUNNING',
    },
    async ({ nothingLost }) => {
      const postgres: PrivatePostgres = await startPrivatePostgres();
      cleanups.push(() => postgres.destroy());
      const w = await createWorld(postgres.url);
      const server = w.server!;
      const client = new TestClient(server.url, w.token);
      const repos = await addRepositories(w, client, ['pg-restart-a', 'pg-restart-b', 'pg-restart-c'], () => ({ 'README.md': '# restart\n' }));
      const heads = new Map<string, string>();
      for (const repo of repos) heads.set(repo.repositoryId, await repo.upstream.head());

      // The git host answers each request 1.5 s late: the first fetches end while the database is away.
      for (const repo of repos) gitServer.setFault(repo.name, { kind: 'delay', ms: 1_500 });
      for (const repo of repos) {
        heads.set(repo.repositoryId, await repo.upstream.commit({ 'big.txt': randomBytes(64 * 1024).toString('base64') }, 'big commit'));
        await client.request(SyncRepositoryDocument, { repositoryId: repo.globalId });
      }
      await waitFor('a run fetching', async () => {
        const { rows } = await w.db.query<{ phase: string }>(`SELECT phase FROM "SyncRun" WHERE "activeSlot" = 'RUNNING'`);
        return rows.map((row) => row.phase);
      }, (phases) => phases.includes('FETCHING'), 30_000);

      // Pushes keep arriving, before, during and after the outage.
      const answers: { repo: Added; status: number; retryAfter: string | null; sha: string }[] = [];
      let delivering = true;
      const deliveries = (async () => {
        let index = 0;
        while (delivering) {
          const repo = repos[index++ % repos.length]!;
          const before = heads.get(repo.repositoryId)!;
          const sha = await repo.upstream.commit({ [`push-${index}.txt`]: `${index}\n` }, `push ${index}`);
          heads.set(repo.repositoryId, sha);
          const { body, headers } = await pushDelivery(repo, before, sha);
          const answer = await fetch(`${server.url}/webhooks/github`, { method: 'POST', headers, body: new Uint8Array(body), signal: AbortSignal.timeout(10_000) }).catch(() => null);
          await answer?.arrayBuffer();
          answers.push({ repo, status: answer?.status ?? 0, retryAfter: answer?.headers.get('retry-after') ?? null, sha });
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();

      await w.db.end();
      await postgres.stop();
      const down = await waitFor('/readyz to answer 503', () => readiness(server), (status) => status === 503, 15_000);
      expect(down).toBe(503);
      // The API says so too, and tells the client when to try again.
      const query = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token}` },
        body: JSON.stringify({ query: '{ projects(first: 1) { edges { node { id } } } }' }),
      });
      expect(query.status).toBe(503);
      expect(query.headers.get('retry-after')).toBe('5');
      const answer = (await query.json()) as { errors: { message: string; extensions: { code: string } }[] };
      expect(answer.errors[0]).toMatchObject({ message: 'the database is unreachable; nothing was changed, try again shortly', extensions: { code: 'UNAVAILABLE' } });
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await postgres.start();
      await waitFor('/readyz to answer 200', () => readiness(server), (status) => status === 200, 30_000);
      w.db = new pg.Client({ connectionString: postgres.url });
      w.db.on('error', () => undefined);
      await w.db.connect();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      delivering = false;
      await deliveries;
      for (const repo of repos) gitServer.setFault(repo.name, null);
      expect(server.exitStatus()).toBeNull();

      const accepted = answers.filter((answer) => answer.status === 202);
      const refused = answers.filter((answer) => answer.status !== 202);
      expect(accepted.length).toBeGreaterThan(0);
      // A delivery that could not be stored is answered 503 with Retry-After: its sender tries again.
      expect(refused.length).toBeGreaterThan(0);
      for (const answer of refused) {
        expect(answer.status, 'a delivery the database could not take').toBe(503);
        expect(answer.retryAfter).toBe('5');
      }
      // A last push for each repository, once everything is back, as a provider's redelivery would do.
      for (const repo of repos) {
        const before = heads.get(repo.repositoryId)!;
        const sha = await repo.upstream.commit({ 'after.txt': 'after\n' }, 'after the restart');
        heads.set(repo.repositoryId, sha);
        const { body, headers } = await pushDelivery(repo, before, sha);
        expect((await deliver(server.url, 'github', headers, body)).status).toBe(202);
      }
      await nothingLost(async () => {
        for (const repo of repos) await expectSyncedAt(w, repo.repositoryId, heads.get(repo.repositoryId)!, 90_000);
        const { rows } = await w.db.query<{ unprocessed: string }>('SELECT count(*) AS unprocessed FROM "WebhookDelivery" WHERE "processedAt" IS NULL');
        expect(Number(rows[0]!.unprocessed)).toBe(0);
        const { rows: stored } = await w.db.query<{ count: string }>('SELECT count(*) FROM "WebhookDelivery"');
        expect(Number(stored[0]!.count)).toBeGreaterThanOrEqual(accepted.length + repos.length);
      });
      expect(server.exitStatus()).toBeNull();
    },
  );

  suite.scenario(
    'the git host down, answering 500, hanging, trickling, or cutting the pack',
    {
      fault: 'five repositories, each behind one failure of its git host: connection refused (server gone), HTTP 500, a request that never answers, a pack sent at 256 bytes/s, a pack cut after 16 KiB; a sixth repository on a healthy host',
      checks: 'each faulty run fails with an error naming what happened, within REPOLENS_GIT_TIMEOUT_MS (15 s) plus its set-up; each repository counts the failure and its next check backs off (at least twice the minimum interval); the healthy one syncs twice meanwhile; copies stay intact at their last good commit; once the host is fixed, the same repositories sync',
    },
    async ({ nothingLost }) => {
      const healthyHost = await startGitServer();
      cleanups.push(() => healthyHost.close());
      const goneHost = await startGitServer();
      let goneClosed = false;
      cleanups.push(async () => {
        if (!goneClosed) await goneHost.close();
      });
      const database = await createTestDatabase();
      cleanups.push(() => database.drop());
      const w = await createWorld(database.url, { REPOLENS_GIT_TIMEOUT_MS: '15000', REPOLENS_GIT_IDLE_TIMEOUT_MS: '4000' });
      const client = new TestClient(w.server!.url, w.token);
      const faults = {
        'host-500': { kind: 'status', status: 500 },
        'host-hang': { kind: 'hang' },
        'host-trickle': { kind: 'trickle', bytesPerSecond: 256 },
        'host-cut': { kind: 'cut', afterBytes: 16 * 1024 },
      } as const;
      const faulty = await addRepositories(w, client, Object.keys(faults), () => ({ 'README.md': '# faulty host\n' }));
      const [gone] = await addRepositories(w, client, ['host-gone'], () => ({ 'README.md': '# gone\n' }), { host: goneHost });
      const [healthy] = await addRepositories(w, client, ['host-healthy'], () => ({ 'README.md': '# healthy\n' }), { host: healthyHost });
      const lastGood = new Map<string, string>();
      for (const repo of [...faulty, gone!, healthy!]) lastGood.set(repo.repositoryId, await repo.upstream.head());

      for (const repo of [...faulty, gone!]) await repo.upstream.commit({ 'data.bin': randomBytes(64 * 1024).toString('base64') }, 'new data');
      await goneHost.close();
      goneClosed = true;
      for (const repo of faulty) gitServer.setFault(repo.name, faults[repo.name as keyof typeof faults]);
      const triggeredAt = Date.now();
      for (const repo of [...faulty, gone!]) await client.request(SyncRepositoryDocument, { repositoryId: repo.globalId });

      // The healthy host's repository syncs twice while the others fail.
      for (let round = 0; round < 2; round++) {
        const sha = await healthy!.upstream.commit({ [`round-${round}.txt`]: `${round}\n` });
        await client.request(SyncRepositoryDocument, { repositoryId: healthy!.globalId });
        await expectSyncedAt(w, healthy!.repositoryId, sha, 30_000);
      }
      const healthySyncedIn = Date.now() - triggeredAt;

      const expectedError: Record<string, RegExp> = {
        'host-gone': /unreachable|refused|ECONNREFUSED/i,
        'host-500': /500/,
        'host-hang': /timed out|no progress|no answer|idle/i,
        'host-trickle': /timed out|no progress|idle/i,
        'host-cut': /ECONNRESET|unable to access|closed|early EOF/i,
      };
      for (const repo of [...faulty, gone!]) {
        const row = await waitFor(`${repo.name} to fail`, () => repositoryRow(w.db, repo.repositoryId), (state) => state.status === 'FAILED', 60_000);
        const { rows } = await w.db.query<{ error: string | null; startedAt: Date; finishedAt: Date }>(
          `SELECT error, "startedAt", "finishedAt" FROM "SyncRun" WHERE "repositoryId" = $1 AND status = 'FAILED' ORDER BY "queuedAt" DESC LIMIT 1`,
          [repo.repositoryId],
        );
        const run = rows[0]!;
        expect(run.error, `${repo.name}'s error`).toMatch(expectedError[repo.name]!);
        expect(row.lastError).toBe(run.error);
        expect(run.finishedAt.getTime() - run.startedAt.getTime(), `${repo.name} failed within its timeout`).toBeLessThan(15_000 + 10_000);
        expect(row.consecutiveFailures).toBe(1);
        expect(row.nextCheckAt!.getTime() - run.finishedAt.getTime(), `${repo.name}'s next check backs off`).toBeGreaterThanOrEqual(2 * 60_000 * 0.95);
        await expectIntactCopy(copyOf(w, repo.repositoryId), lastGood.get(repo.repositoryId)!);
      }
      // The healthy repository was never held up behind them.
      expect(healthySyncedIn).toBeLessThan(15_000);

      for (const repo of faulty) gitServer.setFault(repo.name, null);
      await nothingLost(async () => {
        for (const repo of faulty) {
          await client.request(SyncRepositoryDocument, { repositoryId: repo.globalId });
          await expectSyncedAt(w, repo.repositoryId, await repo.upstream.head());
          expect((await repositoryRow(w.db, repo.repositoryId)).consecutiveFailures).toBe(0);
        }
      });
    },
  );

  suite.scenario(
    'the disk full during a clone and during a fetch (DATA_DIR on a 24 MiB tmpfs)',
    {
      fault: 'DATA_DIR on a 24 MiB tmpfs; a repository whose clone needs about 40 MiB is added, then a synced repository gets a 30 MiB commit',
      checks: 'both runs fail with an error that says the disk is full ("No space left on device" or git\'s "Out of diskspace"); no temporary clone is left behind, and no re-clone is tried; the synced repository\'s copy is intact at its last good commit; the service still answers /readyz, and syncs once the disk is grown',
    },
    async ({ nothingLost }) => {
      const mountPoint = await mkdtemp(path.join(tmpdir(), 'repolens-full-'));
      await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mountPoint]).catch((error: Error) => {
        throw new Error(`mounting a tmpfs for DATA_DIR needs root (CI runs as root): ${error.message}`);
      });
      cleanups.push(async () => {
        await execFileAsync('umount', ['-l', mountPoint]).catch(() => undefined);
        await rm(mountPoint, { recursive: true, force: true });
      });
      const database = await createTestDatabase();
      cleanups.push(() => database.drop());
      const w = await createWorld(database.url, {}, mountPoint);
      const client = new TestClient(w.server!.url, w.token);
      const [small] = await addRepositories(w, client, ['disk-small'], () => ({ 'README.md': '# small\n' }));
      const good = await small!.upstream.head();

      // A clone bigger than the disk.
      const [huge] = await addRepositories(w, client, ['disk-huge'], () => ({ 'a.bin': randomBytes(20 * 1024 * 1024).toString('base64') }), { wait: false });
      const hugeRow = await waitFor('the clone to fail', () => repositoryRow(w.db, huge!.repositoryId), (row) => row.status === 'FAILED', 120_000);
      expect(hugeRow.lastError).toMatch(/No space left on device/i);
      expect(await exists(copyOf(w, huge!.repositoryId))).toBe(false);
      expect(await readdir(path.join(w.dataDir, 'tmp')).catch(() => [])).toEqual([]);

      // A fetch bigger than what is left.
      await small!.upstream.commit({ 'big.bin': randomBytes(15 * 1024 * 1024).toString('base64') }, 'too big for the disk');
      await client.request(SyncRepositoryDocument, { repositoryId: small!.globalId });
      const smallRow = await waitFor('the fetch to fail', () => repositoryRow(w.db, small!.repositoryId), (row) => row.status === 'FAILED', 120_000);
      expect(smallRow.lastError).toMatch(/No space left on device|Out of diskspace/i);
      // A full disk is not a broken copy: no re-clone is tried (it could only fill the disk again).
      const { rows: failedRuns } = await w.db.query<{ strategy: string }>(`SELECT strategy FROM "SyncRun" WHERE "repositoryId" = $1 AND status = 'FAILED'`, [small!.repositoryId]);
      expect(failedRuns).toEqual([{ strategy: 'INCREMENTAL' }]);
      await nothingLost(() => expectIntactCopy(copyOf(w, small!.repositoryId), good));
      expect(await readiness(w.server!)).toBe(200);

      // The operator grows the disk; the big file is dropped upstream (a rewrite), and a small change syncs.
      await execFileAsync('mount', ['-o', 'remount,size=96m', mountPoint]);
      await small!.upstream.forcePush(good);
      const fixed = await small!.upstream.commit({ 'after.txt': 'room again\n' }, 'small change');
      await client.request(SyncRepositoryDocument, { repositoryId: small!.globalId });
      await nothingLost(() => expectSyncedAt(w, small!.repositoryId, fixed, 60_000));
    },
    300_000,
  );

  suite.scenario(
    'upstream history rewritten, the tracked branch deleted, the default branch renamed',
    {
      fault: 'a force-push that drops the synced commit; a repository whose tracked branch is deleted; a repository whose default branch is renamed (master to main)',
      checks: 'the rewritten one is SYNCED at the new head (the dropped commit no longer in its branch); the deleted branch fails with an error naming the branch and keeps its last good copy; the renamed default is followed and SYNCED on the new branch',
    },
    async ({ nothingLost }) => {
      const database = await createTestDatabase();
      cleanups.push(() => database.drop());
      const w = await createWorld(database.url);
      const client = new TestClient(w.server!.url, w.token);
      const [rewritten, deleted, renamed] = await addRepositories(w, client, ['up-rewritten', 'up-deleted', 'up-renamed'], () => ({ 'README.md': '# upstream\n' }));
      const projectId = (await client.request(CreateProjectDocument, { name: 'faults-branch' })).createProject.project.id;
      // The deleted-branch repository tracks a branch of its own.
      const featureSha = await deleted!.upstream.commit({ 'feature.txt': 'feature\n' }, 'feature work', 'feature');
      const { addRepository: tracked } = await client.request(AddRepositoryDocument, { input: { projectId, url: deleted!.upstream.url, branch: 'feature' } });
      const trackedId = dbId(tracked.repository.id);
      await expectSyncedAt(w, trackedId, featureSha);

      // History rewritten: the synced head is amended away.
      const dropped = await rewritten!.upstream.head();
      const newHead = await rewritten!.upstream.forcePush('amend');
      expect(newHead).not.toBe(dropped);
      // Branch deleted upstream.
      await deleted!.upstream.deleteBranch('feature');
      // Default branch renamed.
      await renamed!.upstream.renameDefaultBranch('main');
      const renamedHead = await renamed!.upstream.commit({ 'after-rename.txt': 'on main\n' }, 'on the renamed branch');

      for (const id of [rewritten!.globalId, tracked.repository.id, renamed!.globalId]) await client.request(SyncRepositoryDocument, { repositoryId: id });
      await nothingLost(async () => {
        await expectSyncedAt(w, rewritten!.repositoryId, newHead);
        await expectSyncedAt(w, renamed!.repositoryId, renamedHead);
      });
      const history = await git(['rev-list', 'HEAD'], { cwd: copyOf(w, rewritten!.repositoryId) });
      expect(history.split('\n')).not.toContain(dropped);
      expect(await git(['branch', '--show-current'], { cwd: copyOf(w, renamed!.repositoryId) })).toBe('main');
      const { rows } = await w.db.query<{ branch: string }>('SELECT branch FROM "Repository" WHERE id = $1', [renamed!.repositoryId]);
      expect(rows[0]!.branch).toBe('main');
      const failed = await waitFor('the deleted branch to fail', () => repositoryRow(w.db, trackedId), (row) => row.status === 'FAILED', 30_000);
      expect(failed.lastError).toMatch(/feature/);
      await nothingLost(() => expectIntactCopy(copyOf(w, trackedId), featureSha));
    },
  );

  suite.scenario(
    'a repository over REPOLENS_MAX_REPO_BYTES',
    {
      fault: 'REPOLENS_MAX_REPO_BYTES=1048576 and a repository whose clone is about 3 MiB (incompressible), added beside a small one',
      checks: 'the big one ends FAILED with "repository is larger than REPOLENS_MAX_REPO_BYTES" naming the limit, with no working copy and no temporary clone left; the small one is SYNCED',
    },
    async ({ nothingLost }) => {
      const database = await createTestDatabase();
      cleanups.push(() => database.drop());
      const w = await createWorld(database.url, { REPOLENS_MAX_REPO_BYTES: String(1024 * 1024) });
      const client = new TestClient(w.server!.url, w.token);
      const [big] = await addRepositories(w, client, ['size-big'], () => ({ 'a.bin': randomBytes(2 * 1024 * 1024).toString('base64') }), { wait: false });
      const [small] = await addRepositories(w, client, ['size-small'], () => ({ 'README.md': '# small\n' }));
      const row = await waitFor('the big one to fail', () => repositoryRow(w.db, big!.repositoryId), (state) => state.status === 'FAILED', 60_000);
      expect(row.lastError).toMatch(/^repository is larger than REPOLENS_MAX_REPO_BYTES \(.*the limit is 1\.0 MiB\)$/);
      expect(await exists(copyOf(w, big!.repositoryId))).toBe(false);
      expect(await readdir(path.join(w.dataDir, 'tmp')).catch(() => [])).toEqual([]);
      const head = await small!.upstream.head();
      await nothingLost(() => expectSyncedAt(w, small!.repositoryId, head));
    },
  );
});

suite.reportCheck();

