import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GithubApi } from '../src/providers/githubApi.js';
import { PlatformError } from '../src/providers/platform.js';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { AddCredentialDocument, AddRepositoryDocument, CreateProjectDocument, RemoveRepositoryDocument } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, TestClient } from './support/client.js';
import { createUpstream, type Upstream } from './support/gitFixtures.js';
import { startFakeGithub, type FakeGithub } from './support/githubApi.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { deliver, githubHeaders, loadFixture, retarget } from './support/webhooks.js';

// GitHub as a provider: the REST API (a fake that follows GitHub's documented
// formats, backed by the real bare repositories of a git server) answers the
// scheduled CHECK conditionally, and checks tokens before they are stored.

const TOKEN = `ghp_${randomBytes(18).toString('hex')}`;
const LOGIN = 'sync-bot';
/** A collaborator's token: reads, but may not manage hooks. */
const READER_TOKEN = `ghp_${randomBytes(18).toString('hex')}`;
const PUBLIC_URL = 'https://repolens.example.test';

let server: GitServer;
let github: FakeGithub;
let testApp: TestApp;
let client: TestClient;
let projectId: string;

const dbId = (globalId: string): string => decodeGlobalId(globalId).id;
const silent = pino({ level: 'silent' });

function api(options: { token?: string; maxRateLimitWaitS?: number } = {}): GithubApi {
  return new GithubApi({ baseUrl: github.url, token: options.token ?? TOKEN, timeoutMs: 10_000, maxRateLimitWaitS: options.maxRateLimitWaitS ?? 30, logger: silent });
}

beforeAll(async () => {
  // Private repositories: git asks for the token as GitHub does (x-access-token:<token>).
  server = await startGitServer({ auth: { username: 'x-access-token', password: TOKEN, repos: (name) => name.startsWith('private-') } });
  github = await startFakeGithub({
    gitRoot: server.root,
    tokens: { [TOKEN]: { login: LOGIN, scopes: ['repo', 'admin:repo_hook'] }, [READER_TOKEN]: { login: 'reader', scopes: ['repo'], hookAdmin: false } },
    privateRepos: (name) => name.startsWith('private-'),
  });
  testApp = await startTestApp({ env: { GITHUB_API_URL: github.url, REPOLENS_PROVIDER_MAX_WAIT_S: '3', PUBLIC_URL } });
  client = await testApp.client('github');
  projectId = (await client.request(CreateProjectDocument, { name: 'github' })).createProject.project.id;
});

afterAll(async () => {
  await testApp?.close();
  await github?.close();
  await server?.close();
});

beforeEach(() => {
  github.setRateLimit(LOGIN, { used: 0 });
  github.resetRequests();
});

