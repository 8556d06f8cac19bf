import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { AddCredentialDocument, AddRepositoryDocument, CreateProjectDocument, SyncRepositoryDocument, UpdateRepositoryDocument } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { TestClient } from './support/client.js';
import { createUpstream, type FileChange, type Upstream } from './support/gitFixtures.js';
import { startFakeGithub, type FakeGithub } from './support/githubApi.js';
import { startFakeGitlab, type FakeGitlab } from './support/gitlabApi.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// DELTA (SPEC §1, issue 4): a new head's files come from the platform's
// compare and contents APIs (fakes backed by the git server's real bare
// repositories), not from a git fetch. Every case checks the copy against
// upstream itself: the same commit, the same index entries (modes,
// symlinks), a clean work tree, and a repository git's fsck accepts.

const exec = promisify(execFile);
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
const git = async (cwd: string, args: string[]): Promise<string> => (await exec('git', args, { cwd, maxBuffer: 64 * 1024 * 1024 })).stdout;

beforeAll(async () => {
  server = await startGitServer();
  github = await startFakeGithub({ gitRoot: server.root, tokens: { [GITHUB_TOKEN]: { login: 'delta-bot', scopes: ['repo'] } } });
  gitlab = await startFakeGitlab({ gitRoot: server.root, tokens: { [GITLAB_TOKEN]: { username: 'delta-bot', scopes: ['read_api', 'read_repository'] } } });
  const host = new URL(server.url).host;
  testApp = await startTestApp({ env: { GITHUB_API_URL: github.url, GITLAB_URL: gitlab.url } });
  client = await testApp.client('delta');
  projectId = (await client.request(CreateProjectDocument, { name: 'delta' })).createProject.project.id;
  credentials.GITHUB = (await client.request(AddCredentialDocument, { input: { provider: 'GITHUB', host, token: GITHUB_TOKEN } })).addCredential.credential.id;
  credentials.GITLAB = (await client.request(AddCredentialDocument, { input: { provider: 'GITLAB', host, token: GITLAB_TOKEN } })).addCredential.credential.id;
});

afterAll(async () => {
  await testApp?.close();
  await github?.close();
  await gitlab?.close();
  await server?.close();
});

interface Synced {
  repositoryId: string;
  globalId: string;
  upstream: Upstream;
  copy: string;
}

async function addSynced(provider: 'GITHUB' | 'GITLAB', name: string, files: Record<string, string>): Promise<Synced> {
  const upstream = await createUpstream(server, name, { files });
  const added = await client.request(AddRepositoryDocument, {
    input: { projectId, url: upstream.url, provider, credentialId: credentials[provider], syncStrategy: 'DELTA' },
  });
  const globalId = added.addRepository.repository.id;
  await waitForRepository(client, globalId, (repository) => repository.status === 'SYNCED');
  const repositoryId = dbId(globalId);
  await waitForIdle(testApp.app, repositoryId);
  return { repositoryId, globalId, upstream, copy: path.join(testApp.dataDir, 'repos', repositoryId) };
}

/** A manual sync to the upstream head; returns the run as stored. */
async function sync(repo: Synced) {
  const head = await repo.upstream.head();
  await client.request(SyncRepositoryDocument, { repositoryId: repo.globalId });
  await waitForRepository(client, repo.globalId, (repository) => repository.lastCommitSha === head && repository.status !== 'SYNCING');
  await waitForIdle(testApp.app, repo.repositoryId);
  const run = await testApp.app.db.prisma.syncRun.findFirstOrThrow({ where: { repositoryId: repo.repositoryId, trigger: 'MANUAL' }, orderBy: { queuedAt: 'desc' } });
  return { ...run, messages: (run.phaseLog as { message?: string }[]).flatMap((entry) => (entry.message ? [entry.message] : [])) };
}

