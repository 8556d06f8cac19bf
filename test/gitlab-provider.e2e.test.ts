import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GitlabApi } from '../src/providers/gitlabApi.js';
import { PlatformError } from '../src/providers/platform.js';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { AddCredentialDocument, AddRepositoryDocument, CreateProjectDocument, RemoveRepositoryDocument } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, TestClient } from './support/client.js';
import { createUpstream } from './support/gitFixtures.js';
import { startFakeGitlab, type FakeGitlab } from './support/gitlabApi.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { deliver, gitlabHeaders, loadFixture, retarget } from './support/webhooks.js';

// GitLab as a provider: its REST API v4 (a fake following GitLab's documented
// formats, on the real bare repositories of a git server) checks tokens,
// describes projects, answers scheduled checks and manages the project hook.

const TOKEN = `glpat-${randomBytes(15).toString('base64url')}`;
const DEVELOPER_TOKEN = `glpat-${randomBytes(15).toString('base64url')}`;
const PUBLIC_URL = 'https://repolens.example.test';

let server: GitServer;
let gitlab: FakeGitlab;
let testApp: TestApp;
let client: TestClient;
let projectId: string;

const dbId = (globalId: string): string => decodeGlobalId(globalId).id;
const silent = pino({ level: 'silent' });
const api = (token = TOKEN, maxRateLimitWaitS = 30) => new GitlabApi({ baseUrl: gitlab.url, token, timeoutMs: 10_000, maxRateLimitWaitS, logger: silent });

beforeAll(async () => {
  // GitLab takes any user name with a token over HTTPS; the service sends oauth2.
  server = await startGitServer({ auth: { username: 'oauth2', password: TOKEN, repos: (name) => name.startsWith('private-group/') } });
  gitlab = await startFakeGitlab({
    gitRoot: server.root,
    tokens: { [TOKEN]: { username: 'sync-bot', scopes: ['api', 'read_repository'] }, [DEVELOPER_TOKEN]: { username: 'developer', scopes: ['api'], maintainer: false } },
    privateProjects: (name) => name.startsWith('private-group/'),
  });
  testApp = await startTestApp({ env: { GITLAB_URL: gitlab.url, REPOLENS_PROVIDER_MAX_WAIT_S: '5', PUBLIC_URL } });
  client = await testApp.client('gitlab');
  projectId = (await client.request(CreateProjectDocument, { name: 'gitlab' })).createProject.project.id;
});

afterAll(async () => {
  await testApp?.close();
  await gitlab?.close();
  await server?.close();
});

beforeEach(() => gitlab.resetRequests());