describe('GitHub REST client (Octokit) against the documented API', () => {
  it('reads the token owner with its scopes, and refuses a bad token as an auth failure', async () => {
    expect(await api().tokenOwner()).toEqual({ login: LOGIN, scopes: ['repo', 'admin:repo_hook'] });
    const refused = await api({ token: 'ghp_not-a-token' }).tokenOwner().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PlatformError);
    expect(refused).toMatchObject({ failure: 'auth', status: 401 });
    expect((refused as Error).message).toContain('Bad credentials');
    expect((refused as Error).message).not.toContain('ghp_not-a-token');
  });

  it('describes a repository; a private one is not found without a token', async () => {
    await createUpstream(server, 'private-octo/info', { branch: 'trunk' });
    expect(await api().repositoryInfo('private-octo/info')).toMatchObject({ defaultBranch: 'trunk', private: true });
    expect((await api().repositoryInfo('private-octo/info')).sizeBytes).toBeGreaterThan(0);
    const anonymous = new GithubApi({ baseUrl: github.url, timeoutMs: 10_000, maxRateLimitWaitS: 0, logger: silent });
    await expect(anonymous.repositoryInfo('private-octo/info')).rejects.toMatchObject({ failure: 'not-found', status: 404 });
  });

  it('asks for a branch head with its ETag: unchanged is a 304 that costs no rate limit, a push changes the answer', async () => {
    const upstream = await createUpstream(server, 'octo/etag');
    const first = await api().branchHead('octo/etag', 'main', null);
    expect(first).toEqual({ changed: true, sha: await upstream.head(), etag: expect.stringMatching(/^"[0-9a-f]{64}"$/) });
    const etag = first.changed ? first.etag : null;
    const used = github.rateLimit(LOGIN).used;

    expect(await api().branchHead('octo/etag', 'main', etag)).toEqual({ changed: false });
    expect(github.rateLimit(LOGIN).used).toBe(used);
    expect(github.requests.at(-1)).toMatchObject({ status: 304, ifNoneMatch: etag, accept: 'application/vnd.github.sha' });

    const pushed = await upstream.commit({ 'new.txt': 'new\n' });
    expect(await api().branchHead('octo/etag', 'main', etag)).toMatchObject({ changed: true, sha: pushed });
    expect(github.rateLimit(LOGIN).used).toBe(used + 1);
  });

  it('compares two commits file by file (added, modified, removed, renamed, file turned symlink) and reads files and symlinks', async () => {
    const upstream = await createUpstream(server, 'octo/compare', { files: { 'keep.txt': 'keep\n', 'edit.txt': 'one\n', 'gone.txt': 'gone\n', 'old-name.txt': 'renamed content, long enough to be found as a rename\n', 'link-later': 'a file\n' } });
    const base = await upstream.head();
    const head = await upstream.commit({ 'new/added.txt': 'added\n', 'edit.txt': 'two\n', 'gone.txt': null, 'old-name.txt': null, 'new-name.txt': 'renamed content, long enough to be found as a rename\n', 'link-later': { symlink: 'keep.txt' } });
    const comparison = await api().compare('octo/compare', base, head);
    expect(comparison.complete).toBe(true);
    const byPath = Object.fromEntries(comparison.changes.map((change) => [change.path, change]));
    expect(Object.keys(byPath).sort()).toEqual(['edit.txt', 'gone.txt', 'link-later', 'new-name.txt', 'new/added.txt']);
    expect(byPath['new/added.txt']).toMatchObject({ status: 'added', previousPath: null, blobSha: expect.stringMatching(/^[0-9a-f]{40}$/), mode: null });
    expect(byPath['edit.txt']).toMatchObject({ status: 'modified' });
    expect(byPath['gone.txt']).toMatchObject({ status: 'removed', blobSha: null });
    expect(byPath['new-name.txt']).toMatchObject({ status: 'renamed', previousPath: 'old-name.txt' });
    expect(byPath['link-later']).toMatchObject({ status: 'changed' });

    expect(await api().fileContent('octo/compare', 'edit.txt', head)).toEqual({ content: Buffer.from('two\n'), blobSha: byPath['edit.txt']!.blobSha, kind: 'file' });
    expect(await api().fileContent('octo/compare', 'link-later', head)).toMatchObject({ content: Buffer.from('keep.txt'), kind: 'symlink' });
    await expect(api().fileContent('octo/compare', 'gone.txt', head)).rejects.toMatchObject({ failure: 'not-found' });
    // The other way round the history is not a descendant: the list is not the whole story.
    expect((await api().compare('octo/compare', head, base)).complete).toBe(false);
  });

  it('reports a missing branch or repository as not found', async () => {
    await createUpstream(server, 'octo/missing');
    await expect(api().branchHead('octo/missing', 'no-such-branch', null)).rejects.toMatchObject({ failure: 'not-found', status: 422 });
    await expect(api().branchHead('octo/nothing-here', 'main', null)).rejects.toMatchObject({ failure: 'not-found', status: 404 });
  });

  it('waits for an exhausted rate limit to reset, then answers', async () => {
    const upstream = await createUpstream(server, 'octo/limited');
    const reset = Math.floor(Date.now() / 1000) + 2;
    github.setRateLimit(LOGIN, { used: 5000, reset });
    const started = Date.now();
    const head = await api().branchHead('octo/limited', 'main', null);
    expect(head).toMatchObject({ changed: true, sha: await upstream.head() });
    // GitHub's advice, which the client follows: retry after x-ratelimit-reset, not before.
    expect(Date.now()).toBeGreaterThanOrEqual(reset * 1000);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(github.requests.map((request) => request.status)).toEqual([403, 200]);
  });

  it('fails a call at once when the rate limit resets later than it may wait', async () => {
    await createUpstream(server, 'octo/long-limit');
    github.setRateLimit(LOGIN, { used: 5000, reset: Math.floor(Date.now() / 1000) + 3600 });
    const started = Date.now();
    const error = await api({ maxRateLimitWaitS: 60 }).branchHead('octo/long-limit', 'main', null).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ failure: 'rate-limited', status: 403 });
    expect((error as Error).message).toMatch(/rate limited until \d{4}-/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

it('gives up on an answer that does not come within the time limit, and says so', async () => {
  await createUpstream(server, 'octo/slow');
  github.setDelay(3000);
  try {
    const started = Date.now();
    const slow = new GithubApi({ baseUrl: github.url, token: TOKEN, timeoutMs: 300, maxRateLimitWaitS: 30, logger: silent });
    const error = await slow.branchHead('octo/slow', 'main', null).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ failure: 'unavailable' });
    expect((error as Error).message).toMatch(/timed out/);
    expect(Date.now() - started).toBeLessThan(2500);
  } finally {
    github.setDelay(0);
  }
});

