import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hasObject, WorkingCopies } from '../src/storage/workingCopies.js';
import { Git, GitError } from '../src/sync/git.js';
import { fetchPack, type FetchPackOptions } from '../src/sync/packFetch.js';
import { createUpstream, git, type Upstream } from './support/gitFixtures.js';
import { expectGitError as expectCleanGitError } from './support/gitErrors.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

const password = 'pack-fetch-Secret-4b1';
const auth = { username: 'alice', password };
const service = new Git({ timeoutMs: 30_000, idleTimeoutMs: 30_000 });

/** A GitError of this kind, with no trace of the test credentials. */
function expectGitError(promise: Promise<unknown>, failure: GitError['failure'], message: RegExp): Promise<GitError> {
  return expectCleanGitError(promise, failure, message, auth);
}

/** Objects reachable from `want` but not from `have`: what a pack on top of `have` must carry. */
async function missingObjects(cwd: string, want: string, have?: string): Promise<number> {
  const listed = await git(['rev-list', '--objects', want, ...(have ? ['--not', have] : [])], { cwd });
  return listed.split('\n').filter(Boolean).length;
}

async function packFiles(cwd: string): Promise<string[]> {
  return (await readdir(path.join(cwd, '.git', 'objects', 'pack'))).filter((name) => name.endsWith('.pack'));
}

