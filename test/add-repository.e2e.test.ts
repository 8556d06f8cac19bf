import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId, encodeGlobalId } from '../src/schema/globalId.js';
import { AddRepositoryDocument, CreateProjectDocument, type AddRepositoryInput } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, TestClient } from './support/client.js';
import { createUpstream, git, type Upstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// addRepository refuses bad input with a clear error and without writing
// anything: no repository row, and for a refused URL not even a request to
// the host. `open` allows private hosts and plain http (as on-premise and in
// tests); `strict` is the default production policy.

interface Target {
  testApp: TestApp;
  client: TestClient;
  projectId: string;
}

let server: GitServer;
let open: Target;
let strict: Target;
let upstream: Upstream;
let port: string;

const dbId = (globalId: string): string => decodeGlobalId(globalId).id;
const totalRequests = (): number => [...server.stats.values()].reduce((sum, stats) => sum + stats.requests, 0);

async function startWith(env: Record<string, string>): Promise<Target> {
  const testApp = await startTestApp({ env });
  const client = await testApp.client();
  const projectId = (await client.request(CreateProjectDocument, { name: 'add' })).createProject.project.id;
  return { testApp, client, projectId };
}

/**
 * addRepository must fail with `code`, leave the repository table as it was
 * and (unless `mayContactHost`) send no request to the git host.
 */
async function expectRefused(
  target: Target,
  input: Partial<AddRepositoryInput> & { url: string },
  code = 'BAD_USER_INPUT',
  { mayContactHost = false } = {},
): Promise<GraphQLErrorShape> {
  const rows = await target.testApp.app.db.prisma.repository.count();
  const requests = totalRequests();
  const result = await target.client.raw(AddRepositoryDocument, { input: { projectId: target.projectId, ...input } });
  const error = result.errors?.[0] as unknown as GraphQLErrorShape | undefined;
  expect(error?.extensions?.code, `${JSON.stringify(input)} → ${JSON.stringify(result)}`).toBe(code);
  expect(result.data ?? null).toBeNull();
  expect(await target.testApp.app.db.prisma.repository.count()).toBe(rows);
  if (!mayContactHost) expect(totalRequests(), 'the git host was contacted').toBe(requests);
  return error!;
}

beforeAll(async () => {
  server = await startGitServer();
  port = new URL(server.url).port;
  upstream = await createUpstream(server, 'team/app');
  // localhost (not 127.0.0.1) stands for a GitHub host here, for web URLs like https://github.com/owner/name.
  [open, strict] = await Promise.all([
    startWith({ GITHUB_API_URL: `http://localhost:${port}` }),
    startWith({ REPOLENS_ALLOW_PRIVATE_HOSTS: '0' }),
  ]);
});

afterAll(async () => {
  await open?.testApp.close();
  await strict?.testApp.close();
  await server?.close();
});

describe('addRepository refuses unsafe or malformed URLs', () => {
  // Several of these name the real, reachable upstream: only validation stands between them and a clone.
  // URLs are built lazily: the server's port and folders exist only once beforeAll ran.
  const openCases: [string, () => string][] = [
    ['file:// URL', () => `file://${upstream.bareDir}`],
    ['file: without slashes', () => `file:${upstream.bareDir}`],
    ['a local path', () => upstream.bareDir],
    ['a relative local path', () => path.relative(process.cwd(), upstream.bareDir)],
    ['ext:: remote helper', () => 'ext::sh%20-c%20touch%20/tmp/repolens-pwned'],
    ['ext:: remote helper without spaces', () => `ext::git-upload-pack%S${upstream.bareDir}`],
    ['option-like --upload-pack', () => '--upload-pack=/bin/false'],
    ['option-like -oProxyCommand', () => '-oProxyCommand=/bin/false'],
    ['option-like --config', () => `--config=protocol.file.allow=always`],
    ['ssh:// URL', () => `ssh://git@127.0.0.1:${port}/team/app.git`],
    ['scp-like git@host:path', () => 'git@github.com:team/app.git'],
    ['scp-like host:path', () => `127.0.0.1:team/app.git`],
    ['git:// URL', () => `git://127.0.0.1:${port}/team/app.git`],
    ['user and password in the URL', () => `http://alice:s3cret-password@127.0.0.1:${port}/team/app.git`],
    ['a token as user name in the URL', () => `http://ghp_abcdefabcdefabcdef@127.0.0.1:${port}/team/app.git`],
    ['an empty user info', () => `http://@127.0.0.1:${port}/team/app.git`],
    ['169.254.169.254 (cloud metadata)', () => 'http://169.254.169.254/latest/meta-data/iam.git'],
    ['169.254.169.254 mapped into IPv6', () => 'http://[::ffff:169.254.169.254]/x.git'],
    ['[fe80::1] (IPv6 link-local)', () => 'http://[fe80::1]/x.git'],
    ['empty', () => ''],
    ['whitespace only', () => '   \t  '],
    ['a newline inside', () => `http://127.0.0.1:${port}/team/\napp.git`],
    ['a NUL character inside', () => `http://127.0.0.1:${port}/team/app\u0000.git`],
    ['a space inside', () => `http://127.0.0.1:${port}/team/app.git --upload-pack=/bin/false`],
    ['overlong (3000 characters)', () => `http://127.0.0.1:${port}/${'a'.repeat(3000)}.git`],
    ['javascript:', () => 'javascript:alert(1)'],
    ['data:', () => 'data:text/plain,hello'],
    ['".." path segments', () => `http://127.0.0.1:${port}/other/../team/app.git`],
    ['a backslash', () => `http://127.0.0.1:${port}\\@example.com/team/app.git`],
    ['no host', () => 'http:///team/app.git'],
  ];

  it.each(openCases)('refuses %s even when private hosts are allowed', async (_label, url) => {
    await expectRefused(open, { url: url() });
  });

  const strictCases: [string, () => string][] = [
    ['localhost', () => `https://localhost:${port}/team/app.git`],
    ['localhost with a trailing dot', () => `https://localhost.:${port}/team/app.git`],
    ['127.0.0.1', () => 'https://127.0.0.1/team/app.git'],
    ['127.0.0.2', () => 'https://127.0.0.2/team/app.git'],
    ['[::1]', () => 'https://[::1]/team/app.git'],
    ['[::ffff:127.0.0.1]', () => 'https://[::ffff:127.0.0.1]/team/app.git'],
    ['0x7f000001', () => 'https://0x7f000001/team/app.git'],
    ['2130706433', () => 'https://2130706433/team/app.git'],
    ['127.1', () => 'https://127.1/team/app.git'],
    ['0.0.0.0', () => 'https://0.0.0.0/team/app.git'],
    ['10.x', () => 'https://10.1.2.3/team/app.git'],
    ['192.168.x', () => 'https://192.168.1.10/team/app.git'],
    ['172.16.x', () => 'https://172.16.0.1/team/app.git'],
    ['172.31.x', () => 'https://172.31.255.254/team/app.git'],
    ['100.64.x (carrier-grade NAT)', () => 'https://100.64.0.1/team/app.git'],
    ['[fd00::1] (unique local)', () => 'https://[fd00::1]/team/app.git'],
    ['169.254.169.254', () => 'https://169.254.169.254/team/app.git'],
    ['plain http:// to a public host', () => 'http://example.com/team/app.git'],
    ['the reachable upstream over http on loopback', () => `http://127.0.0.1:${port}/team/app.git`],
  ];

  it.each(strictCases)('refuses %s when private hosts are not allowed', async (_label, url) => {
    await expectRefused(strict, { url: url() });
  });

  it('never echoes credentials from a refused URL', async () => {
    const secret = `pw-${randomUUID()}`;
    for (const url of [`http://alice:${secret}@127.0.0.1:${port}/team/app.git`, `https://${secret}@github.com/team/app`]) {
      const error = await expectRefused(open, { url });
      expect(error.message).not.toContain(secret);
    }
    expect(open.testApp.logs.join('\n')).not.toContain(secret);
  });
});

describe('addRepository never lets a refused address in through the back door', () => {
  it('does not echo a credential-bearing URL when the rest of the input is malformed', async () => {
    const secret = `pw-${randomUUID()}`;
    const response = await fetch(`${open.testApp.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${open.client.token}` },
      body: JSON.stringify({
        query: print(AddRepositoryDocument),
        variables: { input: { projectId: open.projectId, url: `http://alice:${secret}@127.0.0.1:${port}/team/app.git`, brnch: 'main' } },
      }),
    });
    const body = await response.text();
    expect(body).toContain('BAD_USER_INPUT');
    expect(body).not.toContain(secret);
    expect(open.testApp.logs.join('\n')).not.toContain(secret);
  });

  it('does not follow an HTTP redirect to an address it refuses', async () => {
    // 0.0.0.0 is refused even with private hosts allowed, yet on Linux connecting to it reaches loopback.
    const direct = `http://0.0.0.0:${port}/team/app.git`;
    await expectRefused(open, { url: direct });
    const redirector = createServer((req, res) => res.writeHead(302, { location: `http://0.0.0.0:${port}${req.url}` }).end());
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const rows = await open.testApp.app.db.prisma.repository.count();
      const before = server.repoStats('team/app').requests;
      const url = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/team/app.git`;
      const result = await open.client.raw(AddRepositoryDocument, { input: { projectId: open.projectId, url } });
      expect(result.errors ?? [], `accepted: ${JSON.stringify(result.data)}`).not.toEqual([]);
      expect(await open.testApp.app.db.prisma.repository.count()).toBe(rows);
      expect(server.repoStats('team/app').requests, 'the redirect target was contacted').toBe(before);
    } finally {
      await new Promise((resolve) => redirector.close(resolve));
    }
  });
});

describe('addRepository checks the remote, the branch and the project', () => {
  it('refuses a URL that serves no git repository', async () => {
    for (const url of [`${server.url}/no/such/repository.git`, `${server.url}/team/app`]) {
      await expectRefused(open, { url }, 'BAD_USER_INPUT', { mayContactHost: true });
    }
  });

  it('refuses a repository without any branch yet', async () => {
    const empty = await createUpstream(server, 'team/empty', { files: {} });
    await expectRefused(open, { url: empty.url }, 'BAD_USER_INPUT', { mayContactHost: true });
  });

  it('refuses a branch that does not exist upstream', async () => {
    const error = await expectRefused(open, { url: upstream.url, branch: 'no-such-branch' }, 'BAD_USER_INPUT', { mayContactHost: true });
    expect(error.message).toContain('no-such-branch');
  });

  it.each(['../x', '-x', 'a..b', '--upload-pack=/bin/false', 'a b', 'x.lock', 'a~1', 'a^', 'a:b', 'a\\b', '@{-1}', 'a/', '/a', 'a//b', 'a?', 'a*', 'a[b', 'x\ny'])(
    'refuses the invalid branch name %j',
    async (branch) => {
      await expectRefused(open, { url: upstream.url, branch });
    },
  );

  it('answers a repository added twice to one project (same URL and branch) with CONFLICT', async () => {
    const duplicate = await createUpstream(server, 'team/duplicate');
    await duplicate.createBranch('dev');
    const first = await open.client.request(AddRepositoryDocument, { input: { projectId: open.projectId, url: duplicate.url } });
    expect(first.addRepository.repository.branch).toBe('main');
    for (const input of [{ url: duplicate.url }, { url: duplicate.url, branch: 'main' }, { url: `${duplicate.url}/` }]) {
      await expectRefused(open, input, 'CONFLICT', { mayContactHost: true });
    }
    // Another branch of the same repository is another repository.
    const dev = await open.client.request(AddRepositoryDocument, { input: { projectId: open.projectId, url: duplicate.url, branch: 'dev' } });
    expect(dev.addRepository.repository).toMatchObject({ branch: 'dev', url: duplicate.url });
    for (const { repository } of [first.addRepository, dev.addRepository]) await waitForIdle(open.testApp.app, dbId(repository.id));
  });

  it('answers an unknown projectId with NOT_FOUND', async () => {
    const error = await expectRefused(open, { url: upstream.url, projectId: encodeGlobalId('Project', randomUUID()) }, 'NOT_FOUND');
    expect(error.message).toMatch(/project/i);
  });

  it('tracks the remote default branch when no branch is given', async () => {
    const trunk = await createUpstream(server, 'team/trunk-only', { branch: 'trunk', files: { 'README.md': '# trunk\n' } });
    // Neither the first branch by name nor "main" is the default.
    await trunk.createBranch('aaa');
    await trunk.commit({ 'main.txt': 'not the default\n' }, 'main branch', 'main');
    const { addRepository } = await open.client.request(AddRepositoryDocument, { input: { projectId: open.projectId, url: trunk.url } });
    expect(addRepository.repository).toMatchObject({ branch: 'trunk', defaultBranch: 'trunk', url: trunk.url, provider: 'GIT', name: 'team/trunk-only' });
    const synced = await waitForRepository(open.client, addRepository.repository.id, (state) => state.status !== 'PENDING' && state.status !== 'SYNCING' && state.status !== 'OUTDATED');
    expect(synced).toMatchObject({ status: 'SYNCED', branch: 'trunk', lastCommitSha: await trunk.head('trunk') });
    const copy = path.join(open.testApp.dataDir, 'repos', dbId(addRepository.repository.id));
    expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(await trunk.head('trunk'));
    await waitForIdle(open.testApp.app, dbId(addRepository.repository.id));
  });

  it('accepts a web URL of a provider host, normalises it to the clone URL and tracks the default branch', async () => {
    const web = await createUpstream(server, 'acme/webapp', { branch: 'trunk', files: { 'README.md': '# web\n' } });
    await web.commit({ 'x.txt': 'x\n' }, 'feature work', 'feature');
    const { addRepository } = await open.client.request(AddRepositoryDocument, {
      input: { projectId: open.projectId, url: `http://localhost:${port}/acme/webapp` },
    });
    expect(addRepository.repository).toMatchObject({
      provider: 'GITHUB',
      name: 'acme/webapp',
      url: `http://localhost:${port}/acme/webapp.git`,
      branch: 'trunk',
      defaultBranch: 'trunk',
    });
    // The same repository by its clone URL is a duplicate.
    await expectRefused(open, { url: `http://localhost:${port}/acme/webapp.git` }, 'CONFLICT', { mayContactHost: true });
    // A /tree/<branch> web URL names the branch.
    const tree = await open.client.request(AddRepositoryDocument, {
      input: { projectId: open.projectId, url: `http://localhost:${port}/acme/webapp/tree/feature` },
    });
    expect(tree.addRepository.repository).toMatchObject({ name: 'acme/webapp', url: `http://localhost:${port}/acme/webapp.git`, branch: 'feature' });
    for (const { repository } of [addRepository, tree.addRepository]) await waitForIdle(open.testApp.app, dbId(repository.id));
  });
});
