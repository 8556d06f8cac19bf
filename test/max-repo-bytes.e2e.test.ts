import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { AddCredentialDocument, AddRepositoryDocument, CreateProjectDocument, RepositoryDocument, SyncRepositoryDocument, type AddRepositoryInput } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, TestClient } from './support/client.js';
import { dropDatabase } from './support/database.js';
import { createUpstream, git, type Upstream } from './support/gitFixtures.js';
import { startFakeGithub, type FakeGithub } from './support/githubApi.js';
import { startFakeGitlab, type FakeGitlab } from './support/gitlabApi.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { exists } from './support/wait.js';

// REPOLENS_MAX_REPO_BYTES: a repository over the limit is refused clearly, at
// addRepository when its platform (the GitHub and GitLab fakes, on the real
// bare repositories of a git server) reports the size, and during a sync as
// soon as a clone, a fetch or a DELTA takes it past the limit; the last good
// copy stays as it was.

const MiB = 1024 * 1024;
const LIMIT = MiB;
const GITHUB_TOKEN = `ghp_${randomBytes(18).toString('hex')}`;
const GITLAB_TOKEN = `glpat-${randomBytes(10).toString('hex')}`;

let server: GitServer;
let github: FakeGithub;
let gitlab: FakeGitlab;
let testApp: TestApp;
let client: TestClient;
let projectId: string;
const credentials: Record<'GITHUB' | 'GITLAB', string> = { GITHUB: '', GITLAB: '' };

const dbId = (globalId: string): string => decodeGlobalId(globalId).id;
const copyOf = (repositoryId: string): string => path.join(testApp.dataDir, 'repos', repositoryId);

/** `bytes` of random base64 text: git's compression only takes it to about 3/4 of that, so its pack stays big. */
function incompressible(bytes: number): string {
  return randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64');
}

async function start(maxRepoBytes: number, reuse?: TestApp): Promise<void> {
  testApp = await startTestApp({
    env: { REPOLENS_MAX_REPO_BYTES: String(maxRepoBytes), GITHUB_API_URL: github.url, GITLAB_URL: gitlab.url },
    ...(reuse ? { dataDir: reuse.dataDir, databaseUrl: reuse.databaseUrl! } : {}),
  });
  client = await testApp.client('limits');
}

async function add(input: Omit<AddRepositoryInput, 'projectId'>): Promise<string> {
  const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, archivePolicy: 'NONE', ...input } });
  return addRepository.repository.id;
}

/** Waits for the repository's runs to end; its state with its newest run. */
async function settled(globalId: string) {
  await waitForIdle(testApp.app, dbId(globalId), 60_000);
  const state = (await client.request(RepositoryDocument, { id: globalId, runs: 1 })).repository!;
  return { state, run: state.syncRuns.edges[0]!.node };
}

async function syncAndWait(globalId: string) {
  await client.request(SyncRepositoryDocument, { repositoryId: globalId });
  return settled(globalId);
}

async function addSynced(upstream: Upstream, input: Omit<AddRepositoryInput, 'projectId' | 'url'> = {}): Promise<string> {
  const globalId = await add({ url: upstream.url, ...input });
  await waitForRepository(client, globalId, (repository) => repository.status === 'SYNCED');
  await waitForIdle(testApp.app, dbId(globalId));
  return globalId;
}

beforeAll(async () => {
  server = await startGitServer();
  github = await startFakeGithub({ gitRoot: server.root, tokens: { [GITHUB_TOKEN]: { login: 'limit-bot', scopes: ['repo'] } } });
  gitlab = await startFakeGitlab({ gitRoot: server.root, tokens: { [GITLAB_TOKEN]: { username: 'limit-bot', scopes: ['read_api', 'read_repository'] } } });
  await start(LIMIT);
  projectId = (await client.request(CreateProjectDocument, { name: 'limits' })).createProject.project.id;
  const host = new URL(server.url).host;
  credentials.GITHUB = (await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host, token: GITHUB_TOKEN } })).addCredential.credential.id;
  credentials.GITLAB = (await client.request(AddCredentialDocument, { input: { provider: 'GITLAB', host, token: GITLAB_TOKEN } })).addCredential.credential.id;
});

