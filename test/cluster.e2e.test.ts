import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/storage/database.js';
import { createApiToken } from '../src/storage/tenants.js';
import { rendezvousOwner } from '../src/sync/membership.js';
import { AddRepositoryDocument, CreateProjectDocument, SyncRepositoryDocument, SyncStatusDocument } from './generated/graphql.js';
import { TestClient } from './support/client.js';
import { createTestDatabase } from './support/database.js';
import { createUpstream, git, type Upstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { s3TestEnv, type S3TestEnv } from './support/s3proxy.js';
import { killAllServers, startServer, type ServerProcess } from './support/serverProcess.js';
import { exists, waitFor } from './support/wait.js';

// SPEC §1 "Several processes", issue 8 item 5: three real server processes on
// different ports, one PostgreSQL database, one S3 bucket (S3Proxy) and Redis,
// each with its own DATA_DIR. Triggers go to random instances; every run is
// executed once, by the instance that owns its repository (rendezvous hashing
// over the live instances); a storm through all three coalesces; a subscriber
// on one instance sees the runs another executes; an instance killed with
// SIGKILL mid-fetch has its run finished by the new owner, which restores the
// copy from S3; an instance that joins or leaves moves only its share.

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const repositoryCount = 12;

interface Member {
  server: ServerProcess;
  dataDir: string;
  client: TestClient;
  /** Its SyncRun.claimedBy and Instance.id. */
  instanceId: string;
}

interface Repo {
  name: string;
  upstream: Upstream;
  globalId: string;
  id: string;
}

interface RunRow {
  id: string;
  repositoryId: string;
  trigger: string;
  status: string;
  activeSlot: string | null;
  claimedBy: string | null;
  toSha: string | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  phaseLog: { phase: string }[];
}

let gitServer: GitServer;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: pg.Client;
let token: string;
let s3: S3TestEnv;
const encryptionKey = randomBytes(32).toString('base64');
const dataDirs: string[] = [];
const members: Member[] = [];
const repos: Repo[] = [];

beforeAll(async () => {
  gitServer = await startGitServer();
  database = await createTestDatabase();
  const handle = await openDatabase({ databaseUrl: database.url, dataDir: '/nonexistent' });
  try {
    token = (await createApiToken(handle.prisma, 'cluster')).token;
  } finally {
    await handle.close();
  }
  db = new pg.Client({ connectionString: database.url });
  await db.connect();
  s3 = await s3TestEnv();
  // Started one after the other: each start migrates (a no-op after the first).
  for (let index = 0; index < 3; index++) members.push(await startMember());
  await waitForMembers(members);
}, 240_000);

afterAll(async () => {
  await killAllServers();
  await db?.end().catch(() => undefined);
  await database?.drop().catch(() => undefined);
  await gitServer?.close();
  for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
});

async function startMember(): Promise<Member> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'repolens-cluster-'));
  dataDirs.push(dataDir);
  const server = await startServer({
    databaseUrl: database.url,
    dataDir,
    env: {
      ...s3,
      REDIS_URL: redisUrl,
      ENCRYPTION_KEY: encryptionKey,
      REPOLENS_SCHEDULER_INTERVAL_MS: '0',
      REPOLENS_HEARTBEAT_MS: '250',
      REPOLENS_INSTANCE_TTL_MS: '3000',
      REPOLENS_ORPHAN_SWEEP_MS: '500',
    },
  });
  const row = await waitFor(
    'the instance to record itself',
    async () => (await db.query<{ id: string }>('SELECT id FROM "Instance" WHERE id LIKE $1', [`${server.pid}-%`])).rows[0],
    (found) => found !== undefined,
  );
  return { server, dataDir, client: new TestClient(server.url, token), instanceId: row!.id };
}

