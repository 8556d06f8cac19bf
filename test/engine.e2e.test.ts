import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  RemoveRepositoryDocument,
  RepositoryDocument,
  SyncRepositoryDocument,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { TestClient } from './support/client.js';
import { createUpstream, git } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { dropDatabase } from './support/database.js';
import pg from 'pg';
import { encodeGlobalId } from '../src/schema/globalId.js';
import { RunQueue } from '../src/sync/runQueue.js';

const dbId = (globalId: string) => Buffer.from(globalId, 'base64url').toString().split(':')[1]!;

interface Harness {
  app: TestApp;
  client: TestClient;
  projectId: string;
}

async function harness(env: Record<string, string> = {}): Promise<Harness> {
  const app = await startTestApp({ env });
  const client = await app.client();
  const projectId = (await client.request(CreateProjectDocument, { name: 'engine' })).createProject.project.id;
  return { app, client, projectId };
}

async function addSynced(h: Harness, server: GitServer, name: string, input: { branch?: string; archivePolicy?: 'NONE' } = {}) {
  const upstream = await createUpstream(server, name);
  if (input.branch) await upstream.createBranch(input.branch);
  const { addRepository } = await h.client.request(AddRepositoryDocument, {
    input: { projectId: h.projectId, url: upstream.url, ...input },
  });
  const repository = await waitForRepository(h.client, addRepository.repository.id, (state) => state.status === 'SYNCED');
  await waitForIdle(h.app.app, dbId(repository.id));
  return { upstream, repository, id: dbId(repository.id), copy: path.join(h.app.dataDir, 'repos', dbId(repository.id)) };
}

async function syncAndWait(h: Harness, repositoryId: string) {
  const { syncRepository } = await h.client.request(SyncRepositoryDocument, { repositoryId });
  await waitForIdle(h.app.app, dbId(repositoryId), 45_000);
  const state = (await h.client.request(RepositoryDocument, { id: repositoryId, runs: 5 })).repository!;
  const run = state.syncRuns.edges.find((edge) => edge.node.id === syncRepository.run.id)?.node;
  return { state, run: run! };
}

/** Samples a value until stopped; returns the maximum seen. */
function sampleMax(read: () => Promise<number>): { stop(): Promise<number> } {
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      max = Math.max(max, await read());
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return max;
    },
  };
}