afterAll(async () => {
  await testApp?.close();
  await github?.close();
  await gitlab?.close();
  await server?.close();
});

describe('configuration', () => {
  it('is optional; a value that is not a positive whole number of bytes stops the start with one line naming it', () => {
    expect(loadConfig({}).maxRepoBytes).toBeUndefined();
    expect(loadConfig({ REPOLENS_MAX_REPO_BYTES: '1048576' }).maxRepoBytes).toBe(1048576);
    for (const value of ['0', '-1', 'ten', '1.5', '']) {
      const error = (() => {
        try {
          loadConfig({ REPOLENS_MAX_REPO_BYTES: value });
        } catch (caught) {
          return caught;
        }
      })();
      expect(error, value).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/^invalid configuration: REPOLENS_MAX_REPO_BYTES \S.*$/);
    }
  });
});

describe('addRepository', () => {
  it.each(['GITHUB', 'GITLAB'] as const)('refuses a %s repository its platform reports over the limit, storing nothing and not cloning', async (provider) => {
    const name = `big-${provider.toLowerCase()}/too-big`;
    const upstream = await createUpstream(server, name, { files: { 'data.txt': incompressible(2 * MiB) } });
    const rows = await testApp.app.db.prisma.repository.count();
    const result = await client.raw(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider, credentialId: credentials[provider] } });
    const error = result.errors?.[0] as unknown as GraphQLErrorShape | undefined;
    expect(error?.extensions?.code, JSON.stringify(result)).toBe('BAD_USER_INPUT');
    const platform = provider === 'GITHUB' ? 'GitHub' : 'GitLab';
    expect(error?.message).toMatch(new RegExp(`^${name} is larger than REPOLENS_MAX_REPO_BYTES \\(${platform} reports \\d\\.\\d MiB; the limit is 1\\.0 MiB\\)$`));
    expect(result.data ?? null).toBeNull();
    expect(await testApp.app.db.prisma.repository.count()).toBe(rows);
    expect(server.repoStats(name).requests).toBe(0);
  });
});