describe('GitHub credentials', () => {
  it('checks a token with the API before storing it: login and scopes from GitHub', async () => {
    const host = new URL(server.url).host;
    const result = await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host, token: TOKEN } });
    expect(result.addCredential.credential).toMatchObject({ provider: 'GITHUB', host, login: LOGIN, scopes: ['repo', 'admin:repo_hook'] });
    expect(github.requests.map((request) => `${request.method} ${request.path} ${request.status}`)).toEqual(['GET /user 200']);
  });

  it('refuses a token GitHub refuses: a clear error, nothing stored, the token nowhere', async () => {
    const bad = `ghp_${randomBytes(18).toString('hex')}`;
    const before = await testApp.app.db.prisma.credential.count();
    const result = await client.raw(AddCredentialDocument, { input: { provider: 'GITHUB', host: new URL(server.url).host, token: bad } });
    expect((result.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.message).toMatch(/token was refused.*Bad credentials/);
    expect(JSON.stringify(result)).not.toContain(bad);
    expect(testApp.logs.join('\n')).not.toContain(bad);
    expect(await testApp.app.db.prisma.credential.count()).toBe(before);
  });

  it('leaves a token for a host without a known API unchecked (plain git hosts)', async () => {
    const result = await client.request(AddCredentialDocument, { input: { provider: 'GIT', host: 'git.example.com', login: 'someone', token: 'anything' } });
    expect(result.addCredential.credential).toMatchObject({ provider: 'GIT', login: 'someone', scopes: [] });
    expect(github.requests).toEqual([]);
  });
});

