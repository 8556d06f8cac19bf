import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject } from 'vitest';
import { openDatabase } from '../src/storage/database.js';
import { createApiToken } from '../src/storage/tenants.js';
import { AddRepositoryDocument, CreateProjectDocument, RepositoryDocument, SyncRepositoryDocument, SyncStatusDocument } from './generated/graphql.js';
import { TestClient } from './support/client.js';
import { createTestDatabase } from './support/database.js';
import { createUpstream, git } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { faultSuite } from './support/reliabilityReport.js';
import { s3ClientFor, s3TestEnv } from './support/s3proxy.js';
import { deliver, githubHeaders, loadFixture, retarget } from './support/webhooks.js';
import { killAllServers, startServer, type ServerProcess } from './support/serverProcess.js';
import { startTrickleProxy } from './support/trickleProxy.js';
import { exists, waitFor } from './support/wait.js';
import { expectIntactCopy } from './support/workingCopy.js';

/** Slow enough that a transfer of the big file below takes many seconds. */
const trickle = { kind: 'trickle', bytesPerSecond: 16 * 1024 } as const;
/** Incompressible: the pack is about as big as the file (≈ 15 s at the trickle rate). */
const bigFile = () => randomBytes(180 * 1024).toString('base64');

interface RunRow {
  id: string;
  trigger: string;
  status: string;
  phase: string;
  strategy: string | null;
  activeSlot: string | null;
  toSha: string | null;
  error: string | null;
  claimedBy: string | null;
}
interface RepositoryRow {
  status: string;
  lastCommitSha: string | null;
}

/** One test's world: its own database, data folder and API token. */
interface World {
  databaseUrl: string;
  dataDir: string;
  token: string;
  db: pg.Client;
  cleanup(): Promise<void>;
}

let gitServer: GitServer;
let world: World | undefined;

beforeAll(async () => {
  gitServer = await startGitServer();
});

afterEach(async () => {
  await killAllServers();
  await world?.cleanup();
  world = undefined;
});

afterAll(async () => {
  await killAllServers();
  await gitServer?.close();
});

async function createWorld(): Promise<World> {
  const database = await createTestDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'repolens-recovery-'));
  // The project's own token code, so that the server accepts it.
  const handle = await openDatabase({ databaseUrl: database.url, dataDir });
  let token: string;
  try {
    token = (await createApiToken(handle.prisma, 'acme')).token;
  } finally {
    await handle.close();
  }
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  world = {
    databaseUrl: database.url,
    dataDir,
    token,
    db,
    async cleanup() {
      await db.end().catch(() => undefined);
      await database.drop().catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return world;
}

function serve(w: World, env: Record<string, string> = {}): Promise<ServerProcess> {
  return startServer({
    databaseUrl: w.databaseUrl,
    dataDir: w.dataDir,
    env: { REPOLENS_SCHEDULER_INTERVAL_MS: '0', ...env },
  });
}

function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
}

async function runRow(db: pg.Client, runId: string): Promise<RunRow> {
  const { rows } = await db.query<RunRow>(
    'SELECT id, trigger, status, phase, strategy, "activeSlot", "toSha", error, "claimedBy" FROM "SyncRun" WHERE id = $1',
    [runId],
  );
  if (!rows[0]) throw new Error(`no run ${runId}`);
  return rows[0];
}

async function runsOf(db: pg.Client, repositoryId: string): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    'SELECT id, trigger, status, phase, strategy, "activeSlot", "toSha", error, "claimedBy" FROM "SyncRun" WHERE "repositoryId" = $1 ORDER BY "queuedAt"',
    [repositoryId],
  );
  return rows;
}

async function repositoryRow(db: pg.Client, repositoryId: string): Promise<RepositoryRow> {
  const { rows } = await db.query<RepositoryRow>('SELECT status, "lastCommitSha" FROM "Repository" WHERE id = $1', [repositoryId]);
  if (!rows[0]) throw new Error(`no repository ${repositoryId}`);
  return rows[0];
}

async function waitForIdle(db: pg.Client, repositoryId: string): Promise<RunRow[]> {
  return waitFor('no active run', () => runsOf(db, repositoryId), (runs) => runs.every((run) => run.activeSlot === null));
}

async function temporaryEntries(dataDir: string): Promise<string[]> {
  return readdir(path.join(dataDir, 'tmp')).catch(() => []);
}

/**
 * After a restart, the interrupted manual run (the same row, queued again) finishes with `strategy` at
 * `sha`, the repository is SYNCED there with an intact copy, and no other run was added.
 */
async function expectRequeuedRunFinished(
  w: World,
  expected: { runId: string; repositoryId: string; copy: string; strategy: 'FULL' | 'INCREMENTAL'; sha: string },
): Promise<void> {
  const finished = await waitFor('the re-queued run to finish', () => runRow(w.db, expected.runId), (run) => run.activeSlot === null);
  expect(finished).toMatchObject({ status: 'SUCCEEDED', strategy: expected.strategy, toSha: expected.sha });
  expect(await repositoryRow(w.db, expected.repositoryId)).toEqual({ status: 'SYNCED', lastCommitSha: expected.sha });
  await expectIntactCopy(expected.copy, expected.sha);
  const runs = await waitForIdle(w.db, expected.repositoryId);
  expect(runs.map((run) => [run.trigger, run.status])).toEqual([
    ['INITIAL', 'SUCCEEDED'],
    ['MANUAL', 'SUCCEEDED'],
  ]);
}