/** Until the Instance table lists exactly `live`, then two more heartbeats (250 ms each) so that every member has read it. */
async function waitForMembers(live: Member[]): Promise<void> {
  const ids = live.map((member) => member.instanceId).sort();
  await waitFor(
    'the live instances in the Instance table',
    async () => (await db.query<{ id: string }>('SELECT id FROM "Instance" ORDER BY id')).rows.map((row) => row.id),
    (rows) => JSON.stringify(rows) === JSON.stringify(ids),
  );
  // Two more heartbeats: every member has read the table since.
  await new Promise((resolve) => setTimeout(resolve, 700));
}

function ownerOf(repositoryId: string, live: Member[]): Member {
  const id = rendezvousOwner(
    repositoryId,
    live.map((member) => member.instanceId),
  );
  return live.find((member) => member.instanceId === id)!;
}

function pick<T>(items: T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

async function runsOf(repositoryId: string): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    'SELECT id, "repositoryId", trigger, status, "activeSlot", "claimedBy", "toSha", "startedAt", "finishedAt", "phaseLog" FROM "SyncRun" WHERE "repositoryId" = $1 ORDER BY "queuedAt"',
    [repositoryId],
  );
  return rows;
}

async function repositoryRow(repositoryId: string): Promise<{ status: string; lastCommitSha: string | null }> {
  const { rows } = await db.query<{ status: string; lastCommitSha: string | null }>('SELECT status, "lastCommitSha" FROM "Repository" WHERE id = $1', [repositoryId]);
  return rows[0]!;
}

async function waitSynced(repo: Repo, sha: string): Promise<RunRow[]> {
  await waitFor('the repository to be SYNCED at the head', () => repositoryRow(repo.id), (row) => row.status === 'SYNCED' && row.lastCommitSha === sha, 90_000);
  return waitFor('no active run', () => runsOf(repo.id), (runs) => runs.every((run) => run.activeSlot === null));
}

/** The instance whose claimedBy is on a run. */
function executor(run: RunRow): string {
  expect(run.claimedBy).not.toBeNull();
  return run.claimedBy!;
}

/** No two runs of one repository ever overlapped in time: one writer of its working copy at a time. */
async function expectNoOverlap(): Promise<void> {
  for (const repo of repos) {
    const runs = (await runsOf(repo.id)).filter((run) => run.startedAt && run.finishedAt).sort((a, b) => a.startedAt!.getTime() - b.startedAt!.getTime());
    for (let index = 1; index < runs.length; index++) {
      expect(runs[index]!.startedAt!.getTime(), `runs of ${repo.name} overlap`).toBeGreaterThanOrEqual(runs[index - 1]!.finishedAt!.getTime());
    }
  }
}