// The incremental FETCH for protocol v2 servers: one `fetch` command from the service, its pack
// streamed into git unpack-objects / index-pack. Checked against a real git http-backend and
// real git reading the result.
describe('fetchPack: the FETCH over smart HTTP, into the copy\'s object store', { timeout: 60_000 }, () => {
  let server: GitServer;
  let upstream: Upstream;
  let privateUpstream: Upstream;
  let work: string;
  let copy: string;
  let base: string;

  beforeAll(async () => {
    server = await startGitServer({ auth: { ...auth, repos: (name) => name.startsWith('private/') } });
    upstream = await createUpstream(server, 'packs', { files: { 'README.md': '# packs\n', 'src/a.ts': 'export const a = 1;\n' } });
    privateUpstream = await createUpstream(server, 'private/packs', { files: { 'README.md': '# private\n' } });
    base = await upstream.head();
  });
  beforeEach(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'repolens-pack-fetch-'));
    copy = path.join(work, 'copy');
    await git(['clone', '--quiet', upstream.url, copy]);
    await git(['reset', '--quiet', '--hard', base], { cwd: copy });
    server.resetStats();
  });
  afterEach(async () => {
    server.setFault('*', null);
    server.setFault('packs', null);
    await rm(work, { recursive: true, force: true });
  });
  afterAll(() => server?.close());

  const options = (want: string, extra: Partial<FetchPackOptions> = {}): FetchPackOptions => ({
    cwd: copy,
    want,
    haves: [base],
    signal: new AbortController().signal,
    ...extra,
  });

  it('a small update: one request, only what the copy lacks, exploded into loose objects that connect to the copy', async () => {
    const head = await upstream.commit({ 'src/a.ts': 'export const a = 2;\n', 'b.md': 'b\n' });
    const expected = await missingObjects(upstream.bareDir, head, base);
    const progress: string[] = [];
    const packsBefore = await packFiles(copy);
    const result = await fetchPack(service, upstream.url, options(head, { onProgress: (p) => progress.push(p.stage) }));
    expect(result.objects).toBe(expected);
    expect(result.bytesReceived).toBeGreaterThan(12);
    expect(server.repoStats('packs')).toMatchObject({ requests: 1, fetches: 1, infoRefs: 0, lsRefs: 0 });
    // Every object of the new commit that the copy lacked is now there, and git can walk it.
    expect(await missingObjects(copy, head, base)).toBe(expected);
    expect(await packFiles(copy)).toEqual(packsBefore);
    expect(await hasObject(path.join(copy, '.git'), head)).toBe(true);
    expect(progress.length).toBeGreaterThan(0);
  });

  it('a big update (100 objects or more) is kept as a pack by git index-pack', async () => {
    const files = Object.fromEntries(Array.from({ length: 120 }, (_, index) => [`many/${index}.txt`, `file ${index} ${randomBytes(8).toString('hex')}\n`]));
    const head = await upstream.commit(files, 'many files');
    const packsBefore = await packFiles(copy);
    const result = await fetchPack(service, upstream.url, options(head));
    expect(result.objects).toBeGreaterThanOrEqual(120);
    expect((await packFiles(copy)).length).toBe(packsBefore.length + 1);
    await git(['checkout', '--quiet', '--force', head], { cwd: copy });
    await git(['fsck', '--no-dangling', '--no-progress'], { cwd: copy });
  });

  it('without haves the server sends the whole history of the head', async () => {
    const empty = path.join(work, 'empty');
    await git(['init', '--quiet', empty]);
    const head = await upstream.head();
    const result = await fetchPack(service, upstream.url, { ...options(head), cwd: empty, haves: [] });
    expect(result.objects).toBe(await missingObjects(upstream.bareDir, head));
    await git(['checkout', '--quiet', head], { cwd: empty });
    await git(['fsck', '--no-dangling', '--no-progress'], { cwd: empty });
  });

  it('credentials go in the Authorization header only; a missing or wrong one is an auth failure', async () => {
    const head = await privateUpstream.head();
    const empty = path.join(work, 'private');
    await git(['init', '--quiet', empty]);
    const request = { ...options(head), cwd: empty, haves: [] };
    await expectGitError(fetchPack(service, privateUpstream.url, request), 'auth', /authentication failed for .*private\/packs\.git\/git-upload-pack \(HTTP 401\)/);
    await expectGitError(fetchPack(service, privateUpstream.url, { ...request, auth: { username: 'alice', password: 'wrong' } }), 'auth', /HTTP 401/);
    const result = await fetchPack(service, privateUpstream.url, { ...request, auth });
    expect(result.objects).toBeGreaterThan(0);
    expect(server.authorizations.at(-1)?.value).toBe(`Basic ${Buffer.from(`alice:${password}`).toString('base64')}`);
  });

  it('an object the server will not give: the server\'s own words, as a plain failure (git fetch is tried next)', async () => {
    const error = await expectGitError(fetchPack(service, upstream.url, options('0123456789abcdef0123456789abcdef01234567')), 'failed', /fetching failed: the server says: .*not our ref/);
    expect(error.message).not.toContain(copy);
  });

  it('not found, server errors and redirects are told apart', async () => {
    const head = await upstream.head();
    await expectGitError(fetchPack(service, server.repoUrl('no-such'), options(head)), 'not-found', /repository not found/);
    server.setFault('packs', { kind: 'status', status: 503 });
    await expectGitError(fetchPack(service, upstream.url, options(head)), 'unreachable', /answered HTTP 503/);
    server.setFault('packs', { kind: 'status', status: 302 });
    await expectGitError(fetchPack(service, upstream.url, options(head)), 'failed', /redirects are not followed/);
  });

  it('an answer cut off mid-pack fails as unreachable and leaves nothing that git would call complete', async () => {
    const big = randomBytes(256 * 1024).toString('base64');
    const head = await upstream.commit({ 'big.txt': big });
    server.setFault('packs', { kind: 'cut', afterBytes: 20_000 });
    await expectGitError(fetchPack(service, upstream.url, options(head)), 'unreachable', /fetching failed/);
    expect(await hasObject(path.join(copy, '.git'), head)).toBe(false);
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(base);
    // The next try gets it all.
    server.setFault('packs', null);
    await fetchPack(service, upstream.url, options(head));
    expect(await hasObject(path.join(copy, '.git'), head)).toBe(true);
  });

  it('a server that stalls is given up after the idle limit; a cancelled fetch stops at once', async () => {
    const head = await upstream.commit({ 'stall.txt': 'stall\n' });
    server.setFault('packs', { kind: 'hang' });
    const impatient = new Git({ timeoutMs: 30_000, idleTimeoutMs: 400 });
    await expectGitError(fetchPack(impatient, upstream.url, options(head)), 'timeout', /fetching stalled: nothing received for 400 ms/);
    server.setFault('packs', { kind: 'trickle', bytesPerSecond: 200 });
    const controller = new AbortController();
    const pending = fetchPack(service, upstream.url, options(head, { signal: controller.signal }));
    setTimeout(() => controller.abort(), 300);
    const started = Date.now();
    await expectGitError(pending, 'aborted', /fetching was cancelled/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('working copy object checks', { timeout: 30_000 }, () => {
  let server: GitServer;
  let work: string;

  beforeAll(async () => {
    server = await startGitServer();
    work = await mkdtemp(path.join(tmpdir(), 'repolens-copies-'));
  });
  afterAll(async () => {
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('hasObject finds packed and loose objects and nothing else; health needs the HEAD commit', async () => {
    const upstream = await createUpstream(server, 'objects', { files: { 'a.txt': 'a\n' } });
    const copies = new WorkingCopies(work);
    await copies.init();
    const copy = copies.pathOf('objects-copy');
    await git(['clone', '--quiet', upstream.url, copy]);
    const gitDir = path.join(copy, '.git');
    const head = await upstream.head();
    // A fresh clone keeps everything in one pack.
    expect(await hasObject(gitDir, head)).toBe(true);
    const tree = await git(['rev-parse', 'HEAD^{tree}'], { cwd: copy });
    expect(await hasObject(gitDir, tree)).toBe(true);
    const loose = await git(['hash-object', '-w', '--stdin'], { cwd: copy, input: 'loose\n' });
    expect(await hasObject(gitDir, loose)).toBe(true);
    expect(await hasObject(gitDir, 'ff'.repeat(20))).toBe(false);
    expect(await hasObject(gitDir, '00'.repeat(20))).toBe(false);
    expect(await copies.health('objects-copy')).toEqual({ healthy: true, head });

    await rm(path.join(gitDir, 'objects', 'pack'), { recursive: true });
    expect(await copies.health('objects-copy')).toEqual({ healthy: false, reason: 'the HEAD commit is missing from the object store' });
  });

  it('setTrackingRef writes the loose ref git reads, and refuses names that are not branch names', async () => {
    const upstream = await createUpstream(server, 'tracking', { files: { 'a.txt': 'a\n' } });
    const copies = new WorkingCopies(work);
    const copy = copies.pathOf('tracking-copy');
    await git(['clone', '--quiet', upstream.url, copy]);
    const head = await upstream.head();
    await copies.setTrackingRef('tracking-copy', 'feature/x', head);
    expect(await git(['rev-parse', 'refs/remotes/origin/feature/x'], { cwd: copy })).toBe(head);
    for (const bad of ['../../HEAD', 'a..b', 'x.lock', '/abs', 'with space', 'a/.hidden', 'c:d', '']) {
      await expect(copies.setTrackingRef('tracking-copy', bad, head)).rejects.toThrow(/not a valid branch name/);
    }
    await expect(copies.setTrackingRef('tracking-copy', 'main', 'HEAD')).rejects.toThrow(/not an object id/);
  });
});