async function addRepository(w: World, client: TestClient, name: string, files: Record<string, string>, syncStrategy?: 'FULL', branch?: string) {
  const upstream = await createUpstream(gitServer, name, { files, ...(branch ? { branch } : {}) });
  const projectId = (await client.request(CreateProjectDocument, { name: `recovery-${name}` })).createProject.project.id;
  const { addRepository } = await client.request(AddRepositoryDocument, {
    input: { projectId, url: upstream.url, ...(syncStrategy ? { syncStrategy } : {}) },
  });
  return {
    upstream,
    repositoryGlobalId: addRepository.repository.id,
    repositoryId: dbId(addRepository.repository.id),
    webhookSecret: addRepository.webhook.secret!,
  };
}

function recoveryLog(server: ServerProcess): Record<string, unknown> | undefined {
  return server.logs().find((record) => record.msg === 'recovered from an unclean stop');
}

/**
 * The recovery record, once the server has written it: logs go to stderr, the readiness the
 * start waits for comes another way, and on a loaded machine the stderr pipe is read later.
 */
async function recovered(server: ServerProcess): Promise<Record<string, unknown> | undefined> {
  await server.waitForLine('stderr', (line) => line.includes('"recovered from an unclean stop"'), 15_000).catch(() => undefined);
  return recoveryLog(server);
}

interface SnapshotRow {
  commitSha: string;
  key: string;
  bytes: number;
  sha256: string;
}

async function snapshotsOf(db: pg.Client, repositoryId: string): Promise<SnapshotRow[]> {
  const { rows } = await db.query<SnapshotRow>('SELECT "commitSha", key, bytes, sha256 FROM "Snapshot" WHERE "repositoryId" = $1 ORDER BY "createdAt"', [repositoryId]);
  return rows;
}

