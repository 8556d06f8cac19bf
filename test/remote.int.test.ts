import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GitError } from '../src/sync/git.js';
import { readRemote, type RemoteState } from '../src/sync/remote.js';
import { createUpstream, git, type Upstream } from './support/gitFixtures.js';
import { expectGitError as expectCleanGitError } from './support/gitErrors.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

const password = 'ls-refs-Secret-9f3';
const auth = { username: 'alice', password };
const options = { timeoutMs: 10_000 };

/** What real `git ls-remote --symref` says, in the shape readRemote returns. */
async function gitLsRemote(url: string, env: NodeJS.ProcessEnv = {}): Promise<RemoteState> {
  const out = await git(['ls-remote', '--symref', url, 'HEAD', 'refs/heads/*', 'refs/tags/*'], { env });
  const state: RemoteState = { defaultBranch: null, branches: new Map(), tags: new Map() };
  for (const line of out.split('\n')) {
    const symref = /^ref: refs\/heads\/(\S+)\tHEAD$/.exec(line);
    if (symref) state.defaultBranch = symref[1]!;
    const [sha, ref] = line.split('\t');
    if (ref?.startsWith('refs/heads/')) state.branches.set(ref.slice(11), sha!);
    if (ref?.startsWith('refs/tags/')) {
      const name = ref.slice(10).replace(/\^\{\}$/, '');
      if (ref.endsWith('^{}') || !state.tags.has(name)) state.tags.set(name, sha!);
    }
  }
  return state;
}

/** A GitError of this kind, with no trace of the test credentials. */
function expectGitError(promise: Promise<unknown>, failure: GitError['failure'], message: RegExp): Promise<GitError> {
  return expectCleanGitError(promise, failure, message, auth);
}