describe('engine: failures and self-healing', () => {
  let server: GitServer;
  let h: Harness;

  beforeAll(async () => {
    server = await startGitServer();
    h = await harness({ REPOLENS_GIT_TIMEOUT_MS: '6000', REPOLENS_GIT_IDLE_TIMEOUT_MS: '5000' });
  });
  afterAll(async () => {
    await h?.app.close();
    await server?.close();
  });

  it('a run held RUNNING under this instance that it no longer executes (its end never reached the database) is queued again and finished', async () => {
    const { upstream, id } = await addSynced(h, server, 'abandoned');
    const head = await upstream.commit({ 'after.txt': 'after\n' });
    // Queued and claimed in the database as this instance, but never executed here: what is left when the
    // database went away as a claim's answer or a run's last statement was on its way.
    const queue = new RunQueue(h.app.app.db.prisma);
    const { run } = await queue.enqueue({ repositoryId: id, tenantId: (await h.app.app.db.prisma.repository.findUniqueOrThrow({ where: { id } })).tenantId, trigger: 'MANUAL' });
    expect(await queue.claim(run.id, h.app.app.instanceId)).not.toBeNull();
    expect(await h.app.app.engine.requeueAbandoned()).toBe(1);
    await waitUntil(async () => (await h.app.app.db.prisma.syncRun.findUniqueOrThrow({ where: { id: run.id } })).status === 'SUCCEEDED');
    expect(await h.app.app.db.prisma.repository.findUniqueOrThrow({ where: { id } })).toMatchObject({ status: 'SYNCED', lastCommitSha: head });
    // A run it does execute is left alone.
    await upstream.commit({ 'slow.txt': 'slow\n' });
    server.setFault('abandoned', { kind: 'delay', ms: 1_500 });
    try {
      await h.client.request(SyncRepositoryDocument, { repositoryId: encodeGlobalId('Repository', id) });
      await waitUntil(async () => (await h.app.app.db.prisma.syncRun.count({ where: { repositoryId: id, status: 'RUNNING' } })) === 1);
      expect(await h.app.app.engine.requeueAbandoned()).toBe(0);
    } finally {
      server.setFault('abandoned', null);
    }
    await waitForIdle(h.app.app, id);
  });

  it('kills a git call that hangs, fails the run within its timeout and keeps the last good copy', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'hangs');
    const before = await upstream.head();
    await upstream.commit({ 'x.txt': 'x\n' });
    server.setFault('hangs', { kind: 'hang' });
    const started = Date.now();
    const { state, run } = await syncAndWait(h, repository.id);
    server.setFault('hangs', null);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(run.status).toBe('FAILED');
    expect(run.error).toMatch(/timed out|stalled/);
    expect(state.status).toBe('FAILED');
    expect(state.lastError).toBe(run.error);
    expect(state.lastCommitSha).toBe(before);
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(before);
    const gitProcesses = await processesMatching(upstream.url);
    expect(gitProcesses).toEqual([]);

    const healed = await syncAndWait(h, repository.id);
    expect(healed.run.status).toBe('SUCCEEDED');
    expect(healed.state).toMatchObject({ status: 'SYNCED', lastError: null, lastCommitSha: await upstream.head() });
  });

  it('fails clearly on a git host answering 500, and recovers when it is back', async () => {
    const { upstream, repository } = await addSynced(h, server, 'errors');
    server.setFault('errors', { kind: 'status', status: 500 });
    const { state, run } = await syncAndWait(h, repository.id);
    server.setFault('errors', null);
    expect(run.status).toBe('FAILED');
    expect(run.error).toMatch(/listing the remote refs failed: .* answered HTTP 500/);
    expect(state.status).toBe('FAILED');
    const healed = await syncAndWait(h, repository.id);
    expect(healed.state.lastCommitSha).toBe(await upstream.head());
  });

  it('re-clones a working copy that is not a valid repository (no snapshot to restore)', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'not-a-repo', { archivePolicy: 'NONE' });
    await rm(path.join(copy, '.git'), { recursive: true });
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'FULL' });
    expect(state.status).toBe('SYNCED');
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(await upstream.head());
  });

  it('restores a working copy that is not a valid repository from its snapshot, without a transfer', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'not-a-repo-archived');
    await rm(path.join(copy, '.git'), { recursive: true });
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run).toMatchObject({ status: 'SKIPPED', toSha: await upstream.head() });
    const log = (await h.app.app.db.prisma.syncRun.findUniqueOrThrow({ where: { id: dbId(run.id) } })).phaseLog as { phase: string }[];
    expect(log.map((entry) => entry.phase)).toContain('RESTORING');
    expect(state.status).toBe('SYNCED');
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(await upstream.head());
    expect(await git(['status', '--porcelain'], { cwd: copy })).toBe('');
  });

  it('fetches from a host that speaks only protocol v0 with git fetch; the copy keeps a normal remote-tracking ref', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'v0-only');
    const head = await upstream.commit({ 'v0.txt': 'v0\n' });
    server.setFault('v0-only', { kind: 'protocol-v0' });
    server.resetStats();
    try {
      const { state, run } = await syncAndWait(h, repository.id);
      expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL', toSha: head, filesChanged: 1 });
      expect(state.lastCommitSha).toBe(head);
      // The v0 advertisement for the CHECK, then git fetch's own (it cannot skip it).
      expect(server.repoStats('v0-only')).toMatchObject({ infoRefs: 2, fetches: 1 });
    } finally {
      server.setFault('v0-only', null);
    }
    expect(await git(['rev-parse', 'HEAD', 'refs/remotes/origin/main'], { cwd: copy })).toBe(`${head}\n${head}`);
    await git(['fsck', '--no-progress', '--no-dangling'], { cwd: copy });
  });

  it('a pack cut off mid-transfer fails the run clearly and keeps the copy; the next sync completes it', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'cut-off');
    const before = await upstream.head();
    const head = await upstream.commit({ 'big.txt': randomBytes(192 * 1024).toString('base64') });
    server.setFault('cut-off', { kind: 'cut', afterBytes: 16_000 });
    let failed;
    try {
      failed = await syncAndWait(h, repository.id);
    } finally {
      server.setFault('cut-off', null);
    }
    expect(failed.run).toMatchObject({ status: 'FAILED', strategy: 'INCREMENTAL' });
    expect(failed.run.error).toMatch(/fetching failed: unable to access the remote|fetching failed: the server's answer ended/);
    expect(failed.state).toMatchObject({ status: 'FAILED', lastCommitSha: before });
    expect(await git(['rev-parse', 'HEAD', 'refs/remotes/origin/main'], { cwd: copy })).toBe(`${before}\n${before}`);
    expect(await git(['status', '--porcelain'], { cwd: copy })).toBe('');

    const healed = await syncAndWait(h, repository.id);
    expect(healed.run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL', toSha: head });
    expect(healed.run.bytesReceived).toBeGreaterThan(192 * 1024);
    expect(await git(['rev-parse', 'HEAD', 'refs/remotes/origin/main'], { cwd: copy })).toBe(`${head}\n${head}`);
    await git(['fsck', '--no-progress', '--no-dangling'], { cwd: copy });
  });

  it('repairs a copy whose object store was wiped by re-cloning it', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'wiped');
    await upstream.commit({ 'more.txt': 'more\n' });
    const objects = path.join(copy, '.git', 'objects');
    for (const entry of await readdir(objects)) {
      if (entry !== 'info') await rm(path.join(objects, entry), { recursive: true });
    }
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'FULL' });
    expect(state.lastCommitSha).toBe(await upstream.head());
    expect(await git(['fsck', '--no-progress'], { cwd: copy })).toBe('');
    expect(await readFile(path.join(copy, 'more.txt'), 'utf8')).toBe('more\n');
  });

  it('re-clones a copy that git refuses to work with', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'corrupt-config');
    await upstream.commit({ 'more.txt': 'more\n' });
    await writeFile(path.join(copy, '.git', 'config'), '[core\n\tthis is not git config\n');
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'FULL' });
    expect(state.lastCommitSha).toBe(await upstream.head());
    expect(await git(['fsck', '--no-progress'], { cwd: copy })).toBe('');
  });

  it('removes stale lock files a killed git left behind', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'locked');
    await writeFile(path.join(copy, '.git', 'index.lock'), '');
    await writeFile(path.join(copy, '.git', 'HEAD.lock'), '');
    await upstream.commit({ 'after-lock.txt': 'y\n' });
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });
    expect(state.lastCommitSha).toBe(await upstream.head());
  });

  it('follows the remote default branch when it is renamed upstream', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'renamed');
    await upstream.renameDefaultBranch('trunk');
    await upstream.commit({ 'on-trunk.txt': 'trunk\n' });
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run.status).toBe('SUCCEEDED');
    expect(state).toMatchObject({ branch: 'trunk', defaultBranch: 'trunk', status: 'SYNCED', lastCommitSha: await upstream.head() });
    expect(await git(['rev-parse', '--abbrev-ref', 'HEAD'], { cwd: copy })).toBe('trunk');
  });

  it('marks the repository FAILED when its tracked branch is deleted upstream, keeping the copy', async () => {
    const { upstream, repository, copy } = await addSynced(h, server, 'branch-deleted', { branch: 'feature' });
    expect(repository.branch).toBe('feature');
    const kept = repository.lastCommitSha;
    await upstream.deleteBranch('feature');
    const { state, run } = await syncAndWait(h, repository.id);
    expect(run.status).toBe('FAILED');
    expect(state.status).toBe('FAILED');
    expect(state.lastError).toMatch(/branch "feature" does not exist upstream/);
    expect(state.lastCommitSha).toBe(kept);
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(kept);
  });

  it('removeRepository stops a running sync and deletes the rows and the working copy', async () => {
    const { upstream, repository, id, copy } = await addSynced(h, server, 'removed');
    await upstream.commit({ 'big.txt': 'z'.repeat(200_000) });
    server.setFault('removed', { kind: 'trickle', bytesPerSecond: 2_000 });
    await h.client.request(SyncRepositoryDocument, { repositoryId: repository.id, force: true });
    await waitUntil(async () => (await h.app.app.db.prisma.syncRun.count({ where: { repositoryId: id, status: 'RUNNING' } })) === 1);
    await h.client.request(RemoveRepositoryDocument, { repositoryId: repository.id });
    server.setFault('removed', null);
    expect(h.app.app.engine.isRunning(id)).toBe(false);
    expect(await h.app.app.db.prisma.repository.count({ where: { id } })).toBe(0);
    expect(await h.app.app.db.prisma.syncRun.count({ where: { repositoryId: id } })).toBe(0);
    await expect(readFile(path.join(copy, 'README.md'))).rejects.toThrow(/ENOENT/);
    expect(await processesMatching(upstream.url)).toEqual([]);
    expect(await h.client.errorCode(RepositoryDocument, { id: repository.id })).toBe('NOT_FOUND');
  });
});