/** The copy is upstream's head exactly: commit, index entries (mode, blob, path), a clean tree, and a sound repository. */
async function expectCopyAtUpstream(repo: Synced): Promise<void> {
  const head = await repo.upstream.head();
  expect((await git(repo.copy, ['rev-parse', 'HEAD'])).trim()).toBe(head);
  const upstreamEntries = await git(repo.upstream.bareDir, ['ls-tree', '-r', '-z', head]);
  const copyEntries = await git(repo.copy, ['ls-files', '-s', '-z']);
  const normalize = (text: string, fromIndex: boolean) =>
    text
      .split('\0')
      .filter(Boolean)
      .map((line) => {
        const [meta, file] = line.split('\t');
        const parts = meta!.split(' ');
        return `${parts[0]} ${fromIndex ? parts[1] : parts[2]} ${file}`;
      })
      .sort();
  expect(normalize(copyEntries, true)).toEqual(normalize(upstreamEntries, false));
  expect(await git(repo.copy, ['status', '--porcelain', '--untracked-files=all'])).toBe('');
  await git(repo.copy, ['fsck', '--no-dangling', '--no-progress']);
}

describe.each(['GITHUB', 'GITLAB'] as const)('DELTA through %s', (provider) => {
  const slug = provider.toLowerCase();
  let repo: Synced;
  const fetches = () => server.repoStats(repo.upstream.name).fetches;

  beforeAll(async () => {
    repo = await addSynced(provider, `delta-${slug}/changes`, {
      'README.md': '# delta\n',
      'src/edit.ts': 'export const a = 1;\n',
      'src/gone.ts': 'export const gone = true;\n',
      'docs/old-name.md': 'a document long enough to be found again as a rename by git diff -M\n',
      'bin/tool': '#!/bin/sh\necho tool\n',
      'link-later': 'a file that becomes a symlink\n',
      'folder-later': 'a file that becomes a folder\n',
      'space name/ünïcode.txt': 'names with spaces and unicode\n',
    });
  });

  it('applies an add, a modify, a delete, a rename, a mode change, symlinks and a file turned folder from the API, with no git fetch', async () => {
    const before = fetches();
    await repo.upstream.commit({
      'src/new/added.ts': 'export const added = 2;\n',
      'src/edit.ts': 'export const a = 2;\n',
      'src/gone.ts': null,
      'docs/old-name.md': null,
      'docs/renamed.md': 'a document long enough to be found again as a rename by git diff -M\n',
      'bin/tool': { executable: '#!/bin/sh\necho tool\n' },
      'link-later': { symlink: 'README.md' },
      'links/new-link': { symlink: '../src/edit.ts' },
      'folder-later': null,
      'folder-later/inside.txt': 'now a folder\n',
      'space name/ünïcode.txt': 'changed\n',
    });
    const run = await sync(repo);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA', filesChanged: expect.any(Number) });
    expect(run.bytesReceived).toBeGreaterThan(0);
    expect(fetches()).toBe(before);
    await expectCopyAtUpstream(repo);
    expect((await lstat(path.join(repo.copy, 'bin/tool'))).mode & 0o111).not.toBe(0);
    expect(await readlink(path.join(repo.copy, 'link-later'))).toBe('README.md');
    expect(await readlink(path.join(repo.copy, 'links/new-link'))).toBe('../src/edit.ts');
    expect(await readFile(path.join(repo.copy, 'folder-later/inside.txt'), 'utf8')).toBe('now a folder\n');
    expect(existsSync(path.join(repo.copy, 'src/gone.ts'))).toBe(false);
  });

  it('a new executable, a symlink turned file and an executable made plain: modes as git has them', async () => {
    await repo.upstream.commit({
      'bin/new-tool': { executable: '#!/bin/sh\necho new\n' },
      'link-later': 'a file again\n',
      'bin/tool': '#!/bin/sh\necho tool\n',
    });
    const run = await sync(repo);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
    await expectCopyAtUpstream(repo);
    expect((await lstat(path.join(repo.copy, 'bin/new-tool'))).mode & 0o111).not.toBe(0);
    expect((await lstat(path.join(repo.copy, 'bin/tool'))).mode & 0o111).toBe(0);
    expect((await lstat(path.join(repo.copy, 'link-later'))).isFile()).toBe(true);
  });

  it('rebuilds commits written in other time zones (author and committer apart)', async () => {
    await repo.upstream.commit({ 'zones.txt': 'India\n' }, 'written in Kolkata', undefined, { author: '+0530', committer: '+0530' });
    expect(await sync(repo)).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
    await repo.upstream.commit({ 'zones.txt': 'apart\n' }, 'authored in Los Angeles, committed in Kathmandu', undefined, { author: '-0800', committer: '+0545' });
    expect(await sync(repo)).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
    await expectCopyAtUpstream(repo);
  });

  it('several commits in one push: the head becomes a shallow boundary, and a later INCREMENTAL fetch still works', async () => {
    await repo.upstream.commit({ 'history.txt': 'first version, only in the middle of the push\n' });
    await repo.upstream.commit({ 'history.txt': 'second version\n', 'more.txt': 'more\n' });
    const head = await repo.upstream.commit({ 'more.txt': 'final\n' }, 'third commit of the push');
    const run = await sync(repo);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA', toSha: head });
    await expectCopyAtUpstream(repo);
    expect(await readFile(path.join(repo.copy, '.git/shallow'), 'utf8')).toContain(head);

    // The next change brings back a blob only the skipped commits had: the fetch must send it.
    await client.request(UpdateRepositoryDocument, { input: { repositoryId: repo.globalId, syncStrategy: 'INCREMENTAL' } });
    await repo.upstream.commit({ 'history.txt': 'first version, only in the middle of the push\n' });
    const incremental = await sync(repo);
    expect(incremental).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });
    await expectCopyAtUpstream(repo);
    expect(await readFile(path.join(repo.copy, 'history.txt'), 'utf8')).toBe('first version, only in the middle of the push\n');
    await client.request(UpdateRepositoryDocument, { input: { repositoryId: repo.globalId, syncStrategy: 'DELTA' } });
  });

  it('refuses a compare answer with a path that climbs out of the copy, and fetches with git instead', async () => {
    const escape = path.join(path.dirname(repo.copy), 'escaped.txt');
    await repo.upstream.commit({ 'safe.txt': 'safe\n' });
    await tampered((_path, body) => climbOut(body), async () => {
      const before = fetches();
      const run = await sync(repo);
      expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });
      expect(run.messages.join('\n')).toMatch(/DELTA not possible \(the compare API named an unsafe path: "\.\.\/\.\.\/escaped\.txt"\)/);
      if (provider === 'GITHUB') expect(github.requests.some((request) => request.path.includes('/compare/') && request.accept === 'application/vnd.github.diff')).toBe(true);
      expect(fetches()).toBe(before + 1);
      expect(existsSync(escape)).toBe(false);
      await expectCopyAtUpstream(repo);
    });
  });

  it('refuses a compare answer that writes through a symlink, and fetches with git instead', async () => {
    await repo.upstream.commit({ 'escape-link': { symlink: '../..' } });
    expect(await sync(repo)).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
    const outside = path.resolve(repo.copy, '../..', 'through-link.txt');
    await repo.upstream.commit({ 'inside.txt': 'inside\n' });
    const through = (_path: string, body: unknown) => {
      if (typeof body === 'string') return body.replaceAll('a/inside.txt', 'a/escape-link/through-link.txt').replaceAll('b/inside.txt', 'b/escape-link/through-link.txt');
      const answer = body as { diffs?: { new_path: string; old_path: string }[] };
      if (answer.diffs) return { ...answer, diffs: answer.diffs.map((diff) => (diff.new_path === 'inside.txt' ? { ...diff, new_path: 'escape-link/through-link.txt', old_path: 'escape-link/through-link.txt' } : diff)) };
      return body;
    };
    await tampered(through, async () => {
      const run = await sync(repo);
      expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });
      // git apply's own check (GitHub's patch), or ours (the file list) before anything is downloaded.
      expect(run.messages.join('\n')).toMatch(/DELTA not possible \((.*beyond a symbolic link|the compare API named a path through a file or symlink: "escape-link\/through-link\.txt")/);
      expect(existsSync(outside)).toBe(false);
      await expectCopyAtUpstream(repo);
    });
  });

  it('refuses content that does not hash to its blob id', async () => {
    await repo.upstream.commit({ 'safe.txt': 'the real content\n' });
    const forge = (_path: string, body: unknown) => {
      // GitHub's patch, or a file's content (GitLab).
      if (typeof body === 'string') return body.replace('+the real content', '+forged content');
      const file = body as { content?: string; encoding?: string };
      if (typeof file.content === 'string' && file.encoding === 'base64') return { ...file, content: Buffer.from('forged\n').toString('base64') };
      return body;
    };
    await tampered(forge, async () => {
      const run = await sync(repo);
      expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });
      expect(run.messages.join('\n')).toMatch(/DELTA not possible \(.*(does not hash to its blob id|patch does not make the head's tree|cannot be rebuilt)/);
      await expectCopyAtUpstream(repo);
      expect(await readFile(path.join(repo.copy, 'safe.txt'), 'utf8')).toBe('the real content\n');
    });
  });
});