describe('scheduled checks through the GitHub API', () => {
  let upstream: Upstream;
  let repositoryId: string;

  /** One scheduled check, as the scheduler makes it when the repository is due; returns the run's status. */
  async function scheduledCheck(): Promise<string> {
    await testApp.app.db.prisma.repository.update({ where: { id: repositoryId }, data: { nextCheckAt: new Date(Date.now() - 1000) } });
    server.resetStats();
    github.resetRequests();
    expect(await testApp.app.scheduler.pass()).toBeGreaterThanOrEqual(1);
    await waitForIdle(testApp.app, repositoryId);
    const run = await testApp.app.db.prisma.syncRun.findFirst({ where: { repositoryId, trigger: 'SCHEDULED' }, orderBy: { queuedAt: 'desc' } });
    return run!.status;
  }

  const commitChecks = () => github.requests.filter((request) => request.path.includes('/commits/'));

  beforeAll(async () => {
    upstream = await createUpstream(server, 'private-octo/polled');
    const credential = await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host: new URL(server.url).host, token: TOKEN } });
    const added = await client.request(AddRepositoryDocument, {
      input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId: credential.addCredential.credential.id },
    });
    repositoryId = dbId(added.addRepository.repository.id);
    await waitForRepository(client, added.addRepository.repository.id, (repository) => repository.status === 'SYNCED');
    await waitForIdle(testApp.app, repositoryId);
  });

  it('synced the private repository with the token, which is nowhere on disk or in the log', async () => {
    const config = await readFile(path.join(testApp.dataDir, 'repos', repositoryId, '.git', 'config'), 'utf8');
    expect(config).not.toContain(TOKEN);
    expect(testApp.logs.join('\n')).not.toContain(TOKEN);
  });

  it('an unchanged branch costs one API request and no git request; the next check is a 304', async () => {
    expect(await scheduledCheck()).toBe('SKIPPED');
    expect(commitChecks().map((request) => request.status)).toEqual([200]);
    expect(server.repoStats('private-octo/polled').requests).toBe(0);
    const stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } });
    expect(stored.checkEtag).toMatch(new RegExp(`^${await upstream.head()} "`));

    const used = github.rateLimit(LOGIN).used;
    expect(await scheduledCheck()).toBe('SKIPPED');
    expect(commitChecks()).toEqual([expect.objectContaining({ status: 304, ifNoneMatch: stored.checkEtag!.split(' ')[1] })]);
    expect(github.rateLimit(LOGIN).used).toBe(used);
    expect(server.repoStats('private-octo/polled').requests).toBe(0);
  });

  it('a moved branch is fetched; the ETag of the old commit is not sent again', async () => {
    const pushed = await upstream.commit({ 'CHANGELOG.md': 'moved\n' });
    expect(await scheduledCheck()).toBe('SUCCEEDED');
    expect(server.repoStats('private-octo/polled').fetches).toBeGreaterThanOrEqual(1);
    let stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } });
    expect(stored.lastCommitSha).toBe(pushed);

    // The stored ETag names the previous commit: asked without it, then 304 from the next check on.
    expect(await scheduledCheck()).toBe('SKIPPED');
    expect(commitChecks()).toEqual([expect.objectContaining({ status: 200, ifNoneMatch: undefined })]);
    stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } });
    expect(stored.checkEtag?.startsWith(`${pushed} `)).toBe(true);
    expect(await scheduledCheck()).toBe('SKIPPED');
    expect(commitChecks().map((request) => request.status)).toEqual([304]);
  });

  it('falls back to the git listing when the API is rate limited for longer than it may wait', async () => {
    github.setRateLimit(LOGIN, { used: 5000, reset: Math.floor(Date.now() / 1000) + 3600 });
    const pushed = await upstream.commit({ 'late.txt': 'while rate limited\n' });
    expect(await scheduledCheck()).toBe('SUCCEEDED');
    expect(commitChecks().map((request) => request.status)).toEqual([403]);
    expect(server.repoStats('private-octo/polled').lsRefs).toBeGreaterThanOrEqual(1);
    const stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } });
    expect(stored).toMatchObject({ lastCommitSha: pushed, status: 'SYNCED', lastError: null });
  });

  it('a manual sync lists the remote with git (it also notices refs and a renamed default branch)', async () => {
    github.resetRequests();
    server.resetStats();
    await testApp.app.services.repositories.requestSync((await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } })).tenantId, repositoryId, false);
    await waitForIdle(testApp.app, repositoryId);
    expect(commitChecks()).toEqual([]);
    expect(server.repoStats('private-octo/polled').lsRefs).toBeGreaterThanOrEqual(1);
  });
});

