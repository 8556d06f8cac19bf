import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  RefsDocument,
  RepositoryDocument,
  SyncRepositoryDocument,
  SyncStatusDocument,
  type SyncStatusSubscription,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { TestClient } from './support/client.js';
import { createUpstream, git } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

let server: GitServer;
let testApp: TestApp;
let client: TestClient;
let projectId: string;

beforeAll(async () => {
  server = await startGitServer();
  testApp = await startTestApp();
  client = await testApp.client();
  projectId = (await client.request(CreateProjectDocument, { name: 'sync' })).createProject.project.id;
});

afterAll(async () => {
  await testApp?.close();
  await server?.close();
});

async function addRepository(name: string, files: Record<string, string> = { 'README.md': `# ${name}\n` }) {
  const upstream = await createUpstream(server, name, { files });
  const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
  return { upstream, repository: addRepository.repository, webhook: addRepository.webhook };
}

function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
}

describe('sync of a plain git repository', () => {
  it('adds a repository, syncs it to the upstream head, and the subscription sees every phase in order', async () => {
    server.setFault('first', { kind: 'delay', ms: 400 });
    const { upstream, repository, webhook } = await addRepository('first', { 'README.md': '# first\n', 'src/a.ts': 'export const a = 1;\n' });
    expect(repository.status).toBe('PENDING');
    expect(repository.provider).toBe('GIT');
    expect(repository.branch).toBe('main');
    expect(repository.defaultBranch).toBe('main');
    expect(webhook.autoConfigured).toBe(false);

    const subscription = client.subscribe(SyncStatusDocument, { repositoryId: repository.id });
    try {
      const events = await subscription.waitFor((all) => all.some((event) => ['DONE', 'FAILED'].includes(event.syncStatus.phase)));
      server.setFault('first', null);
      const phases = events.map((event) => event.syncStatus).filter((event) => event.progress === null || event.phase === 'DONE');
      expect(phases.map((event) => event.phase)).toEqual(['QUEUED', 'CHECKING', 'CLONING', 'APPLYING', 'INDEXING', 'ARCHIVING', 'DONE']);
      const done = phases.at(-1)!;
      expect(done.status).toBe('SYNCED');
      expect(done.commitSha).toBe(await upstream.head());
      expect(new Set(events.map((event: SyncStatusSubscription) => event.syncStatus.repositoryId))).toEqual(new Set([repository.id]));
    } finally {
      await subscription.close();
    }

    const synced = await waitForRepository(client, repository.id, (state) => state.status === 'SYNCED');
    expect(synced.lastCommitSha).toBe(await upstream.head());
    expect(synced.lastSyncedAt).not.toBeNull();
    const run = synced.syncRuns.edges[0]!.node;
    expect(run).toMatchObject({ trigger: 'INITIAL', status: 'SUCCEEDED', strategy: 'FULL', fromSha: null, toSha: await upstream.head(), filesChanged: 2 });
    const workingCopy = path.join(testApp.dataDir, 'repos', dbId(repository.id));
    expect(await readFile(path.join(workingCopy, 'src/a.ts'), 'utf8')).toBe('export const a = 1;\n');
  });

  it('fetches a new upstream commit on syncRepository and records from/to on the run', async () => {
    const { upstream, repository } = await addRepository('second', { 'README.md': '# second\n', 'src/a.ts': 'export const a = 1;\n' });
    const first = await waitForRepository(client, repository.id, (state) => state.status === 'SYNCED');
    const before = first.lastCommitSha;
    // Added (two, one nested deep), modified and deleted files: filesChanged counts each path once.
    const after = await upstream.commit(
      { 'src/new.ts': 'export {};\n', 'src/deep/er/x.ts': 'export const x = 1;\n', 'README.md': '# changed\n', 'src/a.ts': null },
      'second commit',
    );
    const changedPaths = (await git(['diff', '--name-only', before!, after], { cwd: upstream.bareDir })).split('\n');
    expect(changedPaths).toHaveLength(4);

    const { syncRepository } = await client.request(SyncRepositoryDocument, { repositoryId: repository.id });
    expect(syncRepository.run.trigger).toBe('MANUAL');
    await waitForIdle(testApp.app, dbId(repository.id));
    const synced = await waitForRepository(client, repository.id, (state) => state.lastCommitSha === after);
    expect(synced.status).toBe('SYNCED');
    const run = synced.syncRuns.edges[0]!.node;
    expect(run).toMatchObject({ id: syncRepository.run.id, status: 'SUCCEEDED', strategy: 'INCREMENTAL', fromSha: before, toSha: after, filesChanged: 4 });
    expect(Date.parse(run.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(run.startedAt!));
    const workingCopy = path.join(testApp.dataDir, 'repos', dbId(repository.id));
    expect(await git(['rev-parse', 'HEAD'], { cwd: workingCopy })).toBe(after);
  });

  it('ends SKIPPED without any fetch when upstream has not changed', async () => {
    const { repository } = await addRepository('unchanged');
    await waitForRepository(client, repository.id, (state) => state.status === 'SYNCED');
    await waitForIdle(testApp.app, dbId(repository.id));
    server.resetStats();

    const { syncRepository } = await client.request(SyncRepositoryDocument, { repositoryId: repository.id });
    await waitForIdle(testApp.app, dbId(repository.id));
    const state = (await client.request(RepositoryDocument, { id: repository.id, runs: 1 })).repository!;
    expect(state.syncRuns.edges[0]!.node).toMatchObject({ id: syncRepository.run.id, status: 'SKIPPED', phase: 'SKIPPED', bytesReceived: 0 });
    expect(state.status).toBe('SYNCED');
    expect(server.repoStats('unchanged').fetches).toBe(0);
    expect(server.repoStats('unchanged').lsRefs).toBe(1);
  });

  it('follows a force-pushed (rewritten) upstream history', async () => {
    const { upstream, repository } = await addRepository('rewritten');
    const second = await upstream.commit({ 'a.txt': 'one\n' });
    await client.request(SyncRepositoryDocument, { repositoryId: repository.id });
    await waitForRepository(client, repository.id, (state) => state.lastCommitSha === second);
    await waitForIdle(testApp.app, dbId(repository.id));

    const rewritten = await upstream.forcePush('amend');
    await client.request(SyncRepositoryDocument, { repositoryId: repository.id });
    await waitForIdle(testApp.app, dbId(repository.id));
    const state = (await client.request(RepositoryDocument, { id: repository.id, runs: 1 })).repository!;
    expect(state.status).toBe('SYNCED');
    expect(state.lastCommitSha).toBe(rewritten);
    const workingCopy = path.join(testApp.dataDir, 'repos', dbId(repository.id));
    expect(await git(['rev-parse', 'HEAD'], { cwd: workingCopy })).toBe(rewritten);
    expect(await git(['status', '--porcelain'], { cwd: workingCopy })).toBe('');
  });

  it('records the branches and tags upstream lists', async () => {
    const { upstream, repository } = await addRepository('refs');
    await waitForRepository(client, repository.id, (state) => state.status === 'SYNCED');
    await waitForIdle(testApp.app, dbId(repository.id));
    const main = await upstream.head();
    const dev = await upstream.commit({ 'dev.txt': 'dev\n' }, 'on dev', 'dev');
    await upstream.tag('v1.0.0', main);
    await client.request(SyncRepositoryDocument, { repositoryId: repository.id });
    await waitForIdle(testApp.app, dbId(repository.id));
    const all = (await client.request(RefsDocument, { id: repository.id })).repository!.refs;
    expect(all).toEqual([
      { kind: 'BRANCH', name: 'dev', sha: dev },
      { kind: 'BRANCH', name: 'main', sha: main },
      { kind: 'TAG', name: 'v1.0.0', sha: main },
    ]);
    const tags = (await client.request(RefsDocument, { id: repository.id, kind: 'TAG' })).repository!.refs;
    expect(tags.map((ref) => ref.name)).toEqual(['v1.0.0']);
  });

  it('coalesces 50 concurrent syncRepository calls: at most 2 runs transfer anything', async () => {
    const { upstream, repository } = await addRepository('storm');
    await waitForRepository(client, repository.id, (state) => state.status === 'SYNCED');
    await waitForIdle(testApp.app, dbId(repository.id));
    const target = await upstream.commit({ 'storm.txt': 'storm\n' });
    server.resetStats();
    const before = await testApp.app.db.prisma.syncRun.count({ where: { repositoryId: dbId(repository.id) } });

    const results = await Promise.all(
      Array.from({ length: 50 }, () => client.request(SyncRepositoryDocument, { repositoryId: repository.id })),
    );
    await waitForIdle(testApp.app, dbId(repository.id));
    const runs = await testApp.app.db.prisma.syncRun.findMany({
      where: { repositoryId: dbId(repository.id) },
      orderBy: { queuedAt: 'asc' },
      skip: before,
    });
    expect(runs.length).toBeGreaterThanOrEqual(1);
    // A trigger arriving once the merged run is running queues one more, which finds nothing new.
    expect(runs.filter((run) => run.status !== 'SKIPPED').length).toBeLessThanOrEqual(2);
    expect(runs.map((run) => run.status)).not.toContain('FAILED');
    expect(runs.length).toBeLessThan(50 / 5);
    expect(runs.reduce((sum, run) => sum + run.triggerCount, 0)).toBe(50);
    expect(new Set(results.map((result) => result.syncRepository.run.id)).size).toBe(runs.length);
    expect(server.repoStats('storm').fetches).toBeLessThanOrEqual(2);
    const state = (await client.request(RepositoryDocument, { id: repository.id, runs: 1 })).repository!;
    expect(state.lastCommitSha).toBe(target);
  });
});
