import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractSnapshot, UnsafeArchiveError } from '../src/storage/snapshotArchive.js';
import { TestClient } from './support/client.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import { createUpstream, type Upstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { craftTar, craftTarGz, gzipZeros, paxBody, type CraftEntry } from './support/tarCraft.js';
import { githubSignature } from './support/webhooks.js';
import { expectSectionCurrent, writeSection, writingReport } from './support/reliabilityReport.js';

// Issue 7 items 2 and 6 (adversarial half), SPEC §3 and §6 "Bad input gets a
// clear error and changes nothing": bad inputs at every entry point, each
// checked for (a) a clear refusal, (b) a server still answering afterwards and
// (c) no change to the database rows and folders it could have touched. Every
// case is recorded; docs/reliability.md's "Adversarial inputs" section is this
// run's table (REPOLENS_WRITE_RELIABILITY_REPORT=1 writes it, otherwise the
// last test checks that the committed one is current).

const execFileAsync = promisify(execFile);
const SECTION = '## Adversarial inputs';

type EntryPoint = 'addRepository URL' | 'GraphQL' | 'Webhooks' | 'Snapshot archive' | 'Repository content';

interface CaseRecord {
  entry: EntryPoint;
  input: string;
  expected: string;
  observed: string;
  refused: boolean;
  crashed: boolean;
  stateChanged: boolean;
  /** Hostile content accepted by design (synced) and served safely, rather than refused. */
  servedSafely: boolean;
  pass: boolean;
}

const records: CaseRecord[] = [];

// ---------------------------------------------------------------------------------------------
// Shared fixtures

let gitServer: GitServer;
/** REPOLENS_ALLOW_PRIVATE_HOSTS=1 (the test default): GraphQL, webhooks, repository content. */
let app: TestApp;
/** Private hosts NOT allowed, as in production: the URL cases. */
let strict: TestApp;
let token: string;
let otherToken: string;
let strictToken: string;
let projectId: string;
let strictProjectId: string;
let otherProjectId: string;
let otherRepositoryId: string;
let hooks: { id: string; dbId: string; secret: string; upstream: Upstream; name: string };
let gitlabHooks: { id: string; dbId: string; secret: string; upstream: Upstream; name: string };
let hostile: { id: string; dbId: string; upstream: Upstream; sha: string };
let sandbox: string;

const deepPath = `${'d/'.repeat(200)}leaf.txt`;
const newlineName = 'new\nline.txt';
const controlName = 'ctl-\x01\x07\x1b[31m-red.txt';
const tabName = 'tab\there.txt';

const dbId = (globalId: string) => Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
const gid = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString('base64url');

interface GqlAnswer {
  status: number;
  text: string;
  body: { data?: Record<string, any> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] } | null;
}