describe('a sync that passes the limit', () => {
  it('a clone fails clearly; no working copy and no temporary folder is left, the repository is FAILED', async () => {
    const upstream = await createUpstream(server, 'clone/too-big', { files: { 'data.txt': incompressible(3 * MiB) } });
    const globalId = await add({ url: upstream.url });
    const { state, run } = await settled(globalId);
    expect(run).toMatchObject({ status: 'FAILED', strategy: 'FULL', error: 'repository is larger than REPOLENS_MAX_REPO_BYTES (received more than 1.0 MiB; the limit is 1.0 MiB)' });
    expect(state).toMatchObject({ status: 'FAILED', lastError: run.error, lastCommitSha: null });
    expect(await exists(copyOf(dbId(globalId)))).toBe(false);
    expect(await readdir(path.join(testApp.dataDir, 'tmp'))).toEqual([]);
  });

  it('a slow clone is stopped as it passes the limit, not when it is done', async () => {
    const upstream = await createUpstream(server, 'clone/slow', { files: { 'data.txt': incompressible(8 * MiB) } });
    // 1 MiB/s: the whole pack (about 6 MiB) would take six seconds; git says how much it has received every second.
    server.setFault('clone/slow', { kind: 'trickle', bytesPerSecond: MiB });
    try {
      const globalId = await add({ url: upstream.url });
      const { state, run } = await settled(globalId);
      expect(run).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^repository is larger than REPOLENS_MAX_REPO_BYTES/) });
      expect(state.status).toBe('FAILED');
      expect(server.repoStats('clone/slow').bytesSent).toBeLessThan(4 * MiB);
      expect(await exists(copyOf(dbId(globalId)))).toBe(false);
    } finally {
      server.setFault('clone/slow', null);
    }
  });

  it('a DELTA stops downloading from the API and fails clearly, without falling back to a git fetch', async () => {
    const upstream = await createUpstream(server, 'delta-octo/grows');
    const globalId = await addSynced(upstream, { provider: 'GITHUB', credentialId: credentials.GITHUB, syncStrategy: 'DELTA' });
    const before = await upstream.head();
    await upstream.commit({ 'data.txt': incompressible(2 * MiB) });
    server.resetStats();
    const { state, run } = await syncAndWait(globalId);
    expect(run).toMatchObject({ status: 'FAILED', strategy: 'DELTA' });
    expect(run.error).toMatch(
      /^repository is larger than REPOLENS_MAX_REPO_BYTES \(the working copy holds \d+\.\d KiB and the platform's API sent more than \d+\.\d KiB; the limit is 1\.0 MiB\)$/,
    );
    expect(state).toMatchObject({ status: 'FAILED', lastError: run.error, lastCommitSha: before });
    expect(server.repoStats('delta-octo/grows').fetches).toBe(0);
    const copy = copyOf(dbId(globalId));
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(before);
    await git(['fsck', '--no-progress', '--no-dangling'], { cwd: copy });
  });

  it("git's own fetch (a host speaking only protocol v0) is refused too; the copy's branch and work tree stay at the old head", async () => {
    const upstream = await createUpstream(server, 'fetch/v0');
    const globalId = await addSynced(upstream);
    const copy = copyOf(dbId(globalId));
    const before = await upstream.head();
    await upstream.commit({ 'data.txt': incompressible(2 * MiB) });
    server.setFault('fetch/v0', { kind: 'protocol-v0' });
    try {
      const { state, run } = await syncAndWait(globalId);
      expect(run).toMatchObject({ status: 'FAILED', strategy: 'INCREMENTAL' });
      expect(run.error).toMatch(/^repository is larger than REPOLENS_MAX_REPO_BYTES \(the working copy holds \d+\.\d KiB and the fetch received more than \d+\.\d KiB; the limit is 1\.0 MiB\)$/);
      expect(state).toMatchObject({ status: 'FAILED', lastError: run.error, lastCommitSha: before });
    } finally {
      server.setFault('fetch/v0', null);
    }
    expect(await git(['rev-parse', 'HEAD', 'refs/heads/main'], { cwd: copy })).toBe(`${before}\n${before}`);
    expect(await git(['status', '--porcelain', '--untracked-files=all'], { cwd: copy })).toBe('');
    await git(['fsck', '--no-progress', '--no-dangling'], { cwd: copy });
  });

  // Last: it restarts the service with a raised limit.
  it('an incremental fetch fails clearly and keeps the copy at the old head; with the limit raised, it syncs', async () => {
    const upstream = await createUpstream(server, 'fetch/grows');
    const globalId = await addSynced(upstream);
    const copy = copyOf(dbId(globalId));
    const before = await upstream.head();
    const head = await upstream.commit({ 'data.txt': incompressible(2 * MiB) });

    const failed = await syncAndWait(globalId);
    expect(failed.run).toMatchObject({ status: 'FAILED', strategy: 'INCREMENTAL' });
    expect(failed.run.error).toMatch(
      /^repository is larger than REPOLENS_MAX_REPO_BYTES \(the working copy holds \d+\.\d KiB and the fetch received more than \d+\.\d KiB; the limit is 1\.0 MiB\)$/,
    );
    expect(failed.state).toMatchObject({ status: 'FAILED', lastError: failed.run.error, lastCommitSha: before });
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(before);
    expect(await git(['status', '--porcelain', '--untracked-files=all'], { cwd: copy })).toBe('');
    await git(['fsck', '--no-progress', '--no-dangling'], { cwd: copy });

    const previous = testApp;
    await previous.close({ keep: true });
    try {
      await start(64 * MiB, previous);
      const healed = await syncAndWait(globalId);
      expect(healed.run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL', toSha: head });
      expect(healed.state).toMatchObject({ status: 'SYNCED', lastError: null, lastCommitSha: head });
      expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(head);
      await git(['fsck', '--no-progress', '--no-dangling'], { cwd: copy });
    } finally {
      await testApp.close();
      await dropDatabase(new URL(previous.databaseUrl!).pathname.slice(1));
      await rm(previous.dataDir, { recursive: true, force: true });
    }
  });
});