describe('three server processes on one database', { timeout: 240_000 }, () => {
  it('repositories added through random instances are each synced once, by their owner, into its own DATA_DIR', async () => {
    const projectId = (await members[0]!.client.request(CreateProjectDocument, { name: 'cluster' })).createProject.project.id;
    for (let index = 0; index < repositoryCount; index++) {
      const name = `cluster/repo-${index}`;
      const upstream = await createUpstream(gitServer, name, { files: { 'README.md': `# ${name}\n`, 'src/a.ts': `export const a = ${index};\n` } });
      const { addRepository } = await pick(members).client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
      const globalId = addRepository.repository.id;
      repos.push({ name, upstream, globalId, id: Buffer.from(globalId, 'base64url').toString().split(':')[1]! });
    }
    const owners = new Map<string, number>();
    for (const repo of repos) {
      const runs = await waitSynced(repo, await repo.upstream.head());
      expect(runs.map((run) => [run.trigger, run.status])).toEqual([['INITIAL', 'SUCCEEDED']]);
      const owner = ownerOf(repo.id, members);
      expect(executor(runs[0]!)).toBe(owner.instanceId);
      expect(await exists(path.join(owner.dataDir, 'repos', repo.id))).toBe(true);
      for (const other of members.filter((member) => member !== owner)) expect(await exists(path.join(other.dataDir, 'repos', repo.id))).toBe(false);
      owners.set(owner.instanceId, (owners.get(owner.instanceId) ?? 0) + 1);
      expect(gitServer.repoStats(repo.name).fetches).toBe(1);
    }
    // Archived to the shared bucket, which is what a new owner restores from.
    const { rows } = await db.query<{ count: string }>('SELECT count(DISTINCT "repositoryId") AS count FROM "Snapshot"');
    expect(Number(rows[0]!.count)).toBe(repositoryCount);
    // All three share the work.
    expect(owners.size).toBe(3);
  });

  it('storms of triggers sent to random instances coalesce cluster-wide: each run executed once, at most 2 fetches per repository', async () => {
    const stormed = repos.slice(0, 4);
    const heads = new Map<string, string>();
    for (const repo of stormed) heads.set(repo.id, await repo.upstream.commit({ 'storm.txt': `storm ${repo.name}\n` }));
    gitServer.resetStats();
    const before = new Map<string, number>();
    for (const repo of stormed) before.set(repo.id, (await runsOf(repo.id)).length);
    const triggers = stormed.flatMap((repo) => Array.from({ length: 15 }, () => repo));
    const results = await Promise.all(triggers.map((repo) => pick(members).client.request(SyncRepositoryDocument, { repositoryId: repo.globalId })));
    expect(results).toHaveLength(60);
    for (const repo of stormed) {
      const runs = (await waitSynced(repo, heads.get(repo.id)!)).slice(before.get(repo.id));
      // 15 triggers on three instances: one run took them, or two when some came while the first ran.
      expect(runs.length).toBeGreaterThanOrEqual(1);
      expect(runs.length).toBeLessThanOrEqual(2);
      const owner = ownerOf(repo.id, members);
      for (const run of runs) expect(executor(run)).toBe(owner.instanceId);
      expect(gitServer.repoStats(repo.name).fetches).toBeLessThanOrEqual(2);
      expect(gitServer.repoStats(repo.name).fetches).toBeGreaterThanOrEqual(1);
    }
    await expectNoOverlap();
  });

  it('a subscriber on one instance sees, live, a run its owner executes, triggered through the third', async () => {
    const repo = repos[4]!;
    const owner = ownerOf(repo.id, members);
    const [watcher, sender] = members.filter((member) => member !== owner);
    const subscription = watcher!.client.subscribe(SyncStatusDocument, { repositoryId: repo.globalId });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const head = await repo.upstream.commit({ 'watched.txt': 'seen across instances\n' });
      await sender!.client.request(SyncRepositoryDocument, { repositoryId: repo.globalId });
      const events = await subscription.waitFor((received) => received.some((event) => event.syncStatus.phase === 'DONE'), 60_000);
      expect(events.map((event) => event.syncStatus.phase)).toEqual(expect.arrayContaining(['QUEUED', 'CHECKING', 'FETCHING', 'DONE']));
      expect(events.find((event) => event.syncStatus.phase === 'DONE')!.syncStatus).toMatchObject({ status: 'SYNCED', commitSha: head });
      const runs = await waitSynced(repo, head);
      expect(executor(runs.at(-1)!)).toBe(owner.instanceId);
    } finally {
      await subscription.close();
    }
  });

  it('SIGKILL of the instance fetching a run: the new owner finishes it from the S3 snapshot, and only the dead one\'s repositories move', async () => {
    const before = new Map(repos.map((repo) => [repo.id, ownerOf(repo.id, members)]));
    const victim = members[0]!;
    const repo = repos.find((candidate) => before.get(candidate.id) === victim)!;
    expect(repo).toBeDefined();
    // A big change sent slowly: the owner is still fetching when it dies.
    const head = await repo.upstream.commit({ 'big.txt': randomBytes(180 * 1024).toString('base64') }, 'big change');
    gitServer.setFault(repo.name, { kind: 'trickle', bytesPerSecond: 16 * 1024 });
    const sender = members.find((member) => member !== victim)!;
    await sender.client.request(SyncRepositoryDocument, { repositoryId: repo.globalId });
    const running = await waitFor(
      'the owner to be fetching',
      async () => (await runsOf(repo.id)).at(-1)!,
      (run) => run.status === 'RUNNING' && run.phaseLog.some((entry) => entry.phase === 'FETCHING'),
    );
    expect(executor(running)).toBe(victim.instanceId);
    await waitFor('bytes on the wire', async () => gitServer.repoStats(repo.name), (stats) => stats.bytesSent > 0);

    victim.server.killGroup('SIGKILL');
    expect((await victim.server.waitForExit(15_000)).signal).toBe('SIGKILL');
    gitServer.setFault(repo.name, null);
    const survivors = members.slice(1);
    const runs = await waitSynced(repo, head);
    // The same run, re-queued once the dead instance's lease was gone, and finished by the repository's new owner.
    const finished = runs.find((run) => run.id === running.id)!;
    expect(finished.status).toBe('SUCCEEDED');
    const heir = ownerOf(repo.id, survivors);
    expect(executor(finished)).toBe(heir.instanceId);
    // It had no copy of this repository: it restored the last snapshot from S3, then fetched the rest.
    expect(finished.phaseLog.map((entry) => entry.phase)).toContain('RESTORING');
    const copy = path.join(heir.dataDir, 'repos', repo.id);
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(head);
    await git(['fsck', '--full', '--no-progress'], { cwd: copy });
    expect(runs.filter((run) => run.status === 'SUCCEEDED' && run.toSha === head)).toHaveLength(1);

    // Leaving moved only the dead instance's repositories: a sync of each now runs where the hash says,
    // which is where it ran before for every repository the survivors already owned.
    members.splice(0, 1);
    await waitForMembers(members);
    for (const other of repos) {
      const now = ownerOf(other.id, members);
      if (before.get(other.id) !== victim) expect(now).toBe(before.get(other.id));
    }
    await syncAllAndCheckOwners(members);
    await expectNoOverlap();
  });

  it('an instance that joins takes only its share: repositories move only to it, and back when it leaves', async () => {
    const before = new Map(repos.map((repo) => [repo.id, ownerOf(repo.id, members)]));
    const newcomer = await startMember();
    members.push(newcomer);
    await waitForMembers(members);
    const moved = repos.filter((repo) => ownerOf(repo.id, members) !== before.get(repo.id));
    // Every repository that moved went to the newcomer; the odds that none does with 12 repositories are (2/3)^12.
    expect(moved.length).toBeGreaterThan(0);
    expect(moved.length).toBeLessThan(repos.length);
    for (const repo of moved) expect(ownerOf(repo.id, members)).toBe(newcomer);
    await syncAllAndCheckOwners(members);

    // A clean stop (SIGTERM) leaves the cluster: its repositories go back where they were.
    newcomer.server.kill('SIGTERM');
    expect((await newcomer.server.waitForExit(30_000)).code).toBe(0);
    members.pop();
    await waitForMembers(members);
    for (const repo of repos) expect(ownerOf(repo.id, members)).toBe(before.get(repo.id));
    await syncAllAndCheckOwners(members);
    await expectNoOverlap();
  });
});

/** A new commit in every repository, a sync of each through a random instance: each run is executed by the owner. */
async function syncAllAndCheckOwners(live: Member[]): Promise<void> {
  const heads = new Map<string, string>();
  const counts = new Map<string, number>();
  for (const repo of repos) {
    heads.set(repo.id, await repo.upstream.commit({ 'round.txt': `${randomBytes(4).toString('hex')}\n` }));
    counts.set(repo.id, (await runsOf(repo.id)).length);
  }
  await Promise.all(repos.map((repo) => pick(live).client.request(SyncRepositoryDocument, { repositoryId: repo.globalId })));
  for (const repo of repos) {
    const runs = (await waitSynced(repo, heads.get(repo.id)!)).slice(counts.get(repo.id));
    expect(runs).toHaveLength(1);
    const owner = ownerOf(repo.id, live);
    expect(executor(runs[0]!), `${repo.name} ran away from its owner`).toBe(owner.instanceId);
    expect(await git(['rev-parse', 'HEAD'], { cwd: path.join(owner.dataDir, 'repos', repo.id) })).toBe(heads.get(repo.id));
  }
}