describe('engine: concurrency limits', () => {
  let serverA: GitServer;
  let serverB: GitServer;
  afterAll(async () => {
    await serverA?.close();
    await serverB?.close();
  });
  beforeAll(async () => {
    serverA = await startGitServer();
    serverB = await startGitServer();
  });

  it('never runs more than SYNC_CONCURRENCY syncs at once', async () => {
    const h = await harness({ SYNC_CONCURRENCY: '2', SYNC_HOST_CONCURRENCY: '10' });
    try {
      const repos = [];
      for (let index = 0; index < 5; index++) repos.push(await addSynced(h, serverA, `limit-${index}`));
      serverA.setFault('*', { kind: 'delay', ms: 300 });
      const sampler = sampleMax(() => h.app.app.db.prisma.syncRun.count({ where: { status: 'RUNNING' } }));
      await Promise.all(repos.map((repo) => h.client.request(SyncRepositoryDocument, { repositoryId: repo.repository.id, force: true })));
      for (const repo of repos) await waitForIdle(h.app.app, repo.id, 45_000);
      const max = await sampler.stop();
      serverA.setFault('*', null);
      expect(max).toBe(2);
    } finally {
      serverA.setFault('*', null);
      await h.app.close();
    }
  });

  it('limits runs per host so a slow host cannot starve the others', async () => {
    const h = await harness({ SYNC_CONCURRENCY: '4', SYNC_HOST_CONCURRENCY: '1' });
    try {
      const slow = [];
      for (let index = 0; index < 3; index++) slow.push(await addSynced(h, serverA, `slow-${index}`));
      const fast = [];
      for (let index = 0; index < 3; index++) fast.push(await addSynced(h, serverB, `fast-${index}`));
      serverA.setFault('*', { kind: 'delay', ms: 1_500 });
      const slowIds = slow.map((repo) => repo.id);
      const sampler = sampleMax(() => h.app.app.db.prisma.syncRun.count({ where: { status: 'RUNNING', repositoryId: { in: slowIds } } }));
      for (const repo of slow) await h.client.request(SyncRepositoryDocument, { repositoryId: repo.repository.id, force: true });
      for (const repo of fast) await h.client.request(SyncRepositoryDocument, { repositoryId: repo.repository.id, force: true });
      for (const repo of fast) await waitForIdle(h.app.app, repo.id, 20_000);
      const slowStillPending = await h.app.app.db.prisma.syncRun.count({ where: { repositoryId: { in: slowIds }, activeSlot: { not: null } } });
      expect(slowStillPending).toBeGreaterThan(0);
      for (const repo of slow) await waitForIdle(h.app.app, repo.id, 45_000);
      expect(await sampler.stop()).toBe(1);
    } finally {
      serverA.setFault('*', null);
      await h.app.close();
    }
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('condition not met in time');
}

/** Live processes whose command line mentions the text (git children of this test's app). */
async function processesMatching(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) found.push(cmdline.replace(/\0/g, ' '));
  }
  return found;
}

describe('engine: shutdown', () => {
  let server: GitServer;
  beforeAll(async () => {
    server = await startGitServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('a run whose claim is under way when the app closes is queued again, not started behind the close', async () => {
    const upstream = await createUpstream(server, 'engine/closing');
    for (let attempt = 0; attempt < 6; attempt++) {
      const testApp = await startTestApp();
      const client = await testApp.client();
      const projectId = (await client.request(CreateProjectDocument, { name: 'closing' })).createProject.project.id;
      // addRepository queues the INITIAL run and starts claiming it; the close comes at once.
      await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
      await testApp.close({ keep: true });
      const database = new pg.Client({ connectionString: testApp.databaseUrl! });
      await database.connect();
      try {
        const { rows } = await database.query<{ status: string; activeSlot: string | null }>(`SELECT status, "activeSlot" FROM "SyncRun"`);
        expect(rows).toHaveLength(1);
        // Queued again (the next start runs it), or finished within the grace period: never left RUNNING.
        expect(['QUEUED', 'SUCCEEDED']).toContain(rows[0]!.status);
        expect(rows[0]!.activeSlot).not.toBe('RUNNING');
      } finally {
        await database.end();
        await dropDatabase(new URL(testApp.databaseUrl!).pathname.slice(1));
        await rm(testApp.dataDir, { recursive: true, force: true });
      }
    }
  });
});