describe('AUTO and DELTA', () => {
  it("AUTO tries DELTA once the platform's size for the repository reaches REPOLENS_DELTA_AUTO_MIN_BYTES (1 GiB by default)", async () => {
    for (const provider of ['GITHUB', 'GITLAB'] as const) {
      const upstream = await createUpstream(server, `delta-${provider.toLowerCase()}/auto`, { files: { 'README.md': 'auto\n' } });
      const added = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, provider, credentialId: credentials[provider] } });
      const globalId = added.addRepository.repository.id;
      const repositoryId = dbId(globalId);
      await waitForRepository(client, globalId, (repository) => repository.status === 'SYNCED');
      await waitForIdle(testApp.app, repositoryId);
      const repo: Synced = { repositoryId, globalId, upstream, copy: path.join(testApp.dataDir, 'repos', repositoryId) };
      const stored = await testApp.app.db.prisma.repository.findUniqueOrThrow({ where: { id: repositoryId } });
      expect(stored.syncStrategy).toBe('AUTO');
      // What the platform said at addRepository: GitHub's size in KiB, GitLab's statistics.
      expect(stored.platformSizeBytes).toBeGreaterThan(0);
      expect(stored.platformSizeBytes).toBeLessThan(1024 ** 3);

      await upstream.commit({ 'small.txt': 'below the size\n' });
      expect(await sync(repo)).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });

      await testApp.app.db.prisma.repository.update({ where: { id: repositoryId }, data: { platformSizeBytes: 2 * 1024 ** 3 } });
      await upstream.commit({ 'small.txt': 'a large repository now\n' });
      expect(await sync(repo)).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
      await expectCopyAtUpstream(repo);
    }
  });
});