describe('GitLab REST client (gitbeaker) against the documented API', () => {
  it('reads the token owner and its scopes; a bad token is an auth failure without the token in the message', async () => {
    expect(await api().tokenOwner()).toEqual({ login: 'sync-bot', scopes: ['api', 'read_repository'] });
    expect(gitlab.requests.map((request) => `${request.path} ${request.status}`)).toEqual(['/api/v4/user 200', '/api/v4/personal_access_tokens/self 200']);
    const refused = await api('glpat-wrong').tokenOwner().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PlatformError);
    expect(refused).toMatchObject({ failure: 'auth', status: 401 });
    expect((refused as Error).message).toContain('401 Unauthorized');
    expect((refused as Error).message).not.toContain('glpat-wrong');
  });

  it('describes a project by its path (subgroups too); an unknown one is not found', async () => {
    await createUpstream(server, 'private-group/sub/described', { branch: 'trunk' });
    const info = await api().repositoryInfo('private-group/sub/described');
    expect(info).toMatchObject({ defaultBranch: 'trunk', private: true });
    expect(info.sizeBytes).toBeGreaterThan(0);
    expect(gitlab.requests.at(-1)?.path).toBe('/api/v4/projects/private-group%2Fsub%2Fdescribed');
    await expect(api().repositoryInfo('private-group/nothing')).rejects.toMatchObject({ failure: 'not-found', status: 404 });
  });

  it('reads a branch head; a missing branch is not found', async () => {
    const upstream = await createUpstream(server, 'group/heads');
    expect(await api().branchHead('group/heads', 'main', null)).toEqual({ changed: true, sha: await upstream.head(), etag: null });
    await expect(api().branchHead('group/heads', 'gone', null)).rejects.toMatchObject({ failure: 'not-found', status: 404 });
  });

  it('compares two commits with modes (added, modified, removed, renamed, file turned symlink) and reads a file', async () => {
    const upstream = await createUpstream(server, 'group/compare', { files: { 'edit.txt': 'one\n', 'gone.txt': 'gone\n', 'old-name.txt': 'renamed content, long enough to be found as a rename\n', 'link-later': 'a file\n' } });
    const base = await upstream.head();
    const head = await upstream.commit({ 'sub/added.txt': 'added\n', 'edit.txt': 'two\n', 'gone.txt': null, 'old-name.txt': null, 'new-name.txt': 'renamed content, long enough to be found as a rename\n', 'link-later': { symlink: 'edit.txt' } });
    const comparison = await api().compare('group/compare', base, head);
    expect(comparison.complete).toBe(true);
    const byPath = Object.fromEntries(comparison.changes.map((change) => [change.path, change]));
    expect(byPath['sub/added.txt']).toMatchObject({ status: 'added', mode: '100644' });
    expect(byPath['edit.txt']).toMatchObject({ status: 'modified', mode: '100644' });
    expect(byPath['gone.txt']).toMatchObject({ status: 'removed', mode: null });
    expect(byPath['new-name.txt']).toMatchObject({ status: 'renamed', previousPath: 'old-name.txt' });
    expect(byPath['link-later']).toMatchObject({ status: 'changed', mode: '120000' });
    expect(gitlab.requests.at(-1)?.path).toBe('/api/v4/projects/group%2Fcompare/repository/compare');

    const file = await api().fileContent('group/compare', 'sub/added.txt', head);
    expect(file).toMatchObject({ content: Buffer.from('added\n'), kind: 'file', blobSha: expect.stringMatching(/^[0-9a-f]{40}$/) });
    await expect(api().fileContent('group/compare', 'gone.txt', head)).rejects.toMatchObject({ failure: 'not-found', status: 404 });
  });

  it('waits out a 429 for its Retry-After, then answers', async () => {
    const upstream = await createUpstream(server, 'group/limited');
    gitlab.rateLimit('sync-bot', 2);
    const started = Date.now();
    expect(await api().branchHead('group/limited', 'main', null)).toMatchObject({ sha: await upstream.head() });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    expect(gitlab.requests.map((request) => request.status)).toEqual([429, 200]);
  });

  it('fails at once when Retry-After is longer than it may wait', async () => {
    await createUpstream(server, 'group/long-limit');
    gitlab.rateLimit('sync-bot', 600);
    try {
      const started = Date.now();
      await expect(api(TOKEN, 60).branchHead('group/long-limit', 'main', null)).rejects.toMatchObject({ failure: 'rate-limited', status: 429 });
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      gitlab.rateLimit('sync-bot', 0);
    }
  });
});

it('gives up on an answer that does not come within the time limit, and says so', async () => {
  await createUpstream(server, 'group/slow');
  gitlab.setDelay(3000);
  try {
    const started = Date.now();
    const slow = new GitlabApi({ baseUrl: gitlab.url, token: TOKEN, timeoutMs: 300, maxRateLimitWaitS: 30, logger: silent });
    const error = await slow.branchHead('group/slow', 'main', null).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ failure: 'unavailable' });
    expect((error as Error).message).toMatch(/timed out/);
    expect(Date.now() - started).toBeLessThan(2500);
  } finally {
    gitlab.setDelay(0);
  }
});