async function gql(target: TestApp, bearer: string | null, body: unknown, init: { headers?: Record<string, string>; raw?: string } = {}): Promise<GqlAnswer> {
  const response = await fetch(`${target.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...init.headers },
    body: init.raw ?? JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: GqlAnswer['body'] = null;
  try {
    parsed = JSON.parse(text) as GqlAnswer['body'];
  } catch {
    parsed = null;
  }
  return { status: response.status, text, body: parsed };
}

async function data(target: TestApp, bearer: string, query: string, variables?: Record<string, unknown>): Promise<Record<string, any>> {
  const answer = await gql(target, bearer, { query, variables });
  if (answer.body?.errors?.length || !answer.body?.data) throw new Error(`GraphQL failed: ${answer.text}`);
  return answer.body.data;
}

/** What a refused GraphQL request said, as `HTTP <status> <CODE>: <message>`; fails unless it is one of `codes`. */
function expectGqlError(answer: GqlAnswer, codes: string[], message: RegExp, field?: string[]): string {
  const error = answer.body?.errors?.[0];
  expect(error, `expected a GraphQL error, got HTTP ${answer.status} ${answer.text.slice(0, 300)}`).toBeDefined();
  const code = String(error!.extensions?.code);
  expect(codes, `code ${code}: ${error!.message}`).toContain(code);
  expect(error!.message).toMatch(message);
  if (field) {
    // A refused field (its parent answered): the field itself is null, and the error points at it.
    let value: unknown = answer.body?.data;
    for (const key of field) value = (value as Record<string, unknown> | null | undefined)?.[key];
    expect(value ?? null, 'the refused field returned data').toBeNull();
    expect((error as { path?: unknown }).path).toEqual(field);
  } else {
    // A refused request runs nothing: no field resolved for the client.
    const values = Object.values(answer.body?.data ?? {}).filter((value) => value !== null);
    expect(values, 'a refused operation returned data').toEqual([]);
  }
  return `HTTP ${answer.status} ${code}: ${shorten(error!.message)}`;
}

function shorten(text: string, max = 110): string {
  const clean = text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
    .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<port>')
    .replace(/\s+/g, ' ')
    .replace(/\|/g, '\\|');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

// ---------------------------------------------------------------------------------------------
// State snapshots and liveness

async function listTree(dir: string, depth: number, prefix = ''): Promise<string[]> {
  let children;
  try {
    children = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const child of children.sort((a, b) => a.name.localeCompare(b.name))) {
    const name = `${prefix}${child.name}${child.isDirectory() ? '/' : ''}`;
    out.push(name);
    if (child.isDirectory() && depth > 1) out.push(...(await listTree(path.join(dir, child.name), depth - 1, name)));
  }
  return out;
}

/** Rows a bad request could create, change or remove, and the data folder (working copies, archives). */
async function stateOf(target: TestApp): Promise<Record<string, unknown>> {
  const prisma = target.app.db.prisma;
  const byId = { orderBy: { id: 'asc' as const } };
  const [tenants, tokens, projects, repositories, credentials, deliveries, runs, snapshots, refs, pulls] = await Promise.all([
    prisma.tenant.findMany({ select: { id: true, name: true }, ...byId }),
    prisma.apiToken.findMany({ select: { id: true }, ...byId }),
    prisma.project.findMany({ select: { id: true, name: true }, ...byId }),
    prisma.repository.findMany({ select: { id: true, url: true, branch: true, status: true, lastCommitSha: true, lastError: true, webhookSecret: true }, ...byId }),
    prisma.credential.findMany({ select: { id: true }, ...byId }),
    prisma.webhookDelivery.findMany({ select: { id: true, deliveryId: true, outcome: true }, ...byId }),
    prisma.syncRun.findMany({ select: { id: true, status: true }, ...byId }),
    prisma.snapshot.findMany({ select: { id: true }, ...byId }),
    prisma.ref.findMany({ select: { repositoryId: true, name: true, sha: true }, orderBy: [{ repositoryId: 'asc' }, { name: 'asc' }] }),
    prisma.pullRequest.findMany({ select: { repositoryId: true, number: true, state: true }, orderBy: [{ repositoryId: 'asc' }, { number: 'asc' }] }),
  ]);
  const repos = await listTree(path.join(target.dataDir, 'repos'), 2);
  const archives = await listTree(path.join(target.dataDir, 'archives'), 4);
  return { tenants, tokens, projects, repositories, credentials, deliveries, runs, snapshots, refs, pulls, repos, archives };
}

/** /healthz answers and a normal query still works. */
async function alive(target: TestApp, bearer: string): Promise<boolean> {
  try {
    const health = await fetch(`${target.url}/healthz`);
    if (health.status !== 200 || (await health.json()).status !== 'ok') return false;
    const answer = await gql(target, bearer, { query: '{ projects(first: 1) { edges { node { id name } } } }' });
    return answer.status === 200 && !answer.body?.errors && Array.isArray(answer.body?.data?.projects?.edges);
  } catch {
    return false;
  }
}

interface CaseOptions {
  target?: () => TestApp;
  bearer?: () => string;
  /** Drops what the case is expected to add from the "after" state (e.g. a delivery stored as IGNORED by design). */
  adjustAfter?: (after: Record<string, unknown>, before: Record<string, unknown>) => Promise<void> | void;
  /** Content checks: a hostile upstream accepted and served safely rather than refused. */
  servedSafely?: boolean;
}

/**
 * Runs one bad input: `attempt` sends it, asserts the refusal and returns what
 * was observed. Then the server must still answer and the state must be as before.
 */
async function runCase(entry: EntryPoint, input: string, expected: string, attempt: () => Promise<string>, options: CaseOptions = {}): Promise<void> {
  const target = (options.target ?? (() => app))();
  const bearer = (options.bearer ?? (() => token))();
  const before = await stateOf(target);
  let observed = '';
  let failure: unknown;
  try {
    observed = await attempt();
  } catch (error) {
    failure = error;
    observed = `FAILED: ${shorten((error as Error).message, 160)}`;
  }
  await target.app.services.webhooks.idle();
  const live = await alive(target, bearer);
  const after = await stateOf(target);
  if (options.adjustAfter) await options.adjustAfter(after, before);
  const stateChanged = JSON.stringify(before) !== JSON.stringify(after);
  const pass = failure === undefined && live && !stateChanged;
  records.push({ entry, input, expected, observed, refused: failure === undefined, crashed: !live, stateChanged, servedSafely: Boolean(options.servedSafely), pass });
  if (failure) throw failure;
  expect(live, 'the server no longer answers /healthz and a normal query').toBe(true);
  expect(after, 'the bad input changed state').toEqual(before);
}

// ---------------------------------------------------------------------------------------------
// Setup

beforeAll(async () => {
  sandbox = await mkdtemp(path.join(tmpdir(), 'repolens-adversarial-'));
  gitServer = await startGitServer();
  [app, strict] = await Promise.all([startTestApp(), startTestApp({ env: { REPOLENS_ALLOW_PRIVATE_HOSTS: '0' } })]);
  token = (await app.client('acme')).token!;
  otherToken = (await app.client('intruder-victim')).token!;
  strictToken = (await strict.client('acme')).token!;

  const create = async (target: TestApp, bearer: string, name: string) =>
    (await data(target, bearer, 'mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }', { n: name })).createProject.project.id as string;
  [projectId, otherProjectId, strictProjectId] = await Promise.all([create(app, token, 'adversarial'), create(app, otherToken, 'victim'), create(strict, strictToken, 'strict')]);

  const [hooksUp, gitlabUp, victimUp, hostileUp] = await Promise.all([
    createUpstream(gitServer, 'adv/hooks', { files: { 'README.md': '# hooks\n' } }),
    createUpstream(gitServer, 'adv/gitlab-hooks', { files: { 'README.md': '# gitlab hooks\n' } }),
    createUpstream(gitServer, 'victim/secret', { files: { 'README.md': '# not yours\n' } }),
    createUpstream(gitServer, 'adv/hostile', { files: { 'README.md': '# hostile\n' } }),
  ]);
  // Hostile content, written by git itself (fast-import): a link to /etc/passwd and to /etc,
  // names with a newline and control characters, a 200-level tree.
  const hostileSha = await hostileUp.commit({
    passwd: { symlink: '/etc/passwd' },
    etc: { symlink: '/etc' },
    'escape-link': { symlink: '../../../../../../../../etc/passwd' },
    [newlineName]: 'newline\n',
    [tabName]: 'tab\n',
    [deepPath]: 'deep\n',
  });
  const controlSha = await hostileUp.commit({ [controlName]: 'control\n' }, 'control characters');
  expect(controlSha).not.toBe(hostileSha);

  const add = async (bearer: string, project: string, url: string, extra = '') => {
    const added = await data(
      app,
      bearer,
      `mutation($p: ID!, $u: String!) { addRepository(input: { projectId: $p, url: $u ${extra} }) { repository { id } webhook { secret } } }`,
      { p: project, u: url },
    );
    return { id: added.addRepository.repository.id as string, secret: added.addRepository.webhook.secret as string };
  };
  const [h, g, v, x] = await Promise.all([
    add(token, projectId, hooksUp.url, ', archivePolicy: NONE'),
    add(token, projectId, gitlabUp.url, ', provider: GITLAB, archivePolicy: NONE'),
    add(otherToken, otherProjectId, victimUp.url, ', archivePolicy: NONE'),
    add(token, projectId, hostileUp.url),
  ]);
  for (const [id, bearer] of [[h.id, token], [g.id, token], [v.id, otherToken], [x.id, token]] as const) {
    const client = new TestClient(app.url, bearer);
    await waitForRepository(client, id, (state) => state.status === 'SYNCED' || state.status === 'FAILED', 45_000);
    await waitForIdle(app.app, dbId(id));
  }
  // Archiving (the hostile repository's snapshot) is part of its run: idle means it is stored.
  hooks = { id: h.id, dbId: dbId(h.id), secret: h.secret, upstream: hooksUp, name: 'adv/hooks' };
  gitlabHooks = { id: g.id, dbId: dbId(g.id), secret: g.secret, upstream: gitlabUp, name: 'adv/gitlab-hooks' };
  otherRepositoryId = v.id;
  hostile = { id: x.id, dbId: dbId(x.id), upstream: hostileUp, sha: controlSha };
}, 90_000);

afterAll(async () => {
  if (writingReport && records.length > 0) await writeSection(SECTION, renderSection(records));
  await Promise.all([app?.close(), strict?.close()]);
  await gitServer?.close();
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
}, 60_000);

// ---------------------------------------------------------------------------------------------
// 1. addRepository URLs (SPEC §3), on an app that does not allow private hosts

interface UrlCase {
  input: string;
  url: string | (() => Promise<string>);
  message: RegExp;
  /** Must not appear in the answer (a credential pasted into the URL). */
  secret?: string;
  /** Run on the app that allows private hosts (link-local stays refused there). */
  permissive?: boolean;
}

/** A name other than "localhost" that /etc/hosts maps to 127.0.0.1, if there is one. */
async function hostsLoopbackName(): Promise<string> {
  const hosts = await readFile('/etc/hosts', 'utf8').catch(() => '');
  for (const line of hosts.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    const name = names.find((candidate) => candidate && candidate.toLowerCase() !== 'localhost');
    if (address === '127.0.0.1' && name) return name;
  }
  return 'localhost';
}

const urlCases: UrlCase[] = [
  { input: 'file:///etc/passwd', url: 'file:///etc/passwd', message: /scheme "file:" is not allowed/ },
  { input: 'file:// path to a local bare repository', url: 'file:///srv/git/secret.git', message: /scheme "file:" is not allowed/ },
  { input: 'ext::sh -c touch% /tmp/pwned (remote helper)', url: 'ext::sh -c touch% /tmp/pwned', message: /whitespace|ext::/ },
  { input: 'ext::sh%20-c%20id (remote helper, no spaces)', url: 'ext::sh%20-c%20id', message: /remote-helper syntax/ },
  { input: 'fd::0 (remote helper)', url: 'fd::0', message: /remote-helper syntax/ },
  { input: '--upload-pack=touch /tmp/x', url: '--upload-pack=touch /tmp/x', message: /must not start with "-"/ },
  { input: '-uhttps://github.com/a/b (option-like)', url: '-uhttps://github.com/a/b', message: /must not start with "-"/ },
  { input: 'ssh://-oProxyCommand=touch%20/tmp/x/r.git', url: 'ssh://-oProxyCommand=touch%20/tmp/x/r.git', message: /scheme "ssh:" is not allowed/ },
  { input: 'git@github.com:-oProxyCommand=x/r.git (scp-like with -o)', url: 'git@github.com:-oProxyCommand=x/r.git', message: /SSH .* not supported/ },
  { input: 'git@github.com:octocat/Hello-World.git (scp-like)', url: 'git@github.com:octocat/Hello-World.git', message: /SSH .* not supported/ },
  {
    input: 'https://user:token@host/r.git (credentials; token never echoed)',
    url: 'https://user:ghp_SuperSecretToken1234567890abcdef@github.com/octocat/Hello-World.git',
    message: /must not contain credentials/,
    secret: 'ghp_SuperSecretToken1234567890abcdef',
  },
  { input: 'https://token@host/r.git (user only)', url: 'https://glpat-LeakMe0123456789@gitlab.com/g/p.git', message: /must not contain credentials/, secret: 'glpat-LeakMe0123456789' },
  { input: 'https://:@github.com/a/b (empty credentials)', url: 'https://:@github.com/a/b', message: /must not contain credentials/ },
  { input: 'http://169.254.169.254/latest/meta-data', url: 'http://169.254.169.254/latest/meta-data', message: /plain http/ },
  { input: 'https://169.254.169.254/latest/meta-data (cloud metadata)', url: 'https://169.254.169.254/latest/meta-data', message: /link-local address 169\.254\.169\.254/ },
  {
    input: 'http://169.254.169.254/… with REPOLENS_ALLOW_PRIVATE_HOSTS=1',
    url: 'http://169.254.169.254/latest/meta-data',
    message: /link-local address 169\.254\.169\.254/,
    permissive: true,
  },
  { input: 'https://[fe80::1]/r.git with private hosts allowed', url: 'https://[fe80::1]/r.git', message: /link-local/, permissive: true },
  { input: 'https://127.0.0.1/r.git', url: 'https://127.0.0.1/r.git', message: /loopback address 127\.0\.0\.1/ },
  { input: 'https://[::1]/r.git', url: 'https://[::1]/r.git', message: /loopback address ::1/ },
  { input: 'https://[::ffff:127.0.0.1]/r.git (v4-mapped)', url: 'https://[::ffff:127.0.0.1]/r.git', message: /loopback/ },
  { input: 'https://0x7f000001/r.git (hex)', url: 'https://0x7f000001/r.git', message: /dotted-decimal/ },
  { input: 'https://2130706433/r.git (decimal)', url: 'https://2130706433/r.git', message: /dotted-decimal/ },
  { input: 'https://0177.0.0.1/r.git (octal)', url: 'https://0177.0.0.1/r.git', message: /dotted-decimal/ },
  { input: 'https://127.1/r.git (short form)', url: 'https://127.1/r.git', message: /dotted-decimal/ },
  { input: 'https://0.0.0.0/r.git (unspecified)', url: 'https://0.0.0.0/r.git', message: /unspecified address/ },
  { input: 'https://10.0.0.5/r.git (private)', url: 'https://10.0.0.5/r.git', message: /private address/ },
  { input: 'https://localhost/r.git', url: 'https://localhost/r.git', message: /host localhost is not allowed: loopback/ },
  { input: 'https://localhost./r.git (trailing dot)', url: 'https://localhost./r.git', message: /host localhost is not allowed: loopback/ },
  {
    input: 'https://<name from /etc/hosts → 127.0.0.1>/r.git',
    url: async () => `https://${await hostsLoopbackName()}/r.git`,
    message: /is not allowed: loopback address 127\.0\.0\.1/,
  },
  { input: 'https://gіthub.com/octocat/Hello-World (Cyrillic і look-alike)', url: 'https://g\u0456thub.com/octocat/Hello-World', message: /look-alike|mixes scripts|Latin/ },
  { input: 'https://xn--gthub-n2e.com/octocat/Hello-World (punycode of the look-alike)', url: 'https://xn--gthub-n2e.com/octocat/Hello-World', message: /look-alike|mixes scripts|Latin/ },
  { input: 'overlong URL (3,000 characters)', url: `https://github.com/octocat/${'a'.repeat(3000)}`, message: /longer than 2048 characters/ },
  { input: 'empty string', url: '', message: /repository URL is required/ },
  { input: 'whitespace only', url: ' \t\n ', message: /repository URL is required/ },
  { input: 'https://github.com/a/b.git --upload-pack=x (embedded space)', url: 'https://github.com/a/b.git --upload-pack=x', message: /whitespace or control characters/ },
  { input: 'NUL byte in the URL', url: 'https://github.com/a/b\u0000.git', message: /whitespace or control characters/ },
  { input: 'javascript:alert(1)', url: 'javascript:alert(1)', message: /absolute https:\/\/ URL/ },
  { input: 'ftp://github.com/a/b.git', url: 'ftp://github.com/a/b.git', message: /scheme "ftp:" is not allowed/ },
  { input: 'https://github.com/a/../../etc/passwd (dot segments)', url: 'https://github.com/a/../../etc/passwd', message: /"\." or "\.\." segments/ },
  { input: 'https:\\\\github.com\\a\\b (backslashes)', url: 'https:\\\\github.com\\a\\b', message: /backslashes|absolute https/ },
];