describe('readRemote: the CHECK ref listing over smart HTTP, without spawning git', { timeout: 30_000 }, () => {
  let server: GitServer;
  let upstream: Upstream;

  beforeAll(async () => {
    server = await startGitServer({ auth: { ...auth, repos: (name) => name.startsWith('private/') } });
    upstream = await createUpstream(server, 'listing', { files: { 'README.md': '# listing\n' }, branch: 'trunk' });
    const first = await upstream.head();
    await upstream.commit({ 'a.txt': 'a\n' }, 'on a feature', 'feature/x');
    await upstream.commit({ 'b.txt': 'b\n' }, 'second on trunk');
    await upstream.tag('light', first);
    // An annotated tag: the listing must name the commit (peeled), as `git ls-remote` does with ^{}.
    await git(['tag', '-a', 'v1.0', '-m', 'release', first], { cwd: upstream.bareDir });
  });
  afterEach(() => {
    server.setFault('*', null);
    server.setFault('listing', null);
    server.resetStats();
  });
  afterAll(() => server?.close());

  it('protocol v2: the same branches, tags (annotated ones peeled) and default branch as git ls-remote; two requests, then one', async () => {
    const expected = await gitLsRemote(upstream.url);
    expect(expected.tags.get('v1.0')).toBe(await git(['rev-parse', 'v1.0^{commit}'], { cwd: upstream.bareDir }));
    server.resetStats();
    const state = await readRemote(upstream.url, options);
    expect(state).toEqual(expected);
    expect(state.defaultBranch).toBe('trunk');
    expect([...state.branches.keys()].sort()).toEqual(['feature/x', 'trunk']);
    expect(server.repoStats('listing')).toMatchObject({ requests: 2, infoRefs: 1, lsRefs: 1, fetches: 0 });

    // The repository is known to speak v2: the next checks send ls-refs alone, and see changes.
    const moved = await upstream.commit({ 'c.txt': 'c\n' }, 'third on trunk');
    server.resetStats();
    const again = await readRemote(upstream.url, options);
    expect(again.branches.get('trunk')).toBe(moved);
    expect(again).toEqual(await gitLsRemote(upstream.url));
    expect(server.repoStats('listing')).toMatchObject({ infoRefs: 1, lsRefs: 2 }); // ours: 0 + 1; git ls-remote: 1 + 1
  });

  it('protocol v0 (a server that ignores Git-Protocol): the same listing from the advertisement alone, in one request', async () => {
    const old = await createUpstream(server, 'v0-only', { files: { 'README.md': '# v0\n' } });
    await old.tag('v0.1');
    server.setFault('v0-only', { kind: 'protocol-v0' });
    const expected = await gitLsRemote(old.url);
    server.resetStats();
    expect(await readRemote(old.url, options)).toEqual(expected);
    expect(server.repoStats('v0-only')).toMatchObject({ requests: 1, infoRefs: 1, lsRefs: 0, fetches: 0 });
  });

  it('a repository that spoke v2 and now speaks only v0: the direct ls-refs fails, the full exchange answers', async () => {
    const changing = await createUpstream(server, 'downgraded');
    await readRemote(changing.url, options);
    server.setFault('downgraded', { kind: 'protocol-v0' });
    server.resetStats();
    const state = await readRemote(changing.url, options);
    expect(state).toEqual(await gitLsRemote(changing.url));
    expect(state.branches.get('main')).toBe(await changing.head());
    expect(server.repoStats('downgraded').infoRefs).toBe(2); // ours after the failed POST, then git's
  });

  it('an empty repository lists no branches', async () => {
    const empty = await createUpstream(server, 'empty-listing', { files: {} });
    const state = await readRemote(empty.url, options);
    expect(state.branches.size).toBe(0);
    expect(state.tags.size).toBe(0);
  });

  it('a private repository: refused without credentials (auth), listed with them, which go only in the Authorization header', async () => {
    const secret = await createUpstream(server, 'private/listing');
    await expectGitError(readRemote(secret.url, options), 'auth', /authentication failed for http:\/\/127\.0\.0\.1:\d+\/private\/listing\.git\/info\/refs \(HTTP 401\)/);
    await expectGitError(readRemote(secret.url, { ...options, auth: { username: 'alice', password: 'wrong' } }), 'auth', /HTTP 401/);
    const state = await readRemote(secret.url, { ...options, auth });
    expect(state.branches.get('main')).toBe(await secret.head());
    const sent = server.authorizations.filter((entry) => entry.repo === 'private/listing').map((entry) => entry.value);
    expect(sent.at(-1)).toBe(`Basic ${Buffer.from(`alice:${password}`).toString('base64')}`);
  });

  it('maps what the server says: 404 not-found, 5xx unreachable, a redirect refused (never followed)', async () => {
    await expectGitError(readRemote(server.repoUrl('no-such-repository'), options), 'not-found', /repository not found/);
    server.setFault('listing', { kind: 'status', status: 503 });
    await expectGitError(readRemote(upstream.url, options), 'unreachable', /answered HTTP 503/);
    server.setFault('listing', { kind: 'status', status: 302 });
    await expectGitError(readRemote(upstream.url, options), 'failed', /redirects \(HTTP 302\); redirects are not followed/);
  });

  it('a web page that is not a git endpoint, a server that stalls, a refused connection, a cancelled check', async () => {
    const page: Server = createServer((req, res) => {
      if (req.url?.startsWith('/redirect')) return void res.writeHead(301, { Location: `${upstream.url}/info/refs?service=git-upload-pack` }).end();
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<html>hello</html>');
    });
    await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
    const pageUrl = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
    try {
      await expectGitError(readRemote(`${pageUrl}/some/repo.git`, options), 'not-found', /not a git smart HTTP endpoint/);
      // The redirect target is a real repository: still refused, and nothing reached it.
      server.resetStats();
      await expectGitError(readRemote(`${pageUrl}/redirect/repo.git`, options), 'failed', /HTTP 301/);
      expect(server.repoStats('listing').requests).toBe(0);
    } finally {
      await new Promise<void>((resolve) => page.close(() => resolve()));
    }

    server.setFault('listing', { kind: 'hang' });
    const started = Date.now();
    await expectGitError(readRemote(upstream.url, { timeoutMs: 500 }), 'timeout', /timed out after 500 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);

    const controller = new AbortController();
    const pending = readRemote(upstream.url, { ...options, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expectGitError(pending, 'aborted', /cancelled/);
    server.setFault('listing', null);

    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await expectGitError(readRemote(`http://127.0.0.1:${closedPort}/repo.git`, options), 'unreachable', /ECONNREFUSED/);
  });

  it('a kept-alive connection the server closes as it is reused (its idle timeout): sent again once on a new one; a fresh connection reset is not retried', async () => {
    // In front of the git server: serves one request per connection, and drops the connection when a
    // second request arrives on it, as a server whose keep-alive timeout fires at that moment does.
    let connections = 0;
    let dropped = 0;
    const perSocket = new WeakMap<object, number>();
    const proxy: Server = createServer((req, res) => {
      const count = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, count);
      if (count > 1) {
        dropped++;
        return void req.socket.destroy();
      }
      const forward = new URL(req.url!, upstream.url);
      const outbound = request(forward, { method: req.method, headers: { ...req.headers, host: forward.host } }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      });
      req.pipe(outbound);
    });
    proxy.on('connection', () => connections++);
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const url = `${base}${new URL(upstream.url).pathname}`;
    try {
      const listed = await readRemote(url, options);
      expect(listed.branches.get(listed.defaultBranch!)).toBe(await upstream.head());
      // The second request went out on the kept-alive socket, was dropped, and went again on a new one.
      expect(dropped).toBeGreaterThanOrEqual(1);
      expect(connections).toBeGreaterThanOrEqual(2);
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }

    // A server that resets every new connection: one attempt, a clean network failure.
    let attempts = 0;
    const reset: Server = createServer((req) => {
      attempts++;
      req.socket.destroy();
    });
    await new Promise<void>((resolve) => reset.listen(0, '127.0.0.1', resolve));
    try {
      await expectGitError(readRemote(`http://127.0.0.1:${(reset.address() as AddressInfo).port}/repo.git`, options), 'unreachable', /ECONNRESET/);
      expect(attempts).toBe(1);
    } finally {
      await new Promise<void>((resolve) => reset.close(() => resolve()));
    }
  });
});