describe('GitLab in the service', () => {
  const host = () => new URL(server.url).host;
  async function credential(token: string): Promise<string> {
    return (await client.request(AddCredentialDocument, { input: { provider: 'GITLAB', host: host(), token } })).addCredential.credential.id;
  }

  it('checks a token before storing it; a refused one stores nothing', async () => {
    const result = await client.request(AddCredentialDocument, { input: { provider: 'GITLAB', host: host(), token: TOKEN } });
    expect(result.addCredential.credential).toMatchObject({ provider: 'GITLAB', login: 'sync-bot', scopes: ['api', 'read_repository'] });
    const bad = `glpat-${randomBytes(15).toString('base64url')}`;
    const before = await testApp.app.db.prisma.credential.count();
    const refused = await client.raw(AddCredentialDocument, { input: { provider: 'GITLAB', host: host(), token: bad } });
    expect((refused.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(refused)).not.toContain(bad);
    expect(await testApp.app.db.prisma.credential.count()).toBe(before);
  });

  it('private project: cloned with the token, hook created with the registration secret, delivered, polled by the API, hook deleted on removal', async () => {
    // The published push is to master.
    const upstream = await createUpstream(server, 'private-group/hello-world', { branch: 'master' });
    const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider: 'GITLAB', credentialId: await credential(TOKEN) } });
    expect(added.addRepository.webhook).toEqual({ url: `${PUBLIC_URL}/webhooks/gitlab`, secret: null, autoConfigured: true });
    const [hook] = gitlab.hooks('private-group/hello-world');
    expect(hook).toMatchObject({ url: `${PUBLIC_URL}/webhooks/gitlab`, push_events: true, tag_push_events: true, merge_requests_events: true, enable_ssl_verification: true });
    expect(hook!.token).toMatch(/.{32,}/);
    const globalId = added.addRepository.repository.id;
    const repositoryId = dbId(globalId);
    expect((await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } })).webhookId).toBe(String(hook!.id));
    await waitForRepository(client, globalId, (repository) => repository.status === 'SYNCED');
    await waitForIdle(testApp.app, repositoryId);
    const config = await readFile(path.join(testApp.dataDir, 'repos', repositoryId, '.git', 'config'), 'utf8');
    expect(config).not.toContain(TOKEN);

    // GitLab sends the hook's token as X-Gitlab-Token.
    const pushed = await upstream.commit({ 'gitlab.txt': 'pushed\n' });
    const raw = await loadFixture('gitlab-push-commits-drone.json');
    const published = (JSON.parse(raw.toString('utf8')) as { after: string }).after;
    const body = retarget(raw, { url: upstream.url, name: 'private-group/hello-world' }, { [published]: pushed });
    expect((await deliver(testApp.url, 'gitlab', gitlabHeaders('Push Hook', hook!.token), body)).status).toBe(202);
    await waitForRepository(client, globalId, (repository) => repository.lastCommitSha === pushed && repository.status === 'SYNCED');
    await waitForIdle(testApp.app, repositoryId);

    // A scheduled check: one API request for the branch, no git request.
    await testApp.app.db.prisma.repository.update({ where: { id: repositoryId }, data: { nextCheckAt: new Date(Date.now() - 1000) } });
    server.resetStats();
    gitlab.resetRequests();
    await testApp.app.scheduler.pass();
    await waitForIdle(testApp.app, repositoryId);
    const run = await testApp.app.db.prisma.syncRun.findFirst({ where: { repositoryId, trigger: 'SCHEDULED' }, orderBy: { queuedAt: 'desc' } });
    expect(run?.status).toBe('SKIPPED');
    expect(gitlab.requests.map((request) => `${request.path} ${request.status}`)).toEqual(['/api/v4/projects/private-group%2Fhello-world/repository/branches/master 200']);
    expect(server.repoStats('private-group/hello-world').requests).toBe(0);

    const logs = testApp.logs.join('\n');
    expect(logs).not.toContain(TOKEN);
    expect(logs).not.toContain(hook!.token!);

    await client.request(RemoveRepositoryDocument, { repositoryId: globalId });
    expect(gitlab.hooks('private-group/hello-world')).toEqual([]);
  });

  it('a developer (no Maintainer role) gets the manual set-up', async () => {
    const upstream = await createUpstream(server, 'group/developer-only');
    const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider: 'GITLAB', credentialId: await credential(DEVELOPER_TOKEN) } });
    expect(added.addRepository.webhook).toMatchObject({ autoConfigured: false, secret: expect.stringMatching(/.{32,}/) });
    expect(gitlab.requests.filter((request) => request.path.endsWith('/hooks')).map((request) => request.status)).toEqual([403]);
    expect(gitlab.hooks('group/developer-only')).toEqual([]);
  });
});