describe('addRepository URLs (SPEC §3)', () => {
  it.each(urlCases)('$input', async (c) => {
    const target = () => (c.permissive ? app : strict);
    const bearer = () => (c.permissive ? token : strictToken);
    await runCase(
      'addRepository URL',
      c.input,
      'BAD_USER_INPUT naming the problem; no Repository row',
      async () => {
        const url = typeof c.url === 'string' ? c.url : await c.url();
        // A name read from this machine's /etc/hosts: the report names it generically.
        const local = typeof c.url === 'string' ? null : new URL(url).hostname;
        const answer = await gql(target(), bearer(), {
          query: 'mutation($p: ID!, $u: String!) { addRepository(input: { projectId: $p, url: $u }) { repository { id } } }',
          variables: { p: c.permissive ? projectId : strictProjectId, u: url },
        });
        const observed = expectGqlError(answer, ['BAD_USER_INPUT'], c.message);
        if (c.secret) expect(answer.text).not.toContain(c.secret);
        // The URL is never echoed back (it may carry a credential or be 3,000 characters long).
        if (url.length > 8) expect(answer.text).not.toContain(url);
        return local ? observed.split(` ${local} `).join(' <name> ') : observed;
      },
      { target, bearer },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 2. GraphQL

function nested(levels: number): string {
  let inner = 'id';
  for (let level = 0; level < levels; level++) inner = `project { repositories(first: 1) { edges { node { ${inner} } } } }`;
  return `query($id: ID!) { repository(id: $id) { ${inner} } }`;
}

interface GqlCase {
  input: string;
  expected: string;
  run: () => Promise<string>;
}

const ADD = 'mutation($p: ID!, $u: String!) { addRepository(input: { projectId: $p, url: $u }) { repository { id } } }';

const gqlCases: GqlCase[] = [
  {
    input: 'depth bomb (repository → project → repositories … 10 levels, limit 12)',
    expected: 'BAD_USER_INPUT depth limit',
    run: async () => expectGqlError(await gql(app, token, { query: nested(10), variables: { id: hooks.id } }), ['BAD_USER_INPUT'], /depth limit of 12/i),
  },
  {
    input: 'alias flood (101 aliases, REPOLENS_GRAPHQL_MAX_ALIASES default 100)',
    expected: 'BAD_USER_INPUT aliases limit',
    run: async () => {
      const fields = Array.from({ length: 101 }, (_, index) => `a${index}: projects(first: 1) { edges { cursor } }`).join(' ');
      return expectGqlError(await gql(app, token, { query: `{ ${fields} }` }), ['BAD_USER_INPUT'], /aliases limit of 100/i);
    },
  },
  {
    input: 'alias flood of mutations (101 × createProject)',
    expected: 'BAD_USER_INPUT aliases limit; no project created',
    run: async () => {
      const fields = Array.from({ length: 101 }, (_, index) => `m${index}: createProject(input: { name: "flood-${index}" }) { project { id } }`).join(' ');
      return expectGqlError(await gql(app, token, { query: `mutation { ${fields} }` }), ['BAD_USER_INPUT'], /aliases limit of 100/i);
    },
  },
  {
    input: 'cost bomb (first: 100 nested three deep)',
    expected: 'BAD_USER_INPUT estimated cost over the limit',
    run: async () =>
      expectGqlError(
        await gql(app, token, {
          query: '{ projects(first: 100) { edges { node { repositories(first: 100) { edges { node { syncRuns(first: 100) { edges { node { id status } } } } } } } } } }',
        }),
        ['BAD_USER_INPUT'],
        /estimated cost \d+ is over the limit of 50000/,
      ),
  },
  {
    input: 'cost bomb hidden in a variable (first: $n, n = 100)',
    expected: 'BAD_USER_INPUT estimated cost',
    run: async () =>
      expectGqlError(
        await gql(app, token, {
          query: 'query($n: Int) { projects(first: $n) { edges { node { repositories(first: $n) { edges { node { syncRuns(first: $n) { edges { node { id } } } } } } } } } }',
          variables: { n: 100 },
        }),
        ['BAD_USER_INPUT'],
        /estimated cost/,
      ),
  },
  {
    input: 'batched operations (JSON array body)',
    expected: 'refused with a GraphQL error; nothing run',
    run: async () => {
      const answer = await gql(app, token, [
        { query: 'mutation { createProject(input: { name: "batched-1" }) { project { id } } }' },
        { query: 'mutation { createProject(input: { name: "batched-2" }) { project { id } } }' },
      ]);
      expect(answer.status).toBeGreaterThanOrEqual(400);
      return expectGqlError(answer, ['BAD_USER_INPUT'], /batch|array|object/i);
    },
  },
  {
    input: 'first: 1000000',
    expected: 'BAD_USER_INPUT (page size / cost)',
    run: async () => expectGqlError(await gql(app, token, { query: '{ projects(first: 1000000) { edges { node { id } } } }' }), ['BAD_USER_INPUT'], /first must be between 0 and 100|estimated cost/),
  },
  {
    input: 'first: -1',
    expected: 'BAD_USER_INPUT: first must be non-negative',
    run: async () => expectGqlError(await gql(app, token, { query: '{ projects(first: -1) { edges { node { id } } } }' }), ['BAD_USER_INPUT'], /"first" must be a non-negative|first must be between 0 and 100/),
  },
  {
    input: 'first: 2147483648 (over Int)',
    expected: 'BAD_USER_INPUT (not an Int)',
    run: async () => expectGqlError(await gql(app, token, { query: '{ projects(first: 2147483648) { edges { node { id } } } }' }), ['BAD_USER_INPUT'], /Int/),
  },
  {
    input: 'after: a forged cursor',
    expected: 'BAD_USER_INPUT',
    run: async () => expectGqlError(await gql(app, token, { query: '{ projects(first: 1, after: "%%%forged%%%") { edges { node { id } } } }' }), ['BAD_USER_INPUT'], /cursor/i),
  },
  {
    input: 'huge variables (a 2 MB string variable)',
    expected: 'HTTP 413, nothing run',
    run: async () => {
      const answer = await gql(app, token, { query: 'mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }', variables: { n: 'x'.repeat(2 * 1024 * 1024) } });
      expect(answer.status).toBe(413);
      expect(answer.text).toMatch(/larger than 1048576 bytes/);
      return `HTTP 413: ${shorten(answer.body ? String((answer.body as { error?: string }).error) : answer.text)}`;
    },
  },
  {
    input: 'global ID that is not base64 ("!!!")',
    expected: 'BAD_USER_INPUT malformed ID',
    run: async () => expectGqlError(await gql(app, token, { query: '{ repository(id: "!!!not-base64!!!") { id } }' }), ['BAD_USER_INPUT'], /malformed ID/),
  },
  {
    input: 'global ID of the wrong type (a Project ID as repositoryId)',
    expected: 'BAD_USER_INPUT ID is not a Repository ID',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'mutation($r: ID!) { syncRepository(input: { repositoryId: $r }) { run { id } } }', variables: { r: projectId } }),
        ['BAD_USER_INPUT'],
        /not a Repository ID/,
      ),
  },
  {
    input: 'global ID with a non-UUID database id ("Repository:1 OR 1=1")',
    expected: 'BAD_USER_INPUT malformed ID',
    run: async () => expectGqlError(await gql(app, token, { query: '{ repository(id: $id) { id } }'.replace('$id', JSON.stringify(gid('Repository', '1 OR 1=1'))) }), ['BAD_USER_INPUT'], /malformed ID/),
  },
  {
    input: 'overlong global ID (10,000 characters)',
    expected: 'BAD_USER_INPUT malformed ID',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'query($id: ID!) { repository(id: $id) { id } }', variables: { id: gid('Repository', randomUUID()) + 'A'.repeat(10_000) } }),
        ['BAD_USER_INPUT'],
        /malformed ID/,
      ),
  },
  {
    input: "another tenant's repository: repository(id:)",
    expected: 'same answer as an unknown ID (no hint)',
    run: async () => {
      const query = 'query($id: ID!) { repository(id: $id) { id name } }';
      const theirs = await gql(app, token, { query, variables: { id: otherRepositoryId } });
      const unknown = await gql(app, token, { query, variables: { id: gid('Repository', randomUUID()) } });
      expect(theirs.text).toBe(unknown.text);
      if (theirs.body?.errors) return expectGqlError(theirs, ['NOT_FOUND'], /not found/i);
      expect(theirs.body?.data?.repository).toBeNull();
      return 'HTTP 200 repository: null (identical to an unknown ID)';
    },
  },
  {
    input: "another tenant's repository: node(id:)",
    expected: 'same answer as an unknown ID (no hint)',
    run: async () => {
      const query = 'query($id: ID!) { node(id: $id) { id } }';
      const theirs = await gql(app, token, { query, variables: { id: otherRepositoryId } });
      const unknown = await gql(app, token, { query, variables: { id: gid('Repository', randomUUID()) } });
      expect(theirs.text).toBe(unknown.text);
      if (theirs.body?.errors) return expectGqlError(theirs, ['NOT_FOUND'], /not found/i);
      expect(theirs.body?.data?.node).toBeNull();
      return 'HTTP 200 node: null (identical to an unknown ID)';
    },
  },
  {
    input: "another tenant's repository: syncRepository",
    expected: 'NOT_FOUND, no run queued',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'mutation($r: ID!) { syncRepository(input: { repositoryId: $r, force: true }) { run { id } } }', variables: { r: otherRepositoryId } }),
        ['NOT_FOUND'],
        /not found/i,
      ),
  },
  {
    input: "another tenant's repository: removeRepository",
    expected: 'NOT_FOUND, nothing removed',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'mutation($r: ID!) { removeRepository(input: { repositoryId: $r }) { removedRepositoryId } }', variables: { r: otherRepositoryId } }),
        ['NOT_FOUND'],
        /not found/i,
      ),
  },
  {
    input: "another tenant's repository: rotateWebhookSecret",
    expected: 'NOT_FOUND, secret unchanged',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'mutation($r: ID!) { rotateWebhookSecret(input: { repositoryId: $r }) { webhook { secret } } }', variables: { r: otherRepositoryId } }),
        ['NOT_FOUND'],
        /not found/i,
      ),
  },
  {
    input: "another tenant's project: addRepository into it",
    expected: 'NOT_FOUND, no Repository row',
    run: async () => expectGqlError(await gql(app, token, { query: ADD, variables: { p: otherProjectId, u: `${gitServer.url}/adv/hooks.git` } }), ['NOT_FOUND'], /not found/i),
  },
  {
    input: 'missing Authorization header',
    expected: 'HTTP 401 UNAUTHENTICATED',
    run: async () => {
      const answer = await gql(app, null, { query: '{ projects(first: 1) { edges { node { id } } } }' });
      expect(answer.status).toBe(401);
      // The whole message: nothing in it looks like a credential to the scrubber (it once came out "Bearer ***").
      return expectGqlError(answer, ['UNAUTHENTICATED'], /^a valid API token is required \(header Authorization, scheme Bearer\)$/);
    },
  },
  {
    input: 'invalid bearer token',
    expected: 'HTTP 401 UNAUTHENTICATED',
    run: async () => {
      const answer = await gql(app, `rl_${'0'.repeat(40)}`, { query: 'mutation { createProject(input: { name: "no-token" }) { project { id } } }' });
      expect(answer.status).toBe(401);
      return expectGqlError(answer, ['UNAUTHENTICATED'], /valid API token is required/);
    },
  },
  {
    input: 'Authorization: Basic (wrong scheme, a valid token inside)',
    expected: 'HTTP 401 UNAUTHENTICATED',
    run: async () => {
      const answer = await gql(app, null, { query: '{ projects(first: 1) { edges { node { id } } } }' }, { headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } });
      expect(answer.status).toBe(401);
      return expectGqlError(answer, ['UNAUTHENTICATED'], /valid API token is required/);
    },
  },
  {
    input: 'unknown operationName',
    expected: 'BAD_USER_INPUT unknown operation',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'query A { projects(first: 1) { edges { cursor } } } mutation B { createProject(input: { name: "op-b" }) { project { id } } }', operationName: 'C' }),
        ['BAD_USER_INPUT'],
        /operation/i,
      ),
  },
  {
    input: 'invalid JSON body',
    expected: 'HTTP 400 BAD_USER_INPUT',
    run: async () => {
      const answer = await gql(app, token, null, { raw: '{"query": "mutation { createProject(input: { name: \\"half\\" }) { project { id } } }", ' });
      expect(answer.status).toBe(400);
      return expectGqlError(answer, ['BAD_USER_INPUT'], /JSON/i);
    },
  },
  {
    input: 'wrong content type (text/plain with a mutation)',
    expected: 'HTTP 415 Unsupported Media Type; nothing run',
    run: async () => {
      const answer = await gql(app, token, null, {
        headers: { 'content-type': 'text/plain' },
        raw: JSON.stringify({ query: 'mutation { createProject(input: { name: "text-plain" }) { project { id } } }' }),
      });
      expect(answer.status).toBe(415);
      return `HTTP 415${answer.text ? ` ${shorten(answer.text)}` : ' (empty body)'}`;
    },
  },
  {
    input: 'mutation over GET (?query=mutation …)',
    expected: 'HTTP 405, nothing run',
    run: async () => {
      const query = encodeURIComponent('mutation { createProject(input: { name: "over-get" }) { project { id } } }');
      const response = await fetch(`${app.url}/graphql?query=${query}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
      const text = await response.text();
      expect(response.status).toBe(405);
      const body = JSON.parse(text) as NonNullable<GqlAnswer['body']>;
      return expectGqlError({ status: response.status, text, body }, ['BAD_USER_INPUT'], /mutation|GET|POST/i);
    },
  },
  {
    input: 'syntax error in the query',
    expected: 'BAD_USER_INPUT Syntax Error',
    run: async () => expectGqlError(await gql(app, token, { query: 'mutation { createProject(input: { name: "x" }) { project { id } ' }), ['BAD_USER_INPUT'], /Syntax Error/),
  },
  {
    input: 'introspection-style deep __type recursion',
    expected: 'BAD_USER_INPUT depth limit',
    run: async () => {
      let inner = 'name';
      for (let i = 0; i < 15; i++) inner = `ofType { ${inner} }`;
      return expectGqlError(await gql(app, token, { query: `{ __type(name: "Repository") { fields { type { ${inner} } } } }` }), ['BAD_USER_INPUT'], /depth limit/i);
    },
  },
  {
    input: 'createProject with an empty name',
    expected: 'BAD_USER_INPUT, no project',
    run: async () => expectGqlError(await gql(app, token, { query: 'mutation { createProject(input: { name: "" }) { project { id } } }' }), ['BAD_USER_INPUT'], /name/i),
  },
];

describe('GraphQL', () => {
  it.each(gqlCases)('$input', async (c) => {
    await runCase('GraphQL', c.input, c.expected, c.run);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Webhooks

interface Delivered {
  status: number | null;
  text: string;
}

async function post(route: 'github' | 'gitlab', headers: Record<string, string>, body: Buffer | string): Promise<Delivered> {
  const response = await fetch(`${app.url}/webhooks/${route}`, { method: 'POST', headers, body: typeof body === 'string' ? body : new Uint8Array(body) });
  return { status: response.status, text: await response.text() };
}

function pushPayload(name: string, url: string, after: string, before = '0'.repeat(40)): Buffer {
  return Buffer.from(JSON.stringify({ ref: 'refs/heads/main', before, after, repository: { full_name: name, clone_url: url, html_url: url.replace(/\.git$/, '') } }));
}

function githubHeaders(event: string, body: Buffer, secret: string | null, deliveryId: string = randomUUID(), contentType = 'application/json'): Record<string, string> {
  return {
    'content-type': contentType,
    'user-agent': 'GitHub-Hookshot/044aadd',
    'x-github-event': event,
    'x-github-delivery': deliveryId,
    ...(secret === null ? {} : { 'x-hub-signature-256': githubSignature(secret, body) }),
  };
}

function gitlabPush(after: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      object_kind: 'push',
      event_name: 'push',
      before: '0'.repeat(40),
      after,
      ref: 'refs/heads/main',
      project: { path_with_namespace: gitlabHooks.name, git_http_url: gitlabHooks.upstream.url, web_url: gitlabHooks.upstream.url.replace(/\.git$/, '') },
    }),
  );
}

function expectStatus(answer: Delivered, status: number, message: RegExp): string {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.text).toMatch(message);
  let said = answer.text;
  try {
    const body = JSON.parse(answer.text) as Record<string, unknown>;
    said = String(body.error ?? JSON.stringify(body));
  } catch {
    // plain text
  }
  return `HTTP ${status}: ${shorten(said)}`;
}

/** Sends a request with a body that is much larger than 25 MiB; resolves with the answer's status, however the connection ends. */
function postHuge(route: string, headers: Record<string, string | number>, totalBytes: number): Promise<number | string> {
  return new Promise((resolve) => {
    const request = httpRequest(`${app.url}/webhooks/${route}`, { method: 'POST', headers });
    let settled = false;
    const done = (value: number | string) => {
      if (!settled) {
        settled = true;
        resolve(value);
      }
    };
    request.on('response', (response) => {
      response.resume();
      done(response.statusCode ?? 'no status');
    });
    request.on('error', (error) => setTimeout(() => done(`connection error: ${error.message}`), 200));
    const chunk = Buffer.alloc(1024 * 1024, 0x7b);
    let sent = 0;
    const pump = () => {
      while (sent < totalBytes && !settled && !request.destroyed) {
        sent += chunk.length;
        if (!request.write(chunk)) return void request.once('drain', pump);
      }
      if (!request.destroyed) request.end();
    };
    pump();
  });
}

/** Headers, then half of the declared body, then the socket is closed. */
function postTruncated(route: string, headers: Record<string, string>, body: Buffer): Promise<string> {
  const port = Number(new URL(app.url).port);
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const head = [`POST /webhooks/${route} HTTP/1.1`, 'Host: 127.0.0.1', `Content-Length: ${body.length}`, ...Object.entries(headers).map(([key, value]) => `${key}: ${value}`), '', ''].join('\r\n');
      socket.write(head);
      socket.write(body.subarray(0, Math.floor(body.length / 2)));
      setTimeout(() => socket.end(), 100);
    });
    let received = '';
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('close', () => resolve(received.split('\r\n')[0] || 'no answer; connection closed'));
    socket.on('error', reject);
  });
}

interface HookCase {
  input: string;
  expected: string;
  run: () => Promise<string>;
  setup?: () => Promise<void>;
  adjustAfter?: CaseOptions['adjustAfter'];
}

let replayDeliveryId = '';
let replayBody: Buffer = Buffer.alloc(0);
let ignoredDeliveryId = '';

const hookCases: HookCase[] = [
  {
    input: 'invalid JSON with a valid signature',
    expected: 'HTTP 400 (body is not JSON)',
    run: async () => {
      const body = Buffer.from('{"ref": "refs/heads/main", "repository": {');
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret), body), 400, /not JSON/);
    },
  },
  {
    input: 'JSON array body with a valid signature',
    expected: 'HTTP 400 (not a JSON object)',
    run: async () => {
      const body = Buffer.from('[1, 2, 3]');
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret), body), 400, /not a JSON object/);
    },
  },
  {
    input: 'wrong content type: form-encoded header, JSON body, valid signature',
    expected: 'HTTP 400',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret, randomUUID(), 'application/x-www-form-urlencoded'), body), 400, /payload field/);
    },
  },
  {
    input: 'wrong content type: application/xml body, valid signature',
    expected: 'HTTP 400',
    run: async () => {
      const body = Buffer.from('<?xml version="1.0"?><push><ref>refs/heads/main</ref></push>');
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret, randomUUID(), 'application/xml'), body), 400, /not JSON/);
    },
  },
  {
    input: 'huge body (26 MiB, Content-Length declared)',
    expected: 'HTTP 413',
    run: async () => {
      const status = await postHuge('github', { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${'0'.repeat(64)}`, 'content-length': 26 * 1024 * 1024 }, 26 * 1024 * 1024);
      expect(status).toBe(413);
      return 'HTTP 413 (before the body was read)';
    },
  },
  {
    input: 'huge body (26 MiB, chunked, no Content-Length)',
    expected: 'HTTP 413',
    run: async () => {
      const status = await postHuge('github', { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${'0'.repeat(64)}`, 'transfer-encoding': 'chunked' }, 26 * 1024 * 1024);
      expect(status).toBe(413);
      return 'HTTP 413 (reading stopped at 25 MiB)';
    },
  },
  {
    input: 'body that stops mid-way (half of Content-Length, then close)',
    expected: 'no 2xx, nothing stored (connection dropped or 400)',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      const line = await postTruncated('github', githubHeaders('push', body, hooks.secret), body);
      expect(line).not.toMatch(/HTTP\/1\.1 2\d\d/);
      return shorten(line);
    },
  },
  {
    input: 'signature of another length (sha256=abcd)',
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', { ...githubHeaders('push', body, null), 'x-hub-signature-256': 'sha256=abcd' }, body), 401, /does not verify/);
    },
  },
  {
    input: 'signature 65 hex digits (one too many)',
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', { ...githubHeaders('push', body, null), 'x-hub-signature-256': `${githubSignature(hooks.secret, body)}0` }, body), 401, /does not verify/);
    },
  },
  {
    input: 'sha1= signature (X-Hub-Signature style) in the sha256 header',
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', { ...githubHeaders('push', body, null), 'x-hub-signature-256': `sha1=${'a'.repeat(40)}` }, body), 401, /does not verify/);
    },
  },
  {
    input: 'signature with the wrong secret',
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', githubHeaders('push', body, 'not-the-secret'), body), 401, /does not verify/);
    },
  },
  {
    input: 'valid signature of a different body (body altered after signing)',
    expected: 'HTTP 401',
    run: async () => {
      const signed = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      const altered = pushPayload(hooks.name, hooks.upstream.url, 'f'.repeat(40));
      return expectStatus(await post('github', githubHeaders('push', signed, hooks.secret), altered), 401, /does not verify/);
    },
  },
  {
    input: 'missing signature',
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', githubHeaders('push', body, null), body), 401, /missing X-Hub-Signature-256/);
    },
  },
  {
    input: "signed with one repository's secret, naming another repository",
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload(gitlabHooks.name, gitlabHooks.upstream.url, await gitlabHooks.upstream.head());
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret), body), 401, /does not verify/);
    },
  },
  {
    input: 'unknown repository in the payload',
    expected: 'HTTP 401',
    run: async () => {
      const body = pushPayload('nobody/nothing', `${gitServer.url}/nobody/nothing.git`, 'a'.repeat(40));
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret), body), 401, /does not verify/);
    },
  },
  {
    input: 'replayed delivery (same X-GitHub-Delivery twice)',
    expected: 'HTTP 200 {"duplicate":true}; no second run or delivery row',
    setup: async () => {
      // The first delivery is legitimate: a push of a new commit, processed to the end.
      const after = await hooks.upstream.commit({ 'replayed.txt': `${randomUUID()}\n` });
      replayDeliveryId = randomUUID();
      replayBody = pushPayload(hooks.name, hooks.upstream.url, after);
      const first = await post('github', githubHeaders('push', replayBody, hooks.secret, replayDeliveryId), replayBody);
      expect(first.status).toBe(202);
      await app.app.services.webhooks.idle();
      await waitForIdle(app.app, hooks.dbId);
    },
    run: async () => expectStatus(await post('github', githubHeaders('push', replayBody, hooks.secret, replayDeliveryId), replayBody), 200, /"duplicate":true/),
  },
  {
    input: 'unknown event type (X-GitHub-Event: totally_unknown)',
    expected: 'HTTP 200 ignored; delivery logged IGNORED, no run',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      ignoredDeliveryId = randomUUID();
      return expectStatus(await post('github', githubHeaders('totally_unknown', body, hooks.secret, ignoredDeliveryId), body), 200, /ignored/);
    },
    // SPEC §4: unsupported events are answered 200 and listed in webhookDeliveries; nothing else changes.
    adjustAfter: (after) => {
      const deliveries = after.deliveries as { deliveryId: string; outcome: string | null }[];
      const logged = deliveries.filter((row) => row.deliveryId === ignoredDeliveryId);
      expect(logged.map((row) => row.outcome)).toEqual(['IGNORED']);
      after.deliveries = deliveries.filter((row) => row.deliveryId !== ignoredDeliveryId);
    },
  },
  {
    input: 'missing X-GitHub-Event header',
    expected: 'HTTP 400',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      const headers = githubHeaders('push', body, hooks.secret);
      delete headers['x-github-event'];
      return expectStatus(await post('github', headers, body), 400, /missing X-GitHub-Event/);
    },
  },
  {
    input: 'overlong X-GitHub-Delivery (500 characters)',
    expected: 'HTTP 400',
    run: async () => {
      const body = pushPayload(hooks.name, hooks.upstream.url, await hooks.upstream.head());
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret, 'd'.repeat(500)), body), 400, /too long/);
    },
  },
  {
    input: 'push without a full ref name (valid signature)',
    expected: 'HTTP 400',
    run: async () => {
      const body = Buffer.from(JSON.stringify({ ref: 'main', after: 'a'.repeat(40), repository: { full_name: hooks.name, clone_url: hooks.upstream.url } }));
      return expectStatus(await post('github', githubHeaders('push', body, hooks.secret), body), 400, /full ref name/);
    },
  },
  {
    input: 'GET on the webhook route',
    expected: 'HTTP 405',
    run: async () => {
      const response = await fetch(`${app.url}/webhooks/github`);
      return expectStatus({ status: response.status, text: await response.text() }, 405, /POST/);
    },
  },
  {
    input: 'GitLab: wrong X-Gitlab-Token',
    expected: 'HTTP 401',
    run: async () => {
      const body = gitlabPush(await gitlabHooks.upstream.head());
      return expectStatus(
        await post('gitlab', { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': `${gitlabHooks.secret}x`, 'idempotency-key': randomUUID() }, body),
        401,
        /does not verify/,
      );
    },
  },
  {
    input: 'GitLab: missing X-Gitlab-Token',
    expected: 'HTTP 401',
    run: async () => {
      const body = gitlabPush(await gitlabHooks.upstream.head());
      return expectStatus(await post('gitlab', { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'idempotency-key': randomUUID() }, body), 401, /missing X-Gitlab-Token/);
    },
  },
  {
    input: 'GitLab: the GitHub-style HMAC sent as X-Gitlab-Token',
    expected: 'HTTP 401',
    run: async () => {
      const body = gitlabPush(await gitlabHooks.upstream.head());
      return expectStatus(
        await post('gitlab', { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': githubSignature(gitlabHooks.secret, body), 'idempotency-key': randomUUID() }, body),
        401,
        /does not verify/,
      );
    },
  },
];

describe('webhooks', () => {
  it.each(hookCases)('$input', async (c) => {
    await c.setup?.();
    await runCase('Webhooks', c.input, c.expected, c.run, { adjustAfter: c.adjustAfter });
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Snapshot archives: extractSnapshot on crafted tar(.gz) streams

const archiveLimits = { maxBytes: 16 * 1024 * 1024, maxEntries: 100 };
const outsideAbs = path.join(tmpdir(), 'repolens-adversarial-absolute', 'evil.txt');

interface ArchiveCase {
  input: string;
  expected: string;
  archive: () => Buffer;
  error: RegExp;
  unsafe?: boolean;
  limits?: { maxBytes: number; maxEntries: number };
}

const archiveCases: ArchiveCase[] = [
  { input: 'entry "../evil.txt"', expected: 'UnsafeArchiveError (..)', archive: () => craftTarGz([{ name: '../evil.txt', body: 'pwned\n' }]), error: /path contains '\.\.'/, unsafe: true },
  { input: 'entry "a/../../evil.txt"', expected: 'UnsafeArchiveError (..)', archive: () => craftTarGz([{ name: 'a/../../evil.txt', body: 'pwned\n' }]), error: /path contains '\.\.'/, unsafe: true },
  { input: 'absolute path entry (/tmp/…/evil.txt)', expected: 'UnsafeArchiveError (absolute)', archive: () => craftTarGz([{ name: outsideAbs, body: 'pwned\n' }]), error: /absolute path/, unsafe: true },
  { input: 'drive-letter entry "C:\\evil.txt"', expected: 'UnsafeArchiveError (drive letter)', archive: () => craftTarGz([{ name: 'C:\\evil.txt', body: 'pwned\n' }]), error: /absolute path or drive letter/, unsafe: true },
  { input: 'pax header renaming an entry to ../pax-evil.txt', expected: 'UnsafeArchiveError (..)', archive: () => craftTarGz([{ name: 'PaxHeader', type: 'x', body: paxBody({ path: '../pax-evil.txt' }) }, { name: 'innocent.txt', body: 'pwned\n' }]), error: /'\.\.'/, unsafe: true },
  { input: 'GNU long-name record naming ../gnu-evil.txt', expected: 'UnsafeArchiveError (..)', archive: () => craftTarGz([{ name: '././@LongLink', type: 'L', body: '../gnu-evil.txt\0' }, { name: 'innocent.txt', body: 'pwned\n' }]), error: /'\.\.'/, unsafe: true },
  {
    input: 'symlink to a folder outside, then a file written through it',
    expected: 'UnsafeArchiveError (under symlink); nothing outside',
    archive: () => craftTarGz([{ name: 'link', type: '2', linkname: path.join(sandbox, 'outside') }, { name: 'link/pwned.txt', body: 'pwned\n' }]),
    error: /under symlink "link"/,
    unsafe: true,
  },
  {
    input: 'symlink "up" → "..", then "up/pwned.txt"',
    expected: 'UnsafeArchiveError (under symlink)',
    archive: () => craftTarGz([{ name: 'up', type: '2', linkname: '..' }, { name: 'up/pwned.txt', body: 'pwned\n' }]),
    error: /under symlink "up"/,
    unsafe: true,
  },
  {
    input: 'symlink, then a directory entry of the same name',
    expected: 'UnsafeArchiveError (at symlink)',
    archive: () => craftTarGz([{ name: 'etc', type: '2', linkname: '/etc' }, { name: 'etc/', type: '5' }, { name: 'etc/cron.d/pwned', body: '* * * * * root id\n' }]),
    error: /at or under symlink "etc"/,
    unsafe: true,
  },
  { input: 'hard link to /etc/passwd', expected: 'UnsafeArchiveError (Link not allowed)', archive: () => craftTarGz([{ name: 'hl', type: '1', linkname: '/etc/passwd' }]), error: /Link entries are not allowed/, unsafe: true },
  { input: 'hard link to ../outside.txt', expected: 'UnsafeArchiveError (Link not allowed)', archive: () => craftTarGz([{ name: 'hl', type: '1', linkname: '../outside.txt' }]), error: /Link entries are not allowed/, unsafe: true },
  { input: 'character device (1,3 = /dev/null)', expected: 'UnsafeArchiveError (device)', archive: () => craftTarGz([{ name: 'null', type: '3', devmajor: 1, devminor: 3 }]), error: /CharacterDevice entries are not allowed/, unsafe: true },
  { input: 'block device (8,0 = /dev/sda)', expected: 'UnsafeArchiveError (device)', archive: () => craftTarGz([{ name: 'sda', type: '4', devmajor: 8, devminor: 0 }]), error: /BlockDevice entries are not allowed/, unsafe: true },
  { input: 'FIFO', expected: 'UnsafeArchiveError (FIFO)', archive: () => craftTarGz([{ name: 'fifo', type: '6' }]), error: /FIFO entries are not allowed/, unsafe: true },
  { input: 'contiguous-file entry (type 7)', expected: 'UnsafeArchiveError (type)', archive: () => craftTarGz([{ name: 'contig', type: '7', body: 'x' }]), error: /ContiguousFile entries are not allowed/, unsafe: true },
  { input: 'a file entry named "." (would replace the folder)', expected: 'UnsafeArchiveError', archive: () => craftTarGz([{ name: '.', body: 'x' }]), error: /replace the destination folder/, unsafe: true },
  {
    input: 'gzip bomb: 1 MB of gzip, one entry of 1 GiB of zeros',
    expected: 'UnsafeArchiveError (content over maxBytes), stops early',
    archive: () => Buffer.concat([gzipHeaderMember([{ name: 'zeros.bin', size: 1024 * 1024 * 1024 }]), gzipZeros(1024)]),
    error: /content exceeds 16777216 bytes/,
    unsafe: true,
  },
  {
    input: 'gzip bomb: 1 GiB of zeros with no tar header (past the end marker)',
    expected: 'UnsafeArchiveError (expands past the tar limit)',
    archive: () => gzipZeros(1024),
    error: /expands to more than \d+ bytes of tar/,
    unsafe: true,
  },
  {
    input: 'too many entries (150 entries, limit 100)',
    expected: 'UnsafeArchiveError (entries)',
    archive: () => craftTarGz(Array.from({ length: 150 }, (_, index): CraftEntry => ({ name: `l${index}`, type: '2', linkname: 'README.md' }))),
    error: /more than 100 entries/,
    unsafe: true,
  },
  { input: 'header with a corrupted checksum', expected: 'Error (invalid tar)', archive: () => craftTarGz([{ name: 'bad.txt', body: 'x', badChecksum: true }]), error: /checksum|invalid|TAR_ENTRY_INVALID|truncated/i },
  { input: 'not gzip at all', expected: 'Error (gzip)', archive: () => Buffer.from('this is not a gzip stream\n'.repeat(10)), error: /incorrect header check|gzip|zlib/i },
  { input: 'truncated archive (half a header)', expected: 'Error (truncated)', archive: () => gzipBuffer(craftTar([{ name: 'half.txt', body: 'x' }], { end: false }).subarray(0, 256)), error: /truncated|TAR_BAD_ARCHIVE/ },
];

function gzipHeaderMember(entries: CraftEntry[]): Buffer {
  return gzipBuffer(craftTar(entries, { end: false }));
}

function gzipBuffer(buffer: Buffer): Buffer {
  return gzipSync(buffer);
}

describe('snapshot archives (extractSnapshot)', () => {
  it.each(archiveCases)('$input', async (c) => {
    await runCase('Snapshot archive', c.input, c.expected, async () => {
      const parent = await mkdtemp(path.join(sandbox, 'case-'));
      const dest = path.join(parent, 'dest');
      await mkdir(dest);
      await mkdir(path.join(parent, 'outside'));
      await rm(path.dirname(outsideAbs), { recursive: true, force: true });
      const started = Date.now();
      const error = await extractSnapshot(Readable.from([c.archive()]), dest, c.limits ?? archiveLimits).then(
        () => null,
        (thrown: Error) => thrown,
      );
      expect(error, 'the archive was extracted').toBeInstanceOf(Error);
      expect(error!.message).toMatch(c.error);
      if (c.unsafe) expect(error).toBeInstanceOf(UnsafeArchiveError);
      // Nothing outside dest, dest left empty.
      expect(await listTree(parent, 3)).toEqual(['dest/', 'outside/']);
      expect(existsSync(outsideAbs)).toBe(false);
      expect(existsSync(path.join(sandbox, 'evil.txt'))).toBe(false);
      expect(Date.now() - started, 'a bomb was expanded in full').toBeLessThan(10_000);
      return `${error!.name}: ${shorten(error!.message.replace(sandbox, '<sandbox>').replace(tmpdir(), '<tmp>'))}`;
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Hostile repository content synced from a real upstream

const FILE = 'query($id: ID!, $p: String!) { repository(id: $id) { status lastCommitSha file(path: $p) { path encoding content size } } }';

interface ContentCase {
  input: string;
  expected: string;
  run: () => Promise<string>;
  servedSafely?: boolean;
}

const passwdMarker = /root:.*:0:0:/;

const contentCases: ContentCase[] = [
  {
    input: 'symlink passwd → /etc/passwd: the synced copy keeps a symlink',
    expected: 'SYNCED; lstat is a symlink to /etc/passwd',
    servedSafely: true,
    run: async () => {
      const state = await data(app, token, FILE, { id: hostile.id, p: 'README.md' });
      expect(state.repository.status).toBe('SYNCED');
      expect(state.repository.lastCommitSha).toBe(hostile.sha);
      const link = path.join(app.dataDir, 'repos', hostile.dbId, 'passwd');
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readlink(link)).toBe('/etc/passwd');
      return 'SYNCED; passwd is a symlink (target /etc/passwd), not a copy';
    },
  },
  {
    input: 'file(path: "passwd") where passwd → /etc/passwd',
    expected: "the link target text, never /etc/passwd's content",
    servedSafely: true,
    run: async () => {
      const file = (await data(app, token, FILE, { id: hostile.id, p: 'passwd' })).repository.file;
      expect(file).toMatchObject({ path: 'passwd', encoding: 'utf8', content: '/etc/passwd' });
      expect(file.content).not.toMatch(passwdMarker);
      return `content "${file.content}" (the link target)`;
    },
  },
  {
    input: 'file(path: "escape-link") → ../../…/etc/passwd',
    expected: "the link target text, never /etc/passwd's content",
    servedSafely: true,
    run: async () => {
      const file = (await data(app, token, FILE, { id: hostile.id, p: 'escape-link' })).repository.file;
      expect(file.content).toBe('../../../../../../../../etc/passwd');
      return `content "${shorten(file.content, 40)}" (the link target)`;
    },
  },
  {
    input: 'file(path: "etc/passwd") through a symlink etc → /etc',
    expected: 'null (the API does not follow symlinks)',
    servedSafely: true,
    run: async () => {
      const answer = await gql(app, token, { query: FILE, variables: { id: hostile.id, p: 'etc/passwd' } });
      expect(answer.text).not.toMatch(passwdMarker);
      if (answer.body?.errors) return expectGqlError(answer, ['BAD_USER_INPUT', 'NOT_FOUND'], /./);
      expect(answer.body?.data?.repository.file).toBeNull();
      return 'file: null';
    },
  },
  {
    input: 'file(path: "../../../../etc/passwd")',
    expected: 'BAD_USER_INPUT',
    run: async () => {
      const answer = await gql(app, token, { query: FILE, variables: { id: hostile.id, p: '../../../../etc/passwd' } });
      expect(answer.text).not.toMatch(passwdMarker);
      return expectGqlError(answer, ['BAD_USER_INPUT'], /path/i, ['repository', 'file']);
    },
  },
  {
    input: 'file(path: "/etc/passwd") (absolute)',
    expected: 'BAD_USER_INPUT',
    run: async () => {
      const answer = await gql(app, token, { query: FILE, variables: { id: hostile.id, p: '/etc/passwd' } });
      expect(answer.text).not.toMatch(passwdMarker);
      return expectGqlError(answer, ['BAD_USER_INPUT'], /path/i, ['repository', 'file']);
    },
  },
  {
    input: 'file(path: "README.md\\u0000../../etc/passwd") (NUL byte)',
    expected: 'BAD_USER_INPUT',
    run: async () => expectGqlError(await gql(app, token, { query: FILE, variables: { id: hostile.id, p: 'README.md\u0000../../etc/passwd' } }), ['BAD_USER_INPUT'], /path/i, ['repository', 'file']),
  },
  {
    input: 'file(commitSha: "HEAD; rm -rf /") (not a SHA)',
    expected: 'BAD_USER_INPUT',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'query($id: ID!) { repository(id: $id) { file(path: "README.md", commitSha: "HEAD; rm -rf /") { content } } }', variables: { id: hostile.id } }),
        ['BAD_USER_INPUT'],
        /commitSha/,
        ['repository', 'file'],
      ),
  },
  {
    input: 'file(commitSha: "--output=/tmp/pwned") (option-like)',
    expected: 'BAD_USER_INPUT',
    run: async () =>
      expectGqlError(
        await gql(app, token, { query: 'query($id: ID!) { repository(id: $id) { file(path: "README.md", commitSha: "--output=/tmp/pwned") { content } } }', variables: { id: hostile.id } }),
        ['BAD_USER_INPUT'],
        /commitSha/,
        ['repository', 'file'],
      ),
  },
  {
    input: 'snapshot archive of the hostile repository',
    expected: 'passwd stored as a symlink entry, no /etc/passwd bytes in it',
    servedSafely: true,
    run: async () => {
      const archive = path.join(app.dataDir, 'archives', 'repos', hostile.dbId, `${hostile.sha}.tar.gz`);
      const { stdout: listing } = await execFileAsync('tar', ['-tvzf', archive], { maxBuffer: 64 * 1024 * 1024 });
      const passwdLine = listing.split('\n').find((line) => / \.?\/?passwd -> \/etc\/passwd$/.test(line));
      expect(passwdLine, listing.slice(0, 2000)).toBeDefined();
      expect(passwdLine!.startsWith('l')).toBe(true);
      const { stdout: contents } = await execFileAsync('tar', ['-xzOf', archive], { maxBuffer: 256 * 1024 * 1024, encoding: 'latin1' });
      expect(contents).not.toMatch(passwdMarker);
      return 'passwd is an "l" (symlink) entry; no /etc/passwd content in the archive';
    },
  },
  {
    input: 'file name with a newline ("new\\nline.txt")',
    expected: 'synced and served under its exact name',
    servedSafely: true,
    run: async () => {
      expect(existsSync(path.join(app.dataDir, 'repos', hostile.dbId, newlineName))).toBe(true);
      const file = (await data(app, token, FILE, { id: hostile.id, p: newlineName })).repository.file;
      expect(file).toMatchObject({ path: newlineName, content: 'newline\n' });
      return 'on disk under its exact name; file() returns its content';
    },
  },
  {
    input: 'file name with control characters (\\x01 \\x07 ESC[31m)',
    expected: 'synced and served under its exact name',
    servedSafely: true,
    run: async () => {
      expect(existsSync(path.join(app.dataDir, 'repos', hostile.dbId, controlName))).toBe(true);
      const file = (await data(app, token, FILE, { id: hostile.id, p: controlName })).repository.file;
      expect(file).toMatchObject({ path: controlName, content: 'control\n' });
      return 'on disk under its exact name; file() returns its content';
    },
  },
  {
    input: 'file name with a tab',
    expected: 'synced and served under its exact name',
    servedSafely: true,
    run: async () => {
      const file = (await data(app, token, FILE, { id: hostile.id, p: tabName })).repository.file;
      expect(file).toMatchObject({ path: tabName, content: 'tab\n' });
      return 'file() returns its content';
    },
  },
  {
    input: 'a 200-level deep tree (d/d/…/leaf.txt)',
    expected: 'synced, archived and served',
    servedSafely: true,
    run: async () => {
      expect(existsSync(path.join(app.dataDir, 'repos', hostile.dbId, deepPath))).toBe(true);
      const file = (await data(app, token, FILE, { id: hostile.id, p: deepPath })).repository.file;
      expect(file).toMatchObject({ path: deepPath, content: 'deep\n' });
      return 'on disk; file() returns its content';
    },
  },
];

describe('hostile repository content', () => {
  it.each(contentCases)('$input', async (c) => {
    await runCase('Repository content', c.input, c.expected, c.run, { servedSafely: c.servedSafely });
  });
});

// ---------------------------------------------------------------------------------------------
// Report

function renderSection(rows: CaseRecord[]): string {
  const entries: EntryPoint[] = ['addRepository URL', 'GraphQL', 'Webhooks', 'Snapshot archive', 'Repository content'];
  const refused = rows.filter((row) => row.refused).length;
  const crashes = rows.filter((row) => row.crashed).length;
  const changes = rows.filter((row) => row.stateChanged).length;
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [
    SECTION,
    '',
    'Generated by `test/adversarial.e2e.test.ts` (`REPOLENS_WRITE_RELIABILITY_REPORT=1 npx vitest run test/adversarial.e2e.test.ts`;',
    'without the variable the same run fails when this section is out of date). Every case runs against the real',
    'service (PostgreSQL, a git smart-HTTP server, `extractSnapshot` on crafted archives) and checks that the input',
    'is refused with a clear error, that `/healthz` and a normal query still answer afterwards, and that the rows it',
    'could touch (tenants, tokens, projects, repositories, credentials, webhook deliveries, sync runs, snapshots,',
    'refs, pull requests) and the data folder (working copies, archives) are unchanged; archive cases check that',
    'nothing was written outside the target folder and the target stayed empty. "Served safely" rows are hostile',
    'repository content that is synced by design and must be served without following links.',
    '',
    `**${rows.length} bad inputs tried, ${refused} refused cleanly, ${crashes} crashes, ${changes} state changes**`,
    '',
    `Of these, ${rows.filter((row) => row.servedSafely).length} are hostile repository contents that are synced by design; for them "refused cleanly"`,
    'means links stay links and what they point to is never served.',
    '',
    '| Entry point | Cases | Passed |',
    '| --- | ---: | ---: |',
    ...entries.map((entry) => {
      const of = rows.filter((row) => row.entry === entry);
      return `| ${entry} | ${of.length} | ${of.filter((row) => row.pass).length} |`;
    }),
    '',
  ];
  for (const entry of entries) {
    const of = rows.filter((row) => row.entry === entry);
    if (!of.length) continue;
    lines.push(`### ${entry}`, '', '| # | Input | Expected | Observed | Pass |', '| ---: | --- | --- | --- | :---: |');
    of.forEach((row, index) => {
      const verdict = row.pass ? 'yes' : `**no**${row.crashed ? ' (crash)' : ''}${row.stateChanged ? ' (state changed)' : ''}`;
      lines.push(`| ${index + 1} | ${cell(row.input)} | ${cell(row.expected)} | ${cell(row.observed)} | ${verdict} |`);
    });
    lines.push('');
  }
  return lines.join('\n');
}

describe('the checks themselves can fail', () => {
  it('the state snapshot sees a new row and a new folder; the liveness check sees a refused query', async () => {
    const before = await stateOf(strict);
    await data(strict, strictToken, 'mutation { createProject(input: { name: "harness-check" }) { project { id } } }');
    expect(await stateOf(strict)).not.toEqual(before);
    const folders = await stateOf(app);
    await mkdir(path.join(app.dataDir, 'repos', 'harness-check'));
    expect(await stateOf(app)).not.toEqual(folders);
    await rm(path.join(app.dataDir, 'repos', 'harness-check'), { recursive: true });
    expect(await alive(app, 'rl_not-a-token')).toBe(false);
    expect(await alive(app, token)).toBe(true);
  });
});

describe('report', () => {
  it.skipIf(writingReport)('docs/reliability.md "Adversarial inputs" is what this run produced', async () => {
    const expectedCases = urlCases.length + gqlCases.length + hookCases.length + archiveCases.length + contentCases.length;
    expect(records.length, 'run the whole file: every case records a row').toBe(expectedCases);
    await expectSectionCurrent(SECTION, renderSection(records), 'npx vitest run test/adversarial.e2e.test.ts');
  });

  it('at least 60 bad inputs across every entry point', () => {
    const total = urlCases.length + gqlCases.length + hookCases.length + archiveCases.length + contentCases.length;
    expect(total).toBeGreaterThanOrEqual(60);
    for (const list of [urlCases, gqlCases, hookCases, archiveCases, contentCases]) expect(list.length).toBeGreaterThan(0);
  });
});
