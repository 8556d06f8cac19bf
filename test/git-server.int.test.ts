import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createUpstream, generateLargeRepository, git } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

const CREDENTIAL_HELPER = `!f() { test "$1" = get && printf 'username=%s\\npassword=%s\\n' "$U" "$P"; }; f`;

function credentialEnv(username: string, password: string): NodeJS.ProcessEnv {
  return {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'credential.helper',
    GIT_CONFIG_VALUE_0: CREDENTIAL_HELPER,
    U: username,
    P: password,
  };
}

async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && !relative(dir, e.parentPath).startsWith('.git')).length;
}

// Every step spawns git, which is slow on a loaded machine.
describe('git smart-HTTP test server', { timeout: 30_000 }, () => {
  let server: GitServer;
  let scratch: string;
  let clones = 0;
  const cloneDir = (): string => join(scratch, `clone-${++clones}`);

  beforeAll(async () => {
    server = await startGitServer({
      auth: { username: 'alice', password: 's3cret', repos: (name) => name.startsWith('private/') },
    });
    scratch = await mkdtemp(join(tmpdir(), 'repolens-clones-'));
  });

  afterAll(async () => {
    await server.close();
    await rm(scratch, { recursive: true, force: true });
  });

  afterEach(() => {
    server.setFault('*', null);
    server.resetStats();
  });

  it('clones a fixture repository over HTTP at the right head', async () => {
    const upstream = await createUpstream(server, 'basic', { files: { 'a.txt': 'one\n' } });
    const head = await upstream.commit({ 'b/c.txt': 'two\n', 'a.txt': null }, 'second');
    const dir = cloneDir();
    await git(['clone', '-q', upstream.url, dir]);
    expect(await git(['rev-parse', 'HEAD'], { cwd: dir })).toBe(head);
    expect(await readdir(dir)).toEqual(expect.arrayContaining(['b']));
    expect(await readdir(dir)).not.toContain('a.txt');
    expect(server.repoStats('basic').fetches).toBeGreaterThanOrEqual(1);
    expect(server.repoStats('basic').bytesSent).toBeGreaterThan(0);
  });

  it('counts protocol v2 ls-refs separately from fetches', async () => {
    const upstream = await createUpstream(server, 'v2');
    const out = await git(['-c', 'protocol.version=2', 'ls-remote', upstream.url]);
    expect(out).toContain(`${await upstream.head()}\trefs/heads/main`);
    expect(server.repoStats('v2')).toMatchObject({ infoRefs: 1, lsRefs: 1, fetches: 0 });

    await git(['-c', 'protocol.version=2', 'clone', '-q', upstream.url, cloneDir()]);
    expect(server.repoStats('v2')).toMatchObject({ infoRefs: 2, lsRefs: 2, fetches: 1 });
    expect(server.totalFetches()).toBe(1);
  });

  it('counts protocol v0 fetches and gzip-compressed request bodies', async () => {
    const upstream = await createUpstream(server, 'many-branches');
    // 40 distinct wants make the fetch request large enough for git to gzip it.
    for (let i = 0; i < 40; i++) {
      const sha = await git(['commit-tree', '-p', 'HEAD', '-m', `b${i}`, 'HEAD^{tree}'], { cwd: upstream.bareDir });
      await upstream.createBranch(`b${i}`, sha);
    }

    await git(['-c', 'protocol.version=0', 'clone', '-q', '--mirror', upstream.url, cloneDir()]);
    expect(server.repoStats('many-branches')).toMatchObject({ infoRefs: 1, lsRefs: 0, fetches: 1 });

    server.resetStats();
    await git(['-c', 'protocol.version=2', 'clone', '-q', '--mirror', upstream.url, cloneDir()]);
    expect(server.repoStats('many-branches')).toMatchObject({ lsRefs: 1, fetches: 1 });
  });

  it('rewrites history, moves branches and tags', async () => {
    const upstream = await createUpstream(server, 'history');
    const first = await upstream.head();
    const second = await upstream.commit({ 'x.txt': 'x\n' });
    const rewritten = await upstream.forcePush(first);
    expect(rewritten).not.toBe(second);
    expect(await git(['rev-parse', `${rewritten}^`], { cwd: upstream.bareDir })).toBe(first);
    const amended = await upstream.forcePush('amend');
    expect(amended).not.toBe(rewritten);

    await upstream.createBranch('feature', first);
    await upstream.tag('v1');
    await upstream.renameDefaultBranch('trunk');
    const refs = await git(['ls-remote', '--symref', upstream.url]);
    expect(refs).toContain('ref: refs/heads/trunk\tHEAD');
    expect(refs).toContain(`${first}\trefs/heads/feature`);
    expect(refs).toContain(`${amended}\trefs/tags/v1`);
    expect(refs).not.toContain('refs/heads/main');

    await upstream.deleteBranch('feature');
    const empty = await createUpstream(server, 'empty', { files: {} });
    await expect(empty.head()).rejects.toThrow();
    const root = await empty.commit({ 'with "odd" name.txt': 'odd\n' });
    expect(await git(['ls-tree', '--name-only', root], { cwd: empty.bareDir })).toBe('"with \\"odd\\" name.txt"');

    const next = await upstream.commit({ 'y.txt': 'y\n' });
    expect(await upstream.head('trunk')).toBe(next);
    expect(await git(['ls-remote', upstream.url])).not.toContain('feature');
  });

  it('requires Basic auth where configured and records what was sent', async () => {
    const upstream = await createUpstream(server, 'private/repo');
    const open = await createUpstream(server, 'public');

    await expect(git(['clone', '-q', upstream.url, cloneDir()])).rejects.toThrow();
    await expect(git(['clone', '-q', upstream.url, cloneDir()], { env: credentialEnv('alice', 'wrong') })).rejects.toThrow();
    expect(server.repoStats('private/repo').fetches).toBe(0);

    const dir = cloneDir();
    await git(['clone', '-q', upstream.url, dir], { env: credentialEnv('alice', 's3cret') });
    expect(await git(['rev-parse', 'HEAD'], { cwd: dir })).toBe(await upstream.head());
    const expected = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
    expect(server.authorizations.map((a) => a.value)).toContain(expected);

    await git(['clone', '-q', open.url, cloneDir()], { env: credentialEnv('alice', 's3cret') });
    expect(server.authorizations.filter((a) => a.repo === 'public')).toEqual([]);
  });

  it('applies status, delay, trickle and hang faults', async () => {
    const upstream = await createUpstream(server, 'faulty');

    server.setFault('faulty', { kind: 'status', status: 503 });
    await expect(git(['clone', '-q', upstream.url, cloneDir()])).rejects.toThrow(/503/);
    server.setFault('faulty', null);

    server.setFault('*', { kind: 'delay', ms: 300 });
    let started = Date.now();
    await git(['ls-remote', upstream.url]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 300);

    server.setFault('*', { kind: 'trickle', bytesPerSecond: 1_000 });
    started = Date.now();
    await git(['clone', '-q', upstream.url, cloneDir()]);
    // ls-refs and pack responses together are well over 300 bytes.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);

    const hanging = await startGitServer({ root: server.root, faults: { faulty: { kind: 'hang' } } });
    let settled = false;
    const hung = git(['ls-remote', hanging.repoUrl('faulty')]).finally(() => (settled = true));
    hung.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(settled).toBe(false);
    // Closing the server must release a hung client.
    await hanging.close();
    await expect(hung).rejects.toThrow();
  });

  it('generates a large repository quickly and serves a full clone', async () => {
    const started = performance.now();
    const upstream = await generateLargeRepository(server, 'large', { files: 5_000, commits: 300 });
    const seconds = (performance.now() - started) / 1000;
    console.log(`generateLargeRepository(5000 files, 300 commits) took ${seconds.toFixed(2)} s`);
    expect(await git(['rev-list', '--count', 'HEAD'], { cwd: upstream.bareDir })).toBe('300');

    const dir = cloneDir();
    await git(['clone', '-q', upstream.url, dir]);
    expect(await countFiles(dir)).toBe(5_000);
    console.log(`clone of large: ${(server.repoStats('large').bytesSent / 1e6).toFixed(1)} MB sent`);

    const head = await upstream.commit({ 'packages/pkg-0/NEW.md': 'new\n' });
    expect(await git(['ls-remote', upstream.url, 'refs/heads/main'])).toContain(head);
  }, 120_000);
});