describe('DELTA on GitHub: the patch, and the file route for binary files', () => {
  const wide = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i): [string, FileChange] => [`many/file-${i}.txt`, `file ${i}\n`]));

  it('a change of 301 files: the compare patch has them all (the JSON list stops at 300), so DELTA applies', async () => {
    const repo = await addSynced('GITHUB', 'delta-github/wide', { 'README.md': 'wide\n' });
    await repo.upstream.commit(wide(301));
    github.resetRequests();
    const run = await sync(repo);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA', filesChanged: 301 });
    // One patch and one commit description: no file downloaded.
    expect(github.requests.filter((request) => request.path.includes('/contents/'))).toEqual([]);
    await expectCopyAtUpstream(repo);
  });

  it('a binary file: its content comes from the contents API, and a new executable\'s mode from the head\'s trees', async () => {
    const repo = await addSynced('GITHUB', 'delta-github/binary', { 'README.md': 'binary\n', 'image.bin': 'old\0binary\0content' });
    await repo.upstream.commit({ 'image.bin': 'new\0binary\0content\0!', 'tools/run': { executable: '#!/bin/sh\necho run\n' }, 'README.md': 'binary, changed\n' });
    github.resetRequests();
    const run = await sync(repo);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
    const paths = github.requests.map((request) => decodeURIComponent(request.path));
    expect(paths.filter((request) => request.includes('/contents/')).sort()).toEqual([
      '/repos/delta-github/binary/contents/README.md',
      '/repos/delta-github/binary/contents/image.bin',
      '/repos/delta-github/binary/contents/tools/run',
    ]);
    // The compare list gives no modes: tools/run, guessed 100644, made the wrong tree until the trees told.
    expect(paths.some((request) => request.includes('/git/trees/'))).toBe(true);
    await expectCopyAtUpstream(repo);
    expect((await lstat(path.join(repo.copy, 'tools/run'))).mode & 0o111).not.toBe(0);
  });

  it('a binary file among more than 300: the file list is cut, so git fetches', async () => {
    const repo = await addSynced('GITHUB', 'delta-github/wide-binary', { 'README.md': 'wide\n' });
    await repo.upstream.commit({ ...wide(301), 'blob.bin': 'binary\0data' });
    const run = await sync(repo);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL' });
    expect(run.messages.join('\n')).toContain('DELTA not possible (the compare API did not list the whole change');
    await expectCopyAtUpstream(repo);
  });

  it('a rewritten upstream history: GitHub compares from the merge base, so git fetches; GitLab compares straight, so DELTA applies', async () => {
    for (const provider of ['GITHUB', 'GITLAB'] as const) {
      const repo = await addSynced(provider, `delta-${provider.toLowerCase()}/rewritten`, { 'README.md': 'rewritten\n' });
      await repo.upstream.commit({ 'a.txt': 'a\n' });
      expect(await sync(repo)).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
      await repo.upstream.forcePush('amend');
      const run = await sync(repo);
      expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: provider === 'GITHUB' ? 'INCREMENTAL' : 'DELTA' });
      await expectCopyAtUpstream(repo);
    }
  });
});