/** Keys of the bucket's objects under `prefix`, sorted. */
async function objectKeys(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
    for (const object of page.Contents ?? []) keys.push(object.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** The object's bytes; null when there is no such object. */
async function objectBody(s3: S3Client, bucket: string, key: string): Promise<Buffer | null> {
  const found = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
    () => true,
    (error: { $metadata?: { httpStatusCode?: number } }) => {
      if (error.$metadata?.httpStatusCode === 404) return false;
      throw error;
    },
  );
  if (!found) return null;
  const { Body } = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await Body!.transformToByteArray());
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const suite = faultSuite({
  name: 'the process killed or stopped',
  file: 'test/recovery.e2e.test.ts',
  intro: [
    'Each scenario runs `repolens serve` processes against a real PostgreSQL (or the embedded one), a git smart-HTTP',
    'server that slows the transfer down so that the stop lands inside it, and S3Proxy for the archive store; it stops',
    'the process (SIGKILL of its whole process group, as a crash or an OOM kill would, or SIGTERM) and starts it again',
    'on the same DATA_DIR and database. It then checks that the interrupted run is taken up again and ends at',
    'upstream\'s head, that every accepted delivery is processed, that no working copy is corrupt (`git fsck --full`,',
    'a clean tree) and that no archive is partial.',
  ],
});

// Each scenario starts the server (a node process) two or three times: slow on a loaded machine.
describe('crash recovery of the serve process', { timeout: 180_000 }, () => {
  suite.scenario(
    'a FULL re-clone killed mid-transfer leaves the last good copy intact; the restart removes the partial clone and finishes the run',
    {
      fault: 'SIGKILL to the server\'s process group (the server and the git it runs) while a FULL re-clone\'s pack arrives at 16 KiB/s',
      checks: 'the copy is intact at the last good commit and the partial clone is left in tmp/; the restart removes the partial clone, logs its recovery and finishes the same run, re-queued, at the new head with an intact copy',
    },
    async ({ nothingLost }) => {
      const w = await createWorld();
      let server = await serve(w);
      const client = new TestClient(server.url, w.token);
      const name = 'crash-full';
      const { upstream, repositoryGlobalId, repositoryId } = await addRepository(w, client, name, { 'README.md': '# full\n' }, 'FULL');
      const sha1 = await upstream.head();
      await waitFor('initial sync', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha1);
      await waitForIdle(w.db, repositoryId);
      const copy = path.join(w.dataDir, 'repos', repositoryId);
      await expectIntactCopy(copy, sha1);

      const sha2 = await upstream.commit({ 'big.txt': bigFile(), 'README.md': '# full, second\n' }, 'big commit');
      gitServer.setFault(name, trickle);
      gitServer.resetStats();
      const { syncRepository } = await client.request(SyncRepositoryDocument, { repositoryId: repositoryGlobalId });
      const runId = dbId(syncRepository.run.id);

      // Mid-clone: the run is CLONING, a temporary clone exists and the pack is being sent.
      await waitFor('the run to be cloning', () => runRow(w.db, runId), (run) => run.status === 'RUNNING' && run.phase === 'CLONING');
      const [partial] = await waitFor(
        'a temporary clone folder',
        () => temporaryEntries(w.dataDir),
        (entries) => entries.some((entry) => entry.startsWith(`${repositoryId}-`)),
      );
      await waitFor('the pack transfer', async () => gitServer.repoStats(name), (stats) => stats.fetches >= 1 && stats.bytesSent > 0);

      // A crash: the server and the git it started die at once.
      server.killGroup('SIGKILL');
      expect((await server.waitForExit(15_000)).signal).toBe('SIGKILL');
      await waitFor('the killed processes to be gone', async () => server.groupAlive(), (alive) => !alive, 5_000);

      // The crash left the partial clone and a RUNNING run; the working copy is the intact sha1 copy.
      expect(await exists(path.join(w.dataDir, 'tmp', partial!))).toBe(true);
      await nothingLost(() => expectIntactCopy(copy, sha1));
      expect(await runRow(w.db, runId)).toMatchObject({ status: 'RUNNING', activeSlot: 'RUNNING' });
      expect((await repositoryRow(w.db, repositoryId)).status).toBe('SYNCING');

      gitServer.setFault(name, null);
      server = await serve(w);
      expect(await exists(path.join(w.dataDir, 'tmp', partial!))).toBe(false);
      expect(await recovered(server)).toMatchObject({ requeuedRuns: 1, outdatedRepositories: 1 });

      // The same run was queued again and completes.
      await nothingLost(async () => {
        await expectRequeuedRunFinished(w, { runId, repositoryId, copy, strategy: 'FULL', sha: sha2 });
        expect(await readFile(path.join(copy, 'README.md'), 'utf8')).toBe('# full, second\n');
      });
      expect(await temporaryEntries(w.dataDir)).toEqual([]);
    },
  );

  suite.scenario(
    'an INCREMENTAL fetch killed mid-transfer: the copy stays at the old head, and after the restart it is synced to the new one',
    {
      fault: 'SIGKILL to the server\'s process group while an INCREMENTAL fetch\'s pack arrives at 16 KiB/s',
      checks: 'nothing of the half-received fetch shows: the copy is intact at the old head; after the restart the same run finishes INCREMENTAL at the new head, with the new tree checked out and an intact copy',
    },
    async ({ nothingLost }) => {
      const w = await createWorld();
      let server = await serve(w);
      const client = new TestClient(server.url, w.token);
      const name = 'crash-incremental';
      const { upstream, repositoryGlobalId, repositoryId } = await addRepository(w, client, name, {
        'README.md': '# incremental\n',
        'src/a.ts': 'export const a = 1;\n',
      });
      const sha1 = await upstream.head();
      await waitFor('initial sync', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha1);
      await waitForIdle(w.db, repositoryId);
      const copy = path.join(w.dataDir, 'repos', repositoryId);

      const sha2 = await upstream.commit({ 'big.txt': bigFile(), 'src/a.ts': 'export const a = 2;\n', 'README.md': null }, 'big change');
      gitServer.setFault(name, trickle);
      gitServer.resetStats();
      const { syncRepository } = await client.request(SyncRepositoryDocument, { repositoryId: repositoryGlobalId });
      const runId = dbId(syncRepository.run.id);

      await waitFor('the run to be fetching', () => runRow(w.db, runId), (run) => run.status === 'RUNNING' && run.phase === 'FETCHING');
      expect((await runRow(w.db, runId)).strategy).toBe('INCREMENTAL');
      await waitFor('the pack transfer', async () => gitServer.repoStats(name), (stats) => stats.fetches >= 1 && stats.bytesSent > 0);

      server.killGroup('SIGKILL');
      expect((await server.waitForExit(15_000)).signal).toBe('SIGKILL');

      // Nothing of the half-received fetch shows in the copy.
      await nothingLost(async () => {
        await expectIntactCopy(copy, sha1);
        expect(await readFile(path.join(copy, 'src/a.ts'), 'utf8')).toBe('export const a = 1;\n');
      });
      expect(await runRow(w.db, runId)).toMatchObject({ status: 'RUNNING', activeSlot: 'RUNNING' });

      gitServer.setFault(name, null);
      server = await serve(w);
      expect(await recovered(server)).toMatchObject({ requeuedRuns: 1, outdatedRepositories: 1 });

      await nothingLost(async () => {
        await expectRequeuedRunFinished(w, { runId, repositoryId, copy, strategy: 'INCREMENTAL', sha: sha2 });
        expect(await readFile(path.join(copy, 'src/a.ts'), 'utf8')).toBe('export const a = 2;\n');
        expect(await exists(path.join(copy, 'README.md'))).toBe(false);
        expect(await git(['rev-parse', 'refs/remotes/origin/main'], { cwd: copy })).toBe(sha2);
      });
    },
  );

  suite.scenario(
    'SIGTERM during a slow run exits 0 within the grace period, leaves the run queued (not RUNNING), and the next start syncs it',
    {
      fault: 'SIGTERM (REPOLENS_SHUTDOWN_GRACE_MS 500) while the first clone trickles in',
      checks: 'exit code 0 within the grace period (plus 5 s), its git gone, no temporary clone, the run left QUEUED (or CANCELLED with another queued), never RUNNING; the next start logs no recovery and syncs the repository once, to upstream\'s head with an intact copy',
    },
    async ({ nothingLost }) => {
      const w = await createWorld();
      const graceMs = 500;
      let server = await serve(w, { REPOLENS_SHUTDOWN_GRACE_MS: String(graceMs) });
      const client = new TestClient(server.url, w.token);
      const name = 'sigterm';
      // The very first clone is the slow run.
      const upstream = await createUpstream(gitServer, name, { files: { 'README.md': '# sigterm\n', 'big.txt': bigFile() } });
      const head = await upstream.head();
      gitServer.setFault(name, trickle);
      const projectId = (await client.request(CreateProjectDocument, { name: 'recovery-sigterm' })).createProject.project.id;
      const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
      const repositoryId = dbId(addRepository.repository.id);
      const [initial] = await waitFor('the initial run', () => runsOf(w.db, repositoryId), (runs) => runs.length === 1);
      await waitFor('the run to be cloning', () => runRow(w.db, initial!.id), (run) => run.status === 'RUNNING' && run.phase === 'CLONING');
      await waitFor('the pack transfer', async () => gitServer.repoStats(name), (stats) => stats.fetches >= 1 && stats.bytesSent > 0);

      const stopping = Date.now();
      server.kill('SIGTERM');
      const status = await server.waitForExit(graceMs + 15_000);
      const elapsed = Date.now() - stopping;
      expect(status, server.stderr().slice(-10).join('\n')).toEqual({ code: 0, signal: null });
      expect(elapsed).toBeLessThan(graceMs + 5_000);
      // The git it had started is gone too: nothing keeps writing into DATA_DIR after the exit.
      await waitFor('the git children to exit', async () => server.groupAlive(), (alive) => !alive, 5_000);
      expect(await temporaryEntries(w.dataDir)).toEqual([]);

      const runs = await runsOf(w.db, repositoryId);
      expect(runs.some((run) => run.status === 'RUNNING' || run.activeSlot === 'RUNNING'), JSON.stringify(runs)).toBe(false);
      const interrupted = runs.find((run) => run.id === initial!.id)!;
      if (interrupted.status === 'CANCELLED') {
        expect(runs.filter((run) => run.activeSlot === 'QUEUED')).toHaveLength(1);
      } else {
        expect(interrupted).toMatchObject({ status: 'QUEUED', activeSlot: 'QUEUED', phase: 'QUEUED' });
      }
      expect((await repositoryRow(w.db, repositoryId)).status).not.toBe('SYNCING');

      gitServer.setFault(name, null);
      server = await serve(w, { REPOLENS_SHUTDOWN_GRACE_MS: String(graceMs) });
      // A clean stop leaves nothing to recover.
      expect(recoveryLog(server)).toBeUndefined();
      await nothingLost(async () => {
        await waitFor('the repository to be synced', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED', 60_000);
        expect(await repositoryRow(w.db, repositoryId)).toEqual({ status: 'SYNCED', lastCommitSha: head });
        const after = await waitForIdle(w.db, repositoryId);
        expect(after.filter((run) => run.status === 'SUCCEEDED')).toHaveLength(1);
        await expectIntactCopy(path.join(w.dataDir, 'repos', repositoryId), head);
      });
    },
  );
  suite.scenario(
    'SIGTERM ends every syncStatus subscription with a complete message before the socket closes, and exits 0',
    {
      fault: 'SIGTERM while two syncStatus subscriptions are open',
      checks: 'each subscription gets a complete message, and no error, before its socket closes; the process exits 0',
    },
    // No data in flight: nothing that could be lost.
    async () => {
      const w = await createWorld();
      const server = await serve(w);
      const client = new TestClient(server.url, w.token);
      const { repositoryGlobalId, repositoryId } = await addRepository(w, client, 'subscribed', { 'README.md': '# subscribed\n' });
      await waitForIdle(w.db, repositoryId);
      const subscriptions = [client.subscribe(SyncStatusDocument, { repositoryId: repositoryGlobalId }), client.subscribe(SyncStatusDocument, { repositoryId: repositoryGlobalId })];
      // Live once the server has them: a moment before the stop.
      await new Promise((resolve) => setTimeout(resolve, 500));
      server.kill('SIGTERM');
      expect((await server.waitForExit(15_000)).code).toBe(0);
      for (const subscription of subscriptions) {
        await waitFor('the complete message', async () => subscription.completed, (completed) => completed, 5_000);
        expect(subscription.errors).toEqual([]);
        await subscription.close();
      }
    },
  );

  suite.scenario(
    'a second SIGTERM during the grace period exits at once, with its git killed; the next start finishes the run from an intact copy',
    {
      fault: 'SIGTERM (a minute of grace) while a fetch trickles in, then a second SIGTERM 300 ms into the grace period',
      checks: 'exit code 130 within 5 s, the git it ran killed and gone, the copy at the last good commit; the next start syncs to upstream\'s head with an intact copy and no temporary clone',
    },
    async ({ nothingLost }) => {
      const w = await createWorld();
      let server = await serve(w, { REPOLENS_SHUTDOWN_GRACE_MS: '60000' });
      const client = new TestClient(server.url, w.token);
      const name = 'second-sigterm';
      const { upstream, repositoryGlobalId, repositoryId } = await addRepository(w, client, name, { 'README.md': '# second\n' });
      await waitForIdle(w.db, repositoryId);
      const copy = path.join(w.dataDir, 'repos', repositoryId);
      const first = await upstream.head();
      const head = await upstream.commit({ 'big.txt': bigFile() }, 'big change');
      gitServer.setFault(name, trickle);
      await client.request(SyncRepositoryDocument, { repositoryId: repositoryGlobalId });
      await waitFor('the fetch', async () => gitServer.repoStats(name), (stats) => stats.fetches >= 1 && stats.bytesSent > 0);

      server.kill('SIGTERM');
      // The first signal waits for the run (a minute of grace); the second does not.
      await server.waitForLine('stderr', (line) => line.includes('"shutting down"'), 10_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(server.exitStatus()).toBeNull();
      const stopping = Date.now();
      server.kill('SIGTERM');
      const status = await server.waitForExit(10_000);
      expect(Date.now() - stopping).toBeLessThan(5_000);
      expect(status.code).toBe(130);
      // Any git it was running (index-pack behind the in-process fetch, a clone) is killed with it.
      const exitRecord = server.logs().find((record) => record.msg === 'second signal: exiting at once');
      expect(exitRecord?.gitKilled).toEqual(expect.any(Number));
      await waitFor('the git children to exit', async () => server.groupAlive(), (alive) => !alive, 5_000);
      // The copy is the last good one.
      await nothingLost(async () => expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(first));

      gitServer.setFault(name, null);
      server = await serve(w);
      await nothingLost(async () => {
        await waitFor('the repository to be synced', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === head, 60_000);
        await waitForIdle(w.db, repositoryId);
        await expectIntactCopy(copy, head);
      });
      expect(await temporaryEntries(w.dataDir)).toEqual([]);
    },
  );

  suite.scenario(
    'a second instance on the same PostgreSQL database leaves a live instance\'s run alone, and takes it over once that instance is killed',
    {
      fault: 'a second instance joins the database while the first is cloning (orphan sweeps every 500 ms); then the first is SIGKILLed mid-clone',
      checks: 'the second instance leaves the live instance\'s run alone, at start and over 2 s of sweeps; after the kill it takes the run over and finishes it (one run, SUCCEEDED, claimed by it) at upstream\'s head, with an intact copy in its own DATA_DIR',
    },
    async ({ nothingLost }) => {
      const w = await createWorld();
      const first = await serve(w);
      const client = new TestClient(first.url, w.token);
      const name = 'two-instances';
      const upstream = await createUpstream(gitServer, name, { files: { 'README.md': '# two\n', 'big.txt': bigFile() } });
      // Slow enough that the first instance is still cloning while the second one starts.
      gitServer.setFault(name, { kind: 'trickle', bytesPerSecond: 4 * 1024 });
      const projectId = (await client.request(CreateProjectDocument, { name: 'recovery-two' })).createProject.project.id;
      const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
      const repositoryId = dbId(addRepository.repository.id);
      const [initial] = await waitFor('the initial run', () => runsOf(w.db, repositoryId), (runs) => runs.length === 1);
      await waitFor('the run to be cloning', () => runRow(w.db, initial!.id), (run) => run.status === 'RUNNING' && run.phase === 'CLONING');
      await waitFor('the pack transfer', async () => gitServer.repoStats(name), (stats) => stats.fetches >= 1 && stats.bytesSent > 0);
      const owner = (await runRow(w.db, initial!.id)).claimedBy;
      expect(owner).toMatch(new RegExp(`^${first.pid}-`));

      // SPEC §1 "Several processes": a second instance (its own DATA_DIR) joins the same database,
      // and sweeps for runs of stopped instances every half second.
      const secondDataDir = await mkdtemp(path.join(tmpdir(), 'repolens-recovery-second-'));
      try {
        const second = await startServer({
          databaseUrl: w.databaseUrl,
          dataDir: secondDataDir,
          env: { REPOLENS_SCHEDULER_INTERVAL_MS: '0', REPOLENS_ORPHAN_SWEEP_MS: '500' },
        });
        expect(first.exitStatus()).toBeNull();
        // Start-up recovery (done before /healthz answers) must not treat a live instance's run as orphaned.
        expect(recoveryLog(second), 'the second instance re-queued a run the first one is executing').toBeUndefined();
        expect(await runRow(w.db, initial!.id)).toMatchObject({ status: 'RUNNING', activeSlot: 'RUNNING', claimedBy: owner });
        expect((await repositoryRow(w.db, repositoryId)).status).toBe('SYNCING');
        // Nor do the periodic sweeps while the first instance lives.
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        expect(recoveryLog(second)).toBeUndefined();
        expect(await runRow(w.db, initial!.id)).toMatchObject({ status: 'RUNNING', claimedBy: owner });
        expect(gitServer.repoStats(name).fetches).toBe(1);

        // The first instance dies mid-clone; the second one notices and finishes the run in its own copy.
        gitServer.setFault(name, null);
        first.killGroup('SIGKILL');
        expect((await first.waitForExit(15_000)).signal).toBe('SIGKILL');
        const finished = await nothingLost(() => waitFor('the run to be taken over and finished', () => runRow(w.db, initial!.id), (run) => run.status === 'SUCCEEDED', 60_000));
        expect(finished.claimedBy).toMatch(new RegExp(`^${second.pid}-`));
        expect(await recovered(second)).toMatchObject({ requeuedRuns: 1 });
        const head = await upstream.head();
        await nothingLost(async () => {
          expect(await repositoryRow(w.db, repositoryId)).toEqual({ status: 'SYNCED', lastCommitSha: head });
          expect(await runsOf(w.db, repositoryId)).toHaveLength(1);
          await expectIntactCopy(path.join(secondDataDir, 'repos', repositoryId), head);
        });
      } finally {
        await killAllServers();
        await rm(secondDataDir, { recursive: true, force: true });
        gitServer.setFault(name, null);
      }
    },
  );

  suite.scenario(
    'embedded database (PGlite): a serve SIGKILLed mid-clone starts again on the same DATA_DIR and finishes the run',
    {
      fault: 'SIGKILL to a `repolens serve` on the embedded database (PGlite, no DATABASE_URL) mid-clone',
      checks: 'the restart on the same DATA_DIR prints no new token and accepts the old one, logs its recovery, and the repository ends SYNCED at upstream\'s head with an intact copy',
    },
    async ({ nothingLost }) => {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'repolens-recovery-embedded-'));
      try {
        let server = await startServer({ dataDir, env: { REPOLENS_SCHEDULER_INTERVAL_MS: '0' } });
        const token = server.stdout().join('\n').match(/rls_[A-Za-z0-9_-]{43}/)?.[0];
        expect(token).toBeDefined();
        const client = new TestClient(server.url, token!);
        const name = 'crash-embedded';
        const upstream = await createUpstream(gitServer, name, { files: { 'README.md': '# embedded\n', 'big.txt': bigFile() } });
        const head = await upstream.head();
        gitServer.setFault(name, trickle);
        const projectId = (await client.request(CreateProjectDocument, { name: 'recovery-embedded' })).createProject.project.id;
        const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
        const repositoryId = dbId(addRepository.repository.id);
        await waitFor(
          'the clone to be in progress',
          async () => ({ stats: gitServer.repoStats(name), temporary: await temporaryEntries(dataDir) }),
          ({ stats, temporary }) => stats.fetches >= 1 && stats.bytesSent > 0 && temporary.some((entry) => entry.startsWith(`${repositoryId}-`)),
        );

        server.killGroup('SIGKILL');
        expect((await server.waitForExit(15_000)).signal).toBe('SIGKILL');
        gitServer.setFault(name, null);

        server = await startServer({ dataDir, env: { REPOLENS_SCHEDULER_INTERVAL_MS: '0' } });
        // Not a first start: no new token is printed, and the old one still works.
        expect(server.stdout().join('\n')).not.toMatch(/rls_/);
        expect(await recovered(server)).toMatchObject({ requeuedRuns: 1, outdatedRepositories: 1 });
        const restarted = new TestClient(server.url, token!);
        await nothingLost(async () => {
          const deadline = Date.now() + 60_000;
          let state: { status: string; lastCommitSha: string | null } | null = null;
          while (Date.now() < deadline) {
            state = (await restarted.request(RepositoryDocument, { id: addRepository.repository.id, runs: 5 })).repository;
            if (state?.status === 'SYNCED') break;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          expect(state).toMatchObject({ status: 'SYNCED', lastCommitSha: head });
          await expectIntactCopy(path.join(dataDir, 'repos', repositoryId), head);
        });
      } finally {
        await killAllServers();
        gitServer.setFault('crash-embedded', null);
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  );
  suite.scenario(
    'a webhook delivery answered 202 right before a kill -9 is processed after the restart',
    {
      fault: 'SIGKILL right after a signed push delivery was answered 202, before its sync could fetch (the git host answers 5 s late)',
      checks: 'the delivery was stored before the answer; after the restart it is processed (QUEUED or COALESCED) and a webhook run SUCCEEDED at the pushed commit',
    },
    async ({ nothingLost }) => {
      const w = await createWorld();
      let server = await serve(w);
      const client = new TestClient(server.url, w.token);
      const name = 'crash-webhook';
      // master: the branch the published push payload names.
      const { upstream, repositoryId, webhookSecret } = await addRepository(w, client, name, { 'README.md': '# webhook\n' }, undefined, 'master');
      const sha1 = await upstream.head();
      await waitFor('initial sync', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha1);
      await waitForIdle(w.db, repositoryId);

      const sha2 = await upstream.commit({ 'after-crash.txt': 'after\n' });
      const raw = await loadFixture('github-push-commits-drone.json');
      const published = JSON.parse(raw.toString('utf8')) as { before: string; after: string };
      const body = retarget(raw, { url: upstream.url, name }, { [published.before]: sha1, [published.after]: sha2 });
      // The git host answers slowly, so no sync can finish between the answer and the kill.
      gitServer.setFault(name, { kind: 'delay', ms: 5_000 });
      const answer = await deliver(server.url, 'github', githubHeaders('push', body, webhookSecret, 'delivery-before-crash'), body);
      expect(answer.status).toBe(202);
      server.killGroup('SIGKILL');
      expect((await server.waitForExit(15_000)).signal).toBe('SIGKILL');
      gitServer.setFault(name, null);
      await nothingLost(async () => {
        const { rows: stored } = await w.db.query('SELECT "deliveryId" FROM "WebhookDelivery" WHERE "repositoryId" = $1', [repositoryId]);
        expect(stored).toEqual([{ deliveryId: 'delivery-before-crash' }]);
      });
      expect((await repositoryRow(w.db, repositoryId)).lastCommitSha).toBe(sha1);

      server = await serve(w);
      await nothingLost(async () => {
        await waitFor('the webhook sync after the restart', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha2);
        await waitForIdle(w.db, repositoryId);
        const webhookRuns = (await runsOf(w.db, repositoryId)).filter((run) => run.trigger === 'WEBHOOK');
        expect(webhookRuns.map((run) => [run.status, run.toSha])).toContainEqual(['SUCCEEDED', sha2]);
        const { rows: processed } = await w.db.query('SELECT outcome, "processedAt" FROM "WebhookDelivery" WHERE "repositoryId" = $1', [repositoryId]);
        expect(processed).toHaveLength(1);
        expect(processed[0].processedAt).not.toBeNull();
        expect(['QUEUED', 'COALESCED']).toContain(processed[0].outcome);
      });
    },
  );

  suite.scenario(
    'a snapshot upload to S3 killed mid-transfer (ARCHIVING): the restart archives the commit again, whole and once',
    {
      fault: 'SIGKILL to the server\'s process group while it uploads a synced commit\'s snapshot (about 6 MiB, a multipart upload) to S3 through a proxy that lets the upload through at 64 KiB/s',
      checks: 'no object and no Snapshot row for the commit after the kill, the copy intact; after the restart the same run finishes at the new head, the commit\'s Snapshot row names one object in the bucket with exactly its recorded bytes and SHA-256, no other object for the commit, and a copy removed later is restored from that snapshot; the killed multipart upload is aborted once the restart has uploaded the snapshot again, and none is left open',
    },
    async ({ nothingLost }) => {
      const s3 = await s3TestEnv();
      const bucket = s3.S3_BUCKET;
      // Direct to S3Proxy: what is really in the bucket.
      const direct = s3ClientFor(inject('s3'));
      // The service reaches S3 through the proxy, which trickles the snapshot's upload when told to.
      const proxy = await startTrickleProxy(s3.S3_ENDPOINT);
      try {
        const w = await createWorld();
        const env = { ...s3, S3_ENDPOINT: proxy.url };
        let server = await serve(w, env);
        let client = new TestClient(server.url, w.token);
        const name = 'crash-archive';
        const { upstream, repositoryGlobalId, repositoryId } = await addRepository(w, client, name, { 'README.md': '# archive\n' });
        const sha1 = await upstream.head();
        await waitFor('initial sync', () => repositoryRow(w.db, repositoryId), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha1);
        await waitForIdle(w.db, repositoryId);
        expect((await snapshotsOf(w.db, repositoryId)).map((snapshot) => snapshot.commitSha)).toEqual([sha1]);
        const copy = path.join(w.dataDir, 'repos', repositoryId);

        // About 6 MiB packed (the file, and its git object, each some 3 MiB gzip cannot shrink): a multipart upload.
        const sha2 = await upstream.commit({ 'data.txt': randomBytes(3 * 1024 * 1024).toString('base64') }, 'big data');
        const key = `repos/${repositoryId}/${sha2}.tar.gz`;
        // Only the snapshot's requests are slowed (its parts: PUT …/<sha>.tar.gz?partNumber=…); the file artifacts go at full speed.
        proxy.trickle(64 * 1024, { from: new RegExp(`^PUT /${escapeRegExp(`${bucket}/${key}`)}[? ]`) });
        const events = client.subscribe(SyncStatusDocument, { repositoryId: repositoryGlobalId });
        const { syncRepository } = await client.request(SyncRepositoryDocument, { repositoryId: repositoryGlobalId });
        const runId = dbId(syncRepository.run.id);

        // ARCHIVING is announced to subscribers, not written to the run's row (it costs no round trip): the events say it.
        await events.waitFor((list) => list.some((event) => event.syncStatus.phase === 'ARCHIVING'), 60_000);
        await waitFor('the snapshot upload to be under way', async () => proxy.bytesTrickled(), (bytes) => bytes >= 256 * 1024, 60_000);
        // (Its row still says FETCHING: APPLYING, INDEXING and ARCHIVING are written with the run's end.)
        expect(await runRow(w.db, runId)).toMatchObject({ status: 'RUNNING', activeSlot: 'RUNNING' });

        server.killGroup('SIGKILL');
        expect((await server.waitForExit(15_000)).signal).toBe('SIGKILL');
        await waitFor('the killed processes to be gone', async () => server.groupAlive(), (alive) => !alive, 5_000);
        await events.close().catch(() => undefined);
        const beforeRestart = proxy.requests().length;

        // Killed inside the upload: nothing of it is an object, nor recorded; the copy (already at sha2) is intact.
        expect(await objectBody(direct, bucket, key)).toBeNull();
        expect((await snapshotsOf(w.db, repositoryId)).map((snapshot) => snapshot.commitSha)).toEqual([sha1]);
        expect(await repositoryRow(w.db, repositoryId)).toEqual({ status: 'SYNCING', lastCommitSha: sha1 });
        await nothingLost(() => expectIntactCopy(copy, sha2));

        // The restart: S3 at full speed again.
        proxy.trickle(null);
        server = await serve(w, env);
        client = new TestClient(server.url, w.token);
        expect(await recovered(server)).toMatchObject({ requeuedRuns: 1, outdatedRepositories: 1 });

        await nothingLost(async () => {
          // The same run, queued again, fetches nothing new, and archives the commit.
          await expectRequeuedRunFinished(w, { runId, repositoryId, copy, strategy: 'INCREMENTAL', sha: sha2 });
          const { rows } = await w.db.query<{ warning: string | null }>('SELECT warning FROM "SyncRun" WHERE id = $1', [runId]);
          expect(rows[0]!.warning).toBeNull();
          const snapshots = await snapshotsOf(w.db, repositoryId);
          expect(snapshots.map((snapshot) => snapshot.commitSha)).toEqual([sha1, sha2]);
          const snapshot = snapshots[1]!;
          expect(snapshot.key).toBe(key);
          const stored = await objectBody(direct, bucket, key);
          expect(stored, `${key} in the bucket`).not.toBeNull();
          expect(stored!.length).toBe(Number(snapshot.bytes));
          expect(createHash('sha256').update(stored!).digest('hex')).toBe(snapshot.sha256);
          const { rows: archived } = await w.db.query<{ s3ArchiveUrl: string | null }>('SELECT "s3ArchiveUrl" FROM "Repository" WHERE id = $1', [repositoryId]);
          expect(archived[0]!.s3ArchiveUrl).toBe(`s3://${bucket}/${key}`);
        });
        // One object per commit: its snapshot and its manifest, no second or partial one.
        const keys = await objectKeys(direct, bucket, `repos/${repositoryId}/`);
        expect(keys.filter((object) => object.includes(sha2))).toEqual([key, `repos/${repositoryId}/manifests/${sha2}.json`].sort());
        expect(keys.filter((object) => object.endsWith('.tar.gz'))).toEqual([`repos/${repositoryId}/${sha1}.tar.gz`, key].sort());
        // The restart uploaded the snapshot (again, from the start) and completed it.
        const afterRestart = proxy.requests().slice(beforeRestart);
        expect(afterRestart.filter((line) => line.startsWith(`POST /${bucket}/${key}?uploads`))).toHaveLength(1);
        expect(afterRestart.filter((line) => line.startsWith(`POST /${bucket}/${key}?uploadId=`))).toHaveLength(1);
        // The killed upload was aborted once the restart had completed its own (S3 would keep its parts until a lifecycle
        // rule removed them): no upload of the key is left open, and no other object names the commit.
        const killedUploads = new Set(
          proxy
            .requests()
            .slice(0, beforeRestart)
            .flatMap((line) => line.match(/[?&]uploadId=([^&\s]+)/)?.[1] ?? []),
        );
        expect(killedUploads.size).toBeGreaterThan(0);
        for (const id of killedUploads) expect(afterRestart.filter((line) => line.startsWith(`DELETE /${bucket}/${key}?uploadId=${id}`))).toHaveLength(1);
        const { Uploads: open = [] } = await direct.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
        expect(open).toEqual([]);
        expect((await objectKeys(direct, bucket, '')).filter((object) => object.includes(sha2))).toEqual(
          [key, `repos/${repositoryId}/manifests/${sha2}.json`].sort(),
        );

        // The snapshot serves: with the copy gone, the next run restores it from there.
        server.kill('SIGTERM');
        expect((await server.waitForExit(15_000)).code).toBe(0);
        await rm(copy, { recursive: true, force: true });
        server = await serve(w, env);
        client = new TestClient(server.url, w.token);
        const { syncRepository: restoring } = await client.request(SyncRepositoryDocument, { repositoryId: repositoryGlobalId });
        const restoreRunId = dbId(restoring.run.id);
        await nothingLost(async () => {
          const restored = await waitFor('the restoring run to finish', () => runRow(w.db, restoreRunId), (run) => run.activeSlot === null);
          expect(restored.status).toBe('SKIPPED');
          const { rows } = await w.db.query<{ phaseLog: { phase: string; message?: string }[] }>('SELECT "phaseLog" FROM "SyncRun" WHERE id = $1', [restoreRunId]);
          const restoring = rows[0]!.phaseLog.filter((entry) => entry.phase === 'RESTORING');
          expect(restoring.length, JSON.stringify(rows[0]!.phaseLog)).toBeGreaterThan(0);
          expect(restoring.filter((entry) => /unusable/.test(entry.message ?? ''))).toEqual([]);
          expect(await repositoryRow(w.db, repositoryId)).toEqual({ status: 'SYNCED', lastCommitSha: sha2 });
          await expectIntactCopy(copy, sha2);
        });
        expect(await waitForIdle(w.db, repositoryId)).toHaveLength(3);
      } finally {
        await killAllServers();
        await proxy.close();
        direct.destroy();
      }
    },
  );
});

suite.reportCheck();