describe('repositories added with a GitHub credential', () => {
  async function credential(token: string): Promise<string> {
    const result = await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host: new URL(server.url).host, token } });
    return result.addCredential.credential.id;
  }

  it('creates the webhook through the API, which then delivers with its secret, and deletes it on removal', async () => {
    const upstream = await createUpstream(server, 'octo/hooked', { branch: 'master' }); // the published push is to master
    const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId: await credential(TOKEN) } });
    expect(added.addRepository.webhook).toEqual({ url: `${PUBLIC_URL}/webhooks/github`, secret: null, autoConfigured: true });
    const repositoryId = dbId(added.addRepository.repository.id);
    const [hook] = github.hooks('octo/hooked');
    expect(hook).toMatchObject({ active: true, events: ['push', 'create', 'delete', 'pull_request'], config: { url: `${PUBLIC_URL}/webhooks/github`, content_type: 'json', insecure_ssl: '0' } });
    expect(github.hooks('octo/hooked')).toHaveLength(1);
    const stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } });
    expect(stored.webhookId).toBe(String(hook!.id));
    await waitForRepository(client, added.addRepository.repository.id, (repository) => repository.status === 'SYNCED');
    await waitForIdle(testApp.app, repositoryId);

    // GitHub signs with the secret the hook was created with: the registration's own.
    const pushed = await upstream.commit({ 'hooked.txt': 'delivered\n' });
    const raw = await loadFixture('github-push-commits-drone.json');
    const published = (JSON.parse(raw.toString('utf8')) as { after: string }).after;
    const body = retarget(raw, { url: upstream.url, name: 'octo/hooked' }, { [published]: pushed });
    const delivered = await deliver(testApp.url, 'github', githubHeaders('push', body, hook!.config.secret!), body);
    expect(delivered.status).toBe(202);
    await waitForRepository(client, added.addRepository.repository.id, (repository) => repository.lastCommitSha === pushed && repository.status === 'SYNCED');
    expect(testApp.logs.join('\n')).not.toContain(hook!.config.secret!);

    await client.request(RemoveRepositoryDocument, { repositoryId: added.addRepository.repository.id });
    expect(github.hooks('octo/hooked')).toEqual([]);
    expect(github.requests.filter((request) => request.method === 'DELETE').map((request) => `${request.path} ${request.status}`)).toEqual([`/repos/octo/hooked/hooks/${hook!.id} 204`]);
  });

  it('a token without admin rights gets the manual set-up: the secret once, no hook', async () => {
    const upstream = await createUpstream(server, 'octo/not-admin');
    const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId: await credential(READER_TOKEN) } });
    expect(added.addRepository.webhook).toMatchObject({ url: `${PUBLIC_URL}/webhooks/github`, autoConfigured: false, secret: expect.stringMatching(/.{32,}/) });
    expect(github.hooks('octo/not-admin')).toEqual([]);
    expect(github.requests.filter((request) => request.path.endsWith('/hooks')).map((request) => request.status)).toEqual([404]);
    const stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: dbId(added.addRepository.repository.id) } });
    expect(stored.webhookId).toBeNull();
  });

  it('adds the repository through git when the API is rate limited for longer than it may wait (no hook then)', async () => {
    const upstream = await createUpstream(server, 'octo/api-down', { branch: 'trunk' });
    const credentialId = await credential(TOKEN);
    github.setRateLimit(LOGIN, { used: 5000, reset: Math.floor(Date.now() / 1000) + 3600 });
    try {
      const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId } });
      expect(added.addRepository.repository).toMatchObject({ branch: 'trunk', defaultBranch: 'trunk' });
      expect(added.addRepository.webhook).toMatchObject({ autoConfigured: false, secret: expect.stringMatching(/.{32,}/) });
      await waitForRepository(client, added.addRepository.repository.id, (repository) => repository.status === 'SYNCED');
      expect(testApp.logs.some((line) => line.includes('using the git ref listing'))).toBe(true);
    } finally {
      github.setRateLimit(LOGIN, { used: 0 });
    }
  });

  it('takes the default branch from the API, and refuses a repository the credential cannot see', async () => {
    const upstream = await createUpstream(server, 'octo/described', { branch: 'develop' });
    await upstream.createBranch('main');
    const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId: await credential(TOKEN) } });
    expect(added.addRepository.repository).toMatchObject({ branch: 'develop', defaultBranch: 'develop' });
    expect(github.requests.map((request) => `${request.method} ${request.path}`)).toContain('GET /repos/octo/described');

    const before = await testApp.app.db.prisma.repository.count();
    const missing = await client.raw(AddRepositoryDocument, {
      input: { projectId, url: `${server.url}/octo/elsewhere.git`, provider: 'GITHUB', credentialId: await credential(TOKEN) },
    });
    expect((missing.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(missing.errors?.[0]?.message).toMatch(/octo\/elsewhere is not a repository the credential can read/);
    expect(await testApp.app.db.prisma.repository.count()).toBe(before);
  });
});