/** Runs `body` while both fakes rewrite their answers with `rewrite`. */
async function tampered(rewrite: (path: string, body: unknown) => unknown, body: () => Promise<void>): Promise<void> {
  github.tamper(rewrite);
  gitlab.tamper(rewrite);
  try {
    await body();
  } finally {
    github.tamper(null);
    gitlab.tamper(null);
  }
}

/** A compare answer whose safe.txt is renamed to ../../escaped.txt (GitHub's patch, GitLab's `diffs`). */
function climbOut(body: unknown): unknown {
  if (typeof body === 'string') return body.replaceAll('a/safe.txt', 'a/../../escaped.txt').replaceAll('b/safe.txt', 'b/../../escaped.txt');
  const answer = body as { files?: { filename: string }[]; diffs?: { new_path: string }[] };
  if (answer.files?.length) return { ...answer, files: answer.files.map((file, index) => (index === 0 ? { ...file, filename: '../../escaped.txt' } : file)) };
  if (answer.diffs?.length) return { ...answer, diffs: answer.diffs.map((diff, index) => (index === 0 ? { ...diff, new_path: '../../escaped.txt' } : diff)) };
  return body;
}

describe('secrets', () => {
  it('no token reached the log or a copy\'s .git/config through any DELTA above', async () => {
    const logs = testApp.logs.join('\n');
    expect(logs).toContain('DELTA not possible');
    for (const token of [GITHUB_TOKEN, GITLAB_TOKEN]) expect(logs).not.toContain(token);
    const repositories = await testApp.app.db.prisma.repository.findMany({ select: { id: true } });
    for (const { id } of repositories) {
      const config = await readFile(path.join(testApp.dataDir, 'repos', id, '.git', 'config'), 'utf8');
      for (const token of [GITHUB_TOKEN, GITLAB_TOKEN]) expect(config).not.toContain(token);
    }
  });
});
