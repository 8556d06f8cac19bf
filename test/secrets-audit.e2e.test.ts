import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeGlobalId, encodeGlobalId } from '../src/schema/globalId.js';
import { createSecretBox } from '../src/storage/secrets.js';
import { createTestDatabase } from './support/database.js';
import { createUpstream, type Upstream } from './support/gitFixtures.js';
import { startFakeGithub, type FakeGithub } from './support/githubApi.js';
import { startFakeGitlab, type FakeGitlab } from './support/gitlabApi.js';
import { startGitServer, type GitServer, type GitServerAuth } from './support/gitServer.js';
import { startHostProxy, type HostProxy } from './support/hostProxy.js';
import { createProgramShims, watchProcesses, type ProcessWatcher, type ProgramShims, type WatchedProcesses } from './support/processAudit.js';
import { describeFinding, SecretScanner, type Finding } from './support/secretScan.js';
import { killAllServers, runCli, startServer, type CliResult, type Env, type ServerProcess } from './support/serverProcess.js';
import { githubSignature, gitlabHeaders, githubHeaders, loadFixture, retarget } from './support/webhooks.js';

// Issue 7 item 4, the secrets audit (SPEC §3, §1 "git hygiene"). Real server processes at
// LOG_LEVEL=debug on PostgreSQL, with real git smart-HTTP servers that demand the tokens and the
// fake GitHub and GitLab APIs, go through every way the service handles a secret: a plain host's
// password (a clone, fetches, a wrong password refused at add time, a sync failing with 401), a
// GitHub token (checked by the API, a clone, the hook registered with the repository's webhook
// secret, signed deliveries good and bad, a DELTA sync through the API, the token revoked: a
// scheduled check asking the API, a manual sync), the GitHub and GitLab OAuth flows (code, PKCE
// verifier, access and refresh tokens, a refresh of an expired token used for a fetch, a refresh
// refused), webhook secrets handed out and rotated, and `repolens rotate-key`. Some refusals come
// from APIs that repeat the secret they refused (a broken API, or a proxy before it, may).
// Every value is then looked for, with its usual encodings, in everything that left the service:
// every line the processes printed, every response and error the test received, every
// subscription frame, every file under DATA_DIR (working copies' .git included, archives
// unpacked), every database row, and the argument list of every process the server started.
// Only an answer that hands a secret out once (the API token, a webhook secret, an OAuth state)
// may show it, and only there. A value planted through the same paths must be found in each.

const b64 = (bytes: Buffer) => bytes.toString('base64');
const random = (prefix: string, bytes = 24) => `${prefix}${randomBytes(bytes).toString('base64url')}`;
const hex = (prefix: string, bytes = 20) => `${prefix}${randomBytes(bytes).toString('hex')}`;

const KEY = randomBytes(32);
const NEW_KEY = randomBytes(32);
const PLAIN_LOGIN = 'sync-robot';
const PLAIN_PASSWORD = random('pw-');
const PLAIN_WRONG_PASSWORD = random('pw-');
const PLAIN_UPSTREAM_ROTATED = random('pw-');
const GH_TOKEN = random('ghp_', 27);
const GH_WRONG_TOKEN = random('ghp_', 27);
const GH_UPSTREAM_ROTATED = random('ghp_', 27);
const GL_WRONG_TOKEN = random('glpat-');
const GITHUB_APP = { clientId: 'Iv1.audit', clientSecret: hex('ghsecret-') };
const GITLAB_APP = { clientId: 'gitlab-audit', clientSecret: hex('glsecret-') };
const GITHUB_WEBHOOK_SECRET = random('ghwh-');
const GITLAB_WEBHOOK_SECRET = random('glwh-');
const WRONG_HOOK_SECRET = random('nothook-');
const WRONG_API_TOKEN = `rls_${randomBytes(32).toString('base64url')}`;
const PUBLIC_URL = 'https://repolens.example.test';
const REDIRECT = 'https://ui.example.test/connected';

const scanner = new SecretScanner();
scanner.add('ENCRYPTION_KEY', b64(KEY), { bytes: KEY });
scanner.add('NEW_ENCRYPTION_KEY', b64(NEW_KEY), { bytes: NEW_KEY });
scanner.add('plain password', PLAIN_PASSWORD, { basicUsers: [PLAIN_LOGIN] });
scanner.add('plain wrong password', PLAIN_WRONG_PASSWORD, { basicUsers: [PLAIN_LOGIN] });
scanner.add('plain upstream rotated password', PLAIN_UPSTREAM_ROTATED, { basicUsers: [PLAIN_LOGIN] });
scanner.add('GitHub token', GH_TOKEN);
scanner.add('GitHub wrong token', GH_WRONG_TOKEN);
scanner.add('GitHub upstream rotated token', GH_UPSTREAM_ROTATED);
scanner.add('GitLab wrong token', GL_WRONG_TOKEN);
scanner.add('GITHUB_CLIENT_SECRET', GITHUB_APP.clientSecret);
scanner.add('GITLAB_CLIENT_SECRET', GITLAB_APP.clientSecret);
scanner.add('GITHUB_WEBHOOK_SECRET', GITHUB_WEBHOOK_SECRET);
scanner.add('GITLAB_WEBHOOK_SECRET', GITLAB_WEBHOOK_SECRET);
scanner.add('wrong webhook secret', WRONG_HOOK_SECRET);
scanner.add('wrong API token', WRONG_API_TOKEN);

// ---------------------------------------------------------------------------------------------
// What the test received from the service, recorded as it came.

interface Recorded {
  label: string;
  status: number;
  /** Status, headers and body as one text. */
  text: string;
}

const responses: Recorded[] = [];
/** Every graphql-ws message the server sent (connection_ack, next, error, complete…), as received. */
const frames: string[] = [];
const cliOutputs: { label: string; result: CliResult }[] = [];

/** fetch, recording the answer (status, every header, the body) under `label`. */
async function call(label: string, url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(url, { redirect: 'manual', ...init });
  const body = await response.text();
  const headers = [...response.headers].map(([name, value]) => `${name}: ${value}`).join('\n');
  responses.push({ label, status: response.status, text: `HTTP ${response.status}\n${headers}\n\n${body}` });
  return { status: response.status, headers: response.headers, body };
}

interface GraphQLAnswer<T> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

let server: ServerProcess;
let apiToken: string;

async function gql<T = any>(label: string, query: string, variables: Record<string, unknown> = {}, token: string | null = apiToken): Promise<GraphQLAnswer<T>> {
  const { body } = await call(label, `${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return JSON.parse(body) as GraphQLAnswer<T>;
}

async function mutate<T = any>(label: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const answer = await gql<T>(label, query, variables);
  if (answer.errors?.length) throw new Error(`${label}: ${answer.errors.map((error) => `${error.extensions?.code}: ${error.message}`).join('; ')}`);
  return answer.data!;
}

class RecordingWebSocket extends WebSocket {
  constructor(address: string | URL, protocols?: string | string[]) {
    super(address, protocols);
    this.on('message', (data) => frames.push(String(data)));
  }
}

const subscriptions: { client: Client; dispose: () => void }[] = [];

/** Follows a repository's syncStatus over graphql-ws until the end of the test (frames are recorded raw). */
function followSyncStatus(repositoryId: string): void {
  const client = createClient({
    url: `${server.url.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: RecordingWebSocket,
    connectionParams: { authorization: `Bearer ${apiToken}` },
    lazy: true,
    retryAttempts: 0,
  });
  const dispose = client.subscribe(
    { query: 'subscription($r: ID!) { syncStatus(repositoryId: $r) { repositoryId runId phase status progress message commitSha at } }', variables: { r: repositoryId } },
    { next: () => undefined, error: () => undefined, complete: () => undefined },
  );
  subscriptions.push({ client, dispose });
}

async function closeSubscriptions(): Promise<void> {
  for (const { client, dispose } of subscriptions.splice(0)) {
    dispose();
    await client.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// The documents (plain strings: the recorded answers are what counts).

const ADD_CREDENTIAL = 'mutation($input: AddCredentialInput!) { addCredential(input: $input) { credential { id provider host login scopes expiresAt } } }';
const ADD_REPOSITORY =
  'mutation($input: AddRepositoryInput!) { addRepository(input: $input) { repository { id url status provider } webhook { url secret autoConfigured } } }';
const SYNC = 'mutation($r: ID!) { syncRepository(input: { repositoryId: $r, force: false }) { run { id status trigger } } }';
const ROTATE_WEBHOOK_SECRET = 'mutation($r: ID!) { rotateWebhookSecret(input: { repositoryId: $r }) { webhook { url secret autoConfigured } } }';
const START_OAUTH = 'mutation($input: StartOAuthInput!) { startOAuth(input: $input) { authorizeUrl state } }';
const REPOSITORY = `query($id: ID!) { repository(id: $id) { id status lastError lastCommitSha url
  syncRuns(first: 20) { edges { node { id status phase trigger strategy error warning } } }
  webhookDeliveries(first: 20) { edges { node { event outcome error deliveryId } } } } }`;

interface RepositoryState {
  id: string;
  status: string;
  lastError: string | null;
  lastCommitSha: string | null;
  syncRuns: { edges: { node: { id: string; status: string; trigger: string; strategy: string | null; error: string | null } }[] };
}

const active = (state: RepositoryState) => state.syncRuns.edges.some((edge) => edge.node.status === 'QUEUED' || edge.node.status === 'RUNNING');

/** Polls the repository (each answer recorded) until no run is queued or running and `done` holds. */
async function settle(id: string, done: (state: RepositoryState) => boolean, timeoutMs = 30_000): Promise<RepositoryState> {
  const deadline = Date.now() + timeoutMs;
  let last: RepositoryState | undefined;
  while (Date.now() < deadline) {
    last = (await gql<{ repository: RepositoryState }>('repository state', REPOSITORY, { id })).data?.repository;
    if (last && !active(last) && done(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  throw new Error(`repository ${id} did not settle; last: ${JSON.stringify(last)}`);
}

function runOf(state: RepositoryState, runId: string) {
  return state.syncRuns.edges.find((edge) => edge.node.id === runId)?.node;
}

async function deliver(label: string, provider: 'github' | 'gitlab', headers: Record<string, string>, body: Buffer): Promise<number> {
  return (await call(label, `${server.url}/webhooks/${provider}`, { method: 'POST', headers, body: new Uint8Array(body) })).status;
}

/** A fixture push to `branch` (master) of `target`, its `after` the commit given. */
async function pushPayload(fixture: string, target: { url: string; name: string }, after: string): Promise<Buffer> {
  const raw = await loadFixture(fixture);
  const published = (JSON.parse(raw.toString('utf8')) as { after: string }).after;
  return retarget(raw, target, { [published]: after });
}

// ---------------------------------------------------------------------------------------------
// The set-up: three git hosts on one folder of bare repositories (each demanding its own
// credential), the fake APIs, GitLab's host as one proxy in front of its API and its git.

const temporary: string[] = [];
let gitRoot: string;
let plainGit: GitServer;
let githubGit: GitServer;
let gitlabGit: GitServer;
let github: FakeGithub;
let gitlab: FakeGitlab;
let gitlabHost: HostProxy;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: pg.Client;
let dataDir: string;
let shims: ProgramShims;
let watcher: ProcessWatcher;
let watched: WatchedProcesses | undefined;
const servers: ServerProcess[] = [];

const plainAuth: GitServerAuth = { username: PLAIN_LOGIN, password: PLAIN_PASSWORD, repos: (name) => name.startsWith('private/') };
const githubAuth: GitServerAuth = { username: 'x-access-token', password: GH_TOKEN, repos: (name) => name.startsWith('octo/') };
const githubTokens: Parameters<typeof startFakeGithub>[0]['tokens'] = { [GH_TOKEN]: { login: 'octo-bot', scopes: ['repo', 'admin:repo_hook'] } };
const gitlabTokens: Parameters<typeof startFakeGitlab>[0]['tokens'] = {};
/** The access token the fake GitLab issued to the OAuth user last (a refresh revokes the one before). */
const currentGitlabToken = () => Object.keys(gitlabTokens).find((token) => gitlabTokens[token]!.username === 'lab-user') ?? 'no token issued yet';

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

function serverEnv(key: Buffer): Env {
  return {
    ENCRYPTION_KEY: b64(key),
    PUBLIC_URL,
    GITHUB_API_URL: github.url,
    GITLAB_URL: gitlabHost.url,
    GITHUB_CLIENT_ID: GITHUB_APP.clientId,
    GITHUB_CLIENT_SECRET: GITHUB_APP.clientSecret,
    GITLAB_CLIENT_ID: GITLAB_APP.clientId,
    GITLAB_CLIENT_SECRET: GITLAB_APP.clientSecret,
    GITHUB_WEBHOOK_SECRET,
    GITLAB_WEBHOOK_SECRET,
    // Scheduled checks only where the test makes one due (every repository's next check is minutes away).
    REPOLENS_SCHEDULER_INTERVAL_MS: '250',
    PATH: `${shims.binDir}:${process.env.PATH}`,
  };
}

async function serve(key: Buffer): Promise<ServerProcess> {
  const started = await startServer({ databaseUrl: database.url, dataDir, logLevel: 'debug', env: serverEnv(key) });
  servers.push(started);
  await watcher.addRoot(started.pid);
  return started;
}

beforeAll(async () => {
  gitRoot = await tempDir('repolens-audit-git-');
  [plainGit, githubGit, gitlabGit] = await Promise.all([
    startGitServer({ root: gitRoot, auth: plainAuth }),
    startGitServer({ root: gitRoot, auth: githubAuth }),
    // GitLab takes oauth2 and the access token of the moment (a getter: a refresh changes it).
    startGitServer({
      root: gitRoot,
      auth: {
        username: 'oauth2',
        get password() {
          return currentGitlabToken();
        },
        repos: (name) => name.startsWith('lab/'),
      },
    }),
  ]);
  github = await startFakeGithub({ gitRoot, tokens: githubTokens, privateRepos: (name) => name.startsWith('octo/'), oauth: { ...GITHUB_APP, login: 'octo-user' } });
  gitlab = await startFakeGitlab({ gitRoot, tokens: gitlabTokens, privateProjects: (name) => name.startsWith('lab/'), oauth: { ...GITLAB_APP, username: 'lab-user' } });
  gitlabHost = await startHostProxy([{ matches: (p) => p.startsWith('/api/') || p.startsWith('/oauth/'), target: gitlab.url }], gitlabGit.url);
  database = await createTestDatabase();
  db = new pg.Client({ connectionString: database.url });
  await db.connect();
  dataDir = await tempDir('repolens-audit-data-');
  shims = await createProgramShims(await tempDir('repolens-audit-shims-'));
  watcher = await watchProcesses();

  // The API token, printed once by the CLI: that output is the one place it may appear.
  const created = await runCli(['token', 'create', '--tenant', 'audit'], { DATABASE_URL: database.url, DATA_DIR: dataDir, ENCRYPTION_KEY: b64(KEY) });
  expect(created.code, created.stderr).toBe(0);
  apiToken = created.stdout.trim();
  cliOutputs.push({ label: 'repolens token create', result: created });
  scanner.add('API token', apiToken, { designated: 'cli repolens token create' });

  server = await serve(KEY);
}, 120_000);

afterAll(async () => {
  await closeSubscriptions().catch(() => undefined);
  if (!watched) await watcher?.stop().catch(() => undefined);
  await killAllServers();
  await db?.end().catch(() => undefined);
  await database?.drop().catch(() => undefined);
  await Promise.all([plainGit?.close(), githubGit?.close(), gitlabGit?.close(), github?.close(), gitlab?.close(), gitlabHost?.close()]);
  await Promise.all(temporary.map((dir) => rm(dir, { recursive: true, force: true })));
});

// ---------------------------------------------------------------------------------------------

const repos: { plain?: { id: string; upstream: Upstream }; github?: { id: string; upstream: Upstream }; gitlab?: { id: string; upstream: Upstream; url: string; credentialId: string } } = {};
let projectId: string;

describe('secrets audit', { timeout: 120_000 }, () => {
  it('plain git host: password credential, refused wrong password, clone, fetch, a sync failing with 401, webhook secrets handed out and rotated', async () => {
    projectId = (await mutate('createProject', 'mutation { createProject(input: { name: "audit" }) { project { id } } }')).createProject.project.id;
    const host = new URL(plainGit.url).host;

    // Unauthenticated and wrongly authenticated requests, and a malformed input carrying a password.
    expect((await gql('no token', '{ projects { edges { node { id } } } }', {}, null)).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect((await gql('wrong API token', '{ projects { edges { node { id } } } }', {}, WRONG_API_TOKEN)).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    const malformed = await gql('addCredential malformed', ADD_CREDENTIAL, { input: { provider: 'SVN', host, login: PLAIN_LOGIN, token: PLAIN_WRONG_PASSWORD } });
    expect(malformed.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    const good = (await mutate('addCredential plain', ADD_CREDENTIAL, { input: { provider: 'GIT', host, login: PLAIN_LOGIN, token: PLAIN_PASSWORD } })).addCredential.credential.id;
    const wrong = (await mutate('addCredential plain wrong', ADD_CREDENTIAL, { input: { provider: 'GIT', host, login: PLAIN_LOGIN, token: PLAIN_WRONG_PASSWORD } })).addCredential.credential.id;

    // Each request waits a little, so that the git processes live long enough to be sampled.
    plainGit.setFault('*', { kind: 'delay', ms: 150 });
    const upstream = await createUpstream(plainGit, 'private/app', { branch: 'master', files: { 'README.md': '# private\n', 'src/app.ts': 'export {};\n' } });
    const refused = await gql('addRepository wrong password', ADD_REPOSITORY, { input: { projectId, url: upstream.url, provider: 'GIT', credentialId: wrong } });
    expect(refused.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(refused.errors?.[0]?.message).toMatch(/auth/i);

    const added = await mutate('addRepository private/app', ADD_REPOSITORY, { input: { projectId, url: upstream.url, provider: 'GIT', credentialId: good } });
    const id = added.addRepository.repository.id as string;
    followSyncStatus(id);
    const firstSecret = added.addRepository.webhook.secret as string;
    expect(added.addRepository.webhook.autoConfigured).toBe(false);
    scanner.add('plain repository webhook secret', firstSecret, { designated: 'addRepository private/app' });
    repos.plain = { id, upstream };
    expect(await settle(id, (state) => state.status === 'SYNCED')).toMatchObject({ lastCommitSha: await upstream.head() });

    // A push, delivered GitHub-style signed with the registration's secret: a WEBHOOK fetch.
    const pushed = await upstream.commit({ 'src/app.ts': 'export const v = 2;\n' }, 'second');
    const body = await pushPayload('github-push-commits-drone.json', { url: upstream.url, name: 'private/app' }, pushed);
    expect(await deliver('plain push signed', 'github', githubHeaders('push', body, firstSecret), body)).toBe(202);
    await settle(id, (state) => state.lastCommitSha === pushed);

    // A new secret, shown once; the old one stops verifying.
    const rotated = (await mutate('rotateWebhookSecret private/app', ROTATE_WEBHOOK_SECRET, { r: id })).rotateWebhookSecret.webhook.secret as string;
    scanner.add('plain repository rotated webhook secret', rotated, { designated: 'rotateWebhookSecret private/app' });
    const ping = retarget(await loadFixture('github-ping-repo-octokit.json'), { url: upstream.url, name: 'private/app' });
    expect(await deliver('plain ping old secret', 'github', githubHeaders('ping', ping, firstSecret), ping)).toBe(401);
    expect(await deliver('plain ping rotated secret', 'github', githubHeaders('ping', ping, rotated), ping)).toBe(200);

    // An incremental sync by hand.
    const third = await upstream.commit({ 'third.txt': '3\n' }, 'third');
    const manual = (await mutate('syncRepository private/app', SYNC, { r: id })).syncRepository.run.id as string;
    expect(runOf(await settle(id, (state) => runOf(state, manual)?.status === 'SUCCEEDED' || runOf(state, manual)?.status === 'FAILED'), manual)?.status).toBe('SUCCEEDED');

    // The host now wants another password: the stored one is refused with 401 and the run fails.
    plainAuth.password = PLAIN_UPSTREAM_ROTATED;
    try {
      await upstream.commit({ 'fourth.txt': '4\n' }, 'fourth');
      const failing = (await mutate('syncRepository private/app (401)', SYNC, { r: id })).syncRepository.run.id as string;
      const state = await settle(id, (candidate) => ['FAILED', 'SUCCEEDED'].includes(runOf(candidate, failing)?.status ?? ''));
      expect(runOf(state, failing)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/auth/i) });
      expect(state).toMatchObject({ status: 'FAILED', lastCommitSha: third, lastError: expect.stringMatching(/auth/i) });
    } finally {
      plainAuth.password = PLAIN_PASSWORD;
      plainGit.setFault('*', null);
    }
    const basic = (password: string) => `Basic ${Buffer.from(`${PLAIN_LOGIN}:${password}`).toString('base64')}`;
    expect(plainGit.authorizations.some((entry) => entry.value === basic(PLAIN_PASSWORD))).toBe(true);
    expect(plainGit.authorizations.some((entry) => entry.value === basic(PLAIN_WRONG_PASSWORD))).toBe(true);
  });

  it('GitHub: token checked by the API (a wrong one refused), clone, hook registered with its secret, signed deliveries good and bad, OAuth', async () => {
    const host = new URL(githubGit.url).host;
    // A wrong token is refused by the API: plainly, and by an API that echoes the token it refused.
    const refused = await gql('addCredential GitHub wrong token', ADD_CREDENTIAL, { input: { provider: 'GITHUB', host, token: GH_WRONG_TOKEN } });
    expect(refused.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const echoed = await echoing(GH_WRONG_TOKEN, () => gql('addCredential GitHub wrong token (echoed)', ADD_CREDENTIAL, { input: { provider: 'GITHUB', host, token: GH_WRONG_TOKEN } }));
    expect(echoed.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(echoed.errors?.[0]?.message).toMatch(/refused/);
    const credentialId = (await mutate('addCredential GitHub', ADD_CREDENTIAL, { input: { provider: 'GITHUB', host, token: GH_TOKEN } })).addCredential.credential.id;

    githubGit.setFault('*', { kind: 'delay', ms: 150 });
    const upstream = await createUpstream(githubGit, 'octo/app', { branch: 'master' });
    const added = await mutate('addRepository octo/app', ADD_REPOSITORY, { input: { projectId, url: upstream.url, provider: 'GITHUB', credentialId } });
    expect(added.addRepository.webhook).toMatchObject({ autoConfigured: true, secret: null });
    const id = added.addRepository.repository.id as string;
    followSyncStatus(id);
    repos.github = { id, upstream };
    const [hook] = github.hooks('octo/app');
    expect(hook?.config.url).toBe(`${PUBLIC_URL}/webhooks/github`);
    scanner.add('GitHub hook secret', hook!.config.secret!);
    await settle(id, (state) => state.status === 'SYNCED');
    githubGit.setFault('*', null);

    const pushed = await upstream.commit({ 'pushed.txt': 'pushed\n' }, 'pushed');
    const body = await pushPayload('github-push-commits-drone.json', { url: upstream.url, name: 'octo/app' }, pushed);
    const forged = githubHeaders('push', body, WRONG_HOOK_SECRET);
    expect(await deliver('GitHub push bad signature', 'github', forged, body)).toBe(401);
    expect(await deliver('GitHub push signed', 'github', githubHeaders('push', body, hook!.config.secret!), body)).toBe(202);
    await settle(id, (state) => state.lastCommitSha === pushed && state.status === 'SYNCED');
    // The provider-wide secret verifies too.
    const ping = retarget(await loadFixture('github-ping-repo-octokit.json'), { url: upstream.url, name: 'octo/app' });
    expect(await deliver('GitHub ping provider-wide secret', 'github', { ...githubHeaders('ping', ping, null), 'X-Hub-Signature-256': githubSignature(GITHUB_WEBHOOK_SECRET, ping) }, ping)).toBe(200);
    expect(githubGit.authorizations.some((entry) => entry.value === `Basic ${Buffer.from(`x-access-token:${GH_TOKEN}`).toString('base64')}`)).toBe(true);

    // DELTA: the changed files through the compare and contents APIs, with the token.
    await mutate('updateRepository octo/app DELTA', 'mutation($r: ID!) { updateRepository(input: { repositoryId: $r, syncStrategy: DELTA }) { repository { id syncStrategy } } }', { r: id });
    const delta = await upstream.commit({ 'delta.txt': 'by the API\n', 'pushed.txt': null }, 'delta');
    const deltaRun = (await mutate('syncRepository octo/app (DELTA)', SYNC, { r: id })).syncRepository.run.id as string;
    const afterDelta = await settle(id, (candidate) => ['FAILED', 'SUCCEEDED'].includes(runOf(candidate, deltaRun)?.status ?? ''));
    expect(runOf(afterDelta, deltaRun), JSON.stringify(afterDelta)).toMatchObject({ status: 'SUCCEEDED', strategy: 'DELTA' });
    expect(afterDelta.lastCommitSha).toBe(delta);

    // The token is revoked (API and git), and the API's refusal repeats it. A scheduled check asks the
    // API first (its refusal is logged), then git: both fail; so does a manual sync.
    delete githubTokens[GH_TOKEN];
    githubAuth.password = GH_UPSTREAM_ROTATED;
    try {
      await echoing(GH_TOKEN, async () => {
        await db.query(`UPDATE "Repository" SET "nextCheckAt" = now() - interval '1 second' WHERE id = $1`, [decodeGlobalId(id).id]);
        const checked = await settle(id, (candidate) => candidate.syncRuns.edges.some((edge) => edge.node.trigger === 'SCHEDULED' && edge.node.status === 'FAILED'));
        expect(checked.status).toBe('FAILED');
        expect(server.stderr().some((line) => line.includes('platform check failed'))).toBe(true);
        await upstream.commit({ 'revoked.txt': 'revoked\n' }, 'after the revocation');
        const failing = (await mutate('syncRepository octo/app (revoked)', SYNC, { r: id })).syncRepository.run.id as string;
        const failed = await settle(id, (candidate) => ['FAILED', 'SUCCEEDED'].includes(runOf(candidate, failing)?.status ?? ''));
        expect(runOf(failed, failing), JSON.stringify(failed)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/auth/i) });
      });
    } finally {
      githubTokens[GH_TOKEN] = { login: 'octo-bot', scopes: ['repo', 'admin:repo_hook'] };
      githubAuth.password = GH_TOKEN;
    }

    // OAuth: the authorize page approves at once; its redirect carries the code to our callback.
    const start = (await mutate('startOAuth GITHUB', START_OAUTH, { input: { provider: 'GITHUB', redirectUri: REDIRECT } })).startOAuth;
    scanner.add('GitHub OAuth state', start.state, { designated: 'startOAuth GITHUB' });
    const tokensBefore = new Set(Object.keys(githubTokens));
    const code = await authorize(start.authorizeUrl, 'GitHub');
    scanner.add('GitHub OAuth code', code);
    const issued = Object.keys(githubTokens).filter((token) => !tokensBefore.has(token));
    expect(issued).toHaveLength(1);
    scanner.add('GitHub OAuth access token', issued[0]!);
  });

  it('GitLab: OAuth with PKCE, clone with the access token, hook token, deliveries good and bad, refresh of an expired token used for a fetch', async () => {
    const start = (await mutate('startOAuth GITLAB', START_OAUTH, { input: { provider: 'GITLAB', redirectUri: REDIRECT } })).startOAuth;
    scanner.add('GitLab OAuth state', start.state, { designated: 'startOAuth GITLAB' });
    // The verifier never leaves the service but sealed in the database, and in the token request.
    const { rows } = await db.query<{ codeVerifier: string }>(`SELECT "codeVerifier" FROM "OAuthState" WHERE provider = 'GITLAB' AND "codeVerifier" IS NOT NULL`);
    expect(rows).toHaveLength(1);
    scanner.add('GitLab PKCE verifier', createSecretBox(KEY).decrypt(rows[0]!.codeVerifier));
    const code = await authorize(start.authorizeUrl, 'GitLab');
    scanner.add('GitLab OAuth code', code);
    const credential = await sealedCredential('GITLAB');
    const credentialId = credential.globalId;
    expect(credential.accessToken).toBe(currentGitlabToken());
    scanner.add('GitLab access token', credential.accessToken);
    scanner.add('GitLab refresh token', credential.refreshToken!);

    // A wrong personal access token, refused by an API that repeats it.
    const refused = await echoing(GL_WRONG_TOKEN, () => gql('addCredential GitLab wrong token (echoed)', ADD_CREDENTIAL, { input: { provider: 'GITLAB', host: new URL(gitlabHost.url).host, token: GL_WRONG_TOKEN } }));
    expect(refused.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    const upstream = await createUpstream(gitlabGit, 'lab/app', { branch: 'master' });
    const url = `${gitlabHost.url}/lab/app.git`;
    gitlabGit.setFault('*', { kind: 'delay', ms: 150 });
    const added = await mutate('addRepository lab/app', ADD_REPOSITORY, { input: { projectId, url, provider: 'GITLAB', credentialId } });
    expect(added.addRepository.webhook).toMatchObject({ autoConfigured: true, secret: null });
    const id = added.addRepository.repository.id as string;
    followSyncStatus(id);
    repos.gitlab = { id, upstream, url, credentialId };
    const [hook] = gitlab.hooks('lab/app');
    scanner.add('GitLab hook token', hook!.token!);
    await settle(id, (state) => state.status === 'SYNCED');
    gitlabGit.setFault('*', null);

    const pushed = await upstream.commit({ 'gitlab.txt': 'pushed\n' }, 'pushed');
    const body = await pushPayload('gitlab-push-commits-drone.json', { url, name: 'lab/app' }, pushed);
    expect(await deliver('GitLab push wrong token', 'gitlab', gitlabHeaders('Push Hook', WRONG_HOOK_SECRET), body)).toBe(401);
    expect(await deliver('GitLab push', 'gitlab', gitlabHeaders('Push Hook', hook!.token), body)).toBe(202);
    await settle(id, (state) => state.lastCommitSha === pushed && state.status === 'SYNCED');

    // The access token expires: the next sync refreshes it (GitLab rotates both) and fetches with the new one.
    await db.query(`UPDATE "Credential" SET "expiresAt" = now() - interval '1 minute' WHERE id = $1`, [decodeGlobalId(credentialId).id]);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the credential row's one-second cache
    const refreshesBefore = gitlab.refreshes;
    const head = await upstream.commit({ 'after-refresh.txt': 'refreshed\n' }, 'after the refresh');
    const run = (await mutate('syncRepository lab/app (refresh)', SYNC, { r: id })).syncRepository.run.id as string;
    const state = await settle(id, (candidate) => ['FAILED', 'SUCCEEDED', 'SKIPPED'].includes(runOf(candidate, run)?.status ?? ''));
    expect(runOf(state, run)?.status, JSON.stringify(state)).toBe('SUCCEEDED');
    expect(state.lastCommitSha).toBe(head);
    expect(gitlab.refreshes).toBe(refreshesBefore + 1);
    const refreshed = await sealedCredential('GITLAB');
    expect(refreshed.accessToken).not.toBe(credential.accessToken);
    expect(refreshed.accessToken).toBe(currentGitlabToken());
    scanner.add('GitLab refreshed access token', refreshed.accessToken);
    scanner.add('GitLab refreshed refresh token', refreshed.refreshToken!);
    const basic = (token: string) => `Basic ${Buffer.from(`oauth2:${token}`).toString('base64')}`;
    expect(gitlabGit.authorizations.some((entry) => entry.value === basic(credential.accessToken))).toBe(true);
    expect(gitlabGit.authorizations.some((entry) => entry.value === basic(refreshed.accessToken))).toBe(true);

    // The user revokes the application: the next refresh is refused and the sync fails, naming the credential only.
    gitlab.revokeRefreshTokens();
    await db.query(`UPDATE "Credential" SET "expiresAt" = now() - interval '1 minute' WHERE id = $1`, [decodeGlobalId(credentialId).id]);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await upstream.commit({ 'revoked.txt': 'revoked\n' }, 'after the revocation');
    const failing = (await mutate('syncRepository lab/app (revoked)', SYNC, { r: id })).syncRepository.run.id as string;
    // The token endpoint's refusal repeats the refresh token it was sent.
    const failed = await echoing(refreshed.refreshToken!, () => settle(id, (candidate) => ['FAILED', 'SUCCEEDED'].includes(runOf(candidate, failing)?.status ?? '')));
    expect(runOf(failed, failing), JSON.stringify(failed)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/could not be refreshed/) });
  });

  it('rotate-key: the stopped service re-seals every secret with NEW_ENCRYPTION_KEY, and a server on the new key syncs and verifies with them', async () => {
    server.kill('SIGTERM');
    expect(await server.waitForExit(30_000)).toEqual({ code: 0, signal: null });
    const rotated = await runCli(['rotate-key'], { DATABASE_URL: database.url, DATA_DIR: dataDir, ENCRYPTION_KEY: b64(KEY), NEW_ENCRYPTION_KEY: b64(NEW_KEY) });
    cliOutputs.push({ label: 'repolens rotate-key', result: rotated });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^re-encrypted 5 credentials, 1 refresh tokens, 3 webhook secrets/);

    server = await serve(NEW_KEY);
    const plain = repos.plain!;
    const head = await plain.upstream.commit({ 'after-rotation.txt': 'rotated\n' }, 'after the key rotation');
    const run = (await mutate('syncRepository private/app (new key)', SYNC, { r: plain.id })).syncRepository.run.id as string;
    const state = await settle(plain.id, (candidate) => ['FAILED', 'SUCCEEDED'].includes(runOf(candidate, run)?.status ?? ''));
    expect(runOf(state, run)?.status, JSON.stringify(state)).toBe('SUCCEEDED');
    expect(state.lastCommitSha).toBe(head);

    const gh = repos.github!;
    const pushed = await gh.upstream.commit({ 'after-rotation.txt': 'rotated\n' }, 'after the key rotation');
    const body = await pushPayload('github-push-commits-drone.json', { url: gh.upstream.url, name: 'octo/app' }, pushed);
    expect(await deliver('GitHub push signed (new key)', 'github', githubHeaders('push', body, github.hooks('octo/app')[0]!.config.secret!), body)).toBe(202);
    await settle(gh.id, (candidate) => candidate.lastCommitSha === pushed && candidate.status === 'SYNCED');
  });

  it('no secret appears in logs, responses, events, files, database rows or process arguments (and a planted value is found in each)', async () => {
    // The self-check's plant, through the service like the secrets: a repository whose name is a
    // marker, synced, then gone upstream (its failure names the URL). The marker then sits in the
    // log, answers, events, the copy's .git/config, rows and git's arguments, where the scan must find it.
    const planted = plantedScanner();
    const plantedUpstream = await createUpstream(plainGit, `planted/${PLANTED.repository}`, { branch: 'master' });
    const plantedId = (await mutate('addRepository planted', ADD_REPOSITORY, { input: { projectId, url: plantedUpstream.url, provider: 'GIT' } })).addRepository.repository.id as string;
    followSyncStatus(plantedId);
    await settle(plantedId, (state) => state.status === 'SYNCED');
    await rm(plantedUpstream.bareDir, { recursive: true, force: true });
    const plantedRun = (await mutate('syncRepository planted', SYNC, { r: plantedId })).syncRepository.run.id as string;
    await settle(plantedId, (state) => runOf(state, plantedRun)?.status === 'FAILED');
    // A process with the marker in its arguments (the sampler must report it), and the shim run by hand.
    const plantedChild = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 400)', PLANTED.argv], { stdio: 'ignore' });
    await watcher.addRoot(plantedChild.pid!);
    await new Promise((resolve) => plantedChild.once('close', resolve));
    await runPlantedShim(PLANTED.shim);

    await closeSubscriptions();
    watched = await watcher.stop();
    for (const running of servers) {
      if (!running.exitStatus()) {
        running.kill('SIGTERM');
        await running.waitForExit(30_000);
      }
    }

    const collected = await collectEverything(scanner);
    // SECRETS_AUDIT_DUMP=<folder> keeps what was scanned, to look at by hand.
    const dump = process.env.SECRETS_AUDIT_DUMP;
    if (dump) {
      await writeFile(path.join(dump, 'server-output.txt'), servers.flatMap((running) => [...running.stdout(), ...running.stderr()]).join('\n'));
      await writeFile(path.join(dump, 'responses.txt'), responses.map((response) => `### ${response.label}\n${response.text}`).join('\n\n'));
      await writeFile(path.join(dump, 'frames.txt'), frames.join('\n'));
      await writeFile(path.join(dump, 'argv.txt'), [...collected.invocations.map((argv) => argv.join(' ')), ...watched.cmdlines.map((cmdline) => cmdline.split('\0').join(' '))].join('\n'));
    }
    const findings = collected.findings;
    const leaks = findings.filter((finding) => scanner.designatedPlace(finding.secret) !== finding.where);
    const counts = collected.counts;
    console.log(
      [
        `secrets audit: ${scanner.size} secret values (${scanner.names().join(', ')})`,
        ...[...scanner.scanned].map(([channel, { pieces, bytes }]) => `  ${channel}: ${pieces} pieces, ${bytes} bytes`),
        `  ${JSON.stringify(counts)}`,
        `  leaks: ${leaks.length}${leaks.length ? `\n    ${leaks.map(describeFinding).join('\n    ')}` : ''}`,
      ].join('\n'),
    );
    expect(leaks.map(describeFinding)).toEqual([]);

    // Each secret handed out once is in its one designated answer (so the scan did read answers).
    for (const name of scanner.names()) {
      const place = scanner.designatedPlace(name);
      if (place) expect(findings.some((finding) => finding.secret === name && finding.where === place), `${name} in ${place}`).toBe(true);
    }

    // The collectors read what they should: the channels are not empty, the scenarios left their traces.
    expect(counts.debugLogLines, 'no debug-level log line: LOG_LEVEL=debug did not take').toBeGreaterThan(0);
    expect(counts.serverLines).toBeGreaterThan(50);
    expect(counts.responses).toBeGreaterThan(30);
    expect(counts.frames).toBeGreaterThan(10);
    expect(frames.some((frame) => frame.includes('"phase":"DONE"'))).toBe(true);
    expect(frames.filter((frame) => frame.includes('"phase":"FAILED"')).length).toBeGreaterThanOrEqual(4);
    expect(counts.workingCopies).toBe(4);
    expect(counts.gitConfigs).toBe(4);
    expect(counts.files).toBeGreaterThan(50);
    expect(counts.archives).toBeGreaterThan(0);
    expect(counts.databaseRows).toBeGreaterThan(20);
    const clones = collected.invocations.filter((argv) => argv[0] === 'git' && argv[1] === 'clone');
    for (const url of [repos.plain!.upstream.url, repos.github!.upstream.url, repos.gitlab!.url]) {
      expect(clones.some((argv) => argv.includes(url)), `no recorded git clone of ${url}`).toBe(true);
    }
    expect(collected.invocations.some((argv) => argv[0] === 'tar')).toBe(true);
    expect(watched.cmdlines.some((cmdline) => /git-remote-http|\0clone\0/.test(cmdline)), 'no git transport process was sampled').toBe(true);

    // Self-check: the planted values are found, by the same collectors, in every channel they went through;
    // and values written into a copy's .git in the encodings a leak would take are found there.
    const copy = path.join(dataDir, 'repos', decodeGlobalId(repos.plain!.id).id, '.git');
    await appendFile(path.join(copy, 'config'), `[audit]\n\tplanted = ${Buffer.from(`oauth2:${PLANTED.gitConfig}`).toString('base64')}\n`);
    await appendFile(path.join(copy, 'FETCH_HEAD'), `0000000000000000000000000000000000000000\t\tbranch 'master' of ${encodeURIComponent(PLANTED.fetchHead)}\n`);
    await appendFile(path.join(copy, 'logs', 'HEAD'), `planted ${PLANTED.reflog.slice(0, 24)}\n`);
    const check = await collectEverything(planted);
    const channels = (name: string) => [...new Set(check.findings.filter((finding) => finding.secret === name).map((finding) => finding.channel))].sort();
    const places = (name: string) => [...new Set(check.findings.filter((finding) => finding.secret === name).map((finding) => `${finding.channel}: ${finding.where}`))];
    expect(channels('repository')).toEqual(['database', 'files', 'process arguments', 'responses', 'server output', 'subscription frames']);
    const plantedFrames = check.findings.filter((finding) => finding.secret === 'repository' && finding.channel === 'subscription frames');
    expect(plantedFrames.some((finding) => frames[Number(/\d+$/.exec(finding.where)![0]) - 1]!.includes('"phase":"FAILED"'))).toBe(true);
    expect(places('gitConfig')).toEqual([expect.stringMatching(/^files: repos\/.*\/\.git\/config$/)]);
    expect(places('fetchHead')).toEqual([expect.stringMatching(/^files: repos\/.*\/\.git\/FETCH_HEAD$/)]);
    expect(places('reflog')).toEqual([expect.stringMatching(/^files: repos\/.*\/\.git\/logs\/HEAD$/)]);
    expect(places('shim')).toEqual([expect.stringMatching(/^process arguments: shim git/)]);
    expect(places('argv')).toEqual([expect.stringMatching(/^process arguments: \/proc cmdline/)]);
  });
});

// ---------------------------------------------------------------------------------------------
// OAuth helpers.

/** What a browser does: the provider's authorize page (approving at once), then its redirect to our callback. Returns the code. */
async function authorize(authorizeUrl: string, provider: string): Promise<string> {
  const atProvider = await fetch(authorizeUrl, { redirect: 'manual' });
  expect(atProvider.status).toBe(302);
  const location = new URL(atProvider.headers.get('location')!);
  expect(location.origin).toBe(PUBLIC_URL);
  const code = location.searchParams.get('code')!;
  expect(code).toBeTruthy();
  // PUBLIC_URL is where a real deployment is reached; here the server itself.
  const callback = await call(`OAuth callback ${provider}`, `${server.url}${location.pathname}${location.search}`);
  expect(callback.status).toBe(302);
  const back = new URL(callback.headers.get('location')!);
  expect(back.searchParams.get('error'), back.toString()).toBeNull();
  expect(back.searchParams.get('credentialId')).toBeTruthy();
  return code;
}

/**
 * Runs `body` while the fake APIs answer every refusal with a message that repeats `secret`, as a
 * broken or hostile API (or a proxy in front of it) might: GitHub's and GitLab's 401 messages,
 * and the `error` of GitLab's OAuth token endpoint.
 */
async function echoing<T>(secret: string, body: () => Promise<T>): Promise<T> {
  const echo = (_path: string, answer: unknown) => {
    const { message, error } = (answer ?? {}) as { message?: unknown; error?: unknown };
    if (message === 'Bad credentials' || message === '401 Unauthorized') return { ...(answer as object), message: `${message}: ${secret} is not valid` };
    if (error === 'invalid_grant') return { ...(answer as object), error: `invalid_grant ${secret}` };
    return answer;
  };
  github.tamper(echo);
  gitlab.tamper(echo);
  try {
    return await body();
  } finally {
    github.tamper(null);
    gitlab.tamper(null);
  }
}

/** The newest credential of a provider, opened with the key (the test knows it: the service never shows it). */
async function sealedCredential(provider: 'GITLAB' | 'GITHUB'): Promise<{ globalId: string; accessToken: string; refreshToken: string | null }> {
  const { rows } = await db.query<{ id: string; encryptedSecret: string; encryptedRefreshToken: string | null }>(
    `SELECT id, "encryptedSecret", "encryptedRefreshToken" FROM "Credential" WHERE provider = $1 AND "encryptedRefreshToken" IS NOT NULL ORDER BY "createdAt" DESC LIMIT 1`,
    [provider],
  );
  const row = rows[0]!;
  const box = createSecretBox(KEY);
  return { globalId: encodeGlobalId('Credential', row.id), accessToken: box.decrypt(row.encryptedSecret), refreshToken: row.encryptedRefreshToken && box.decrypt(row.encryptedRefreshToken) };
}

// ---------------------------------------------------------------------------------------------
// The collectors: every channel, through one scanner.

const PLANTED = {
  repository: random('planted-repo-'),
  gitConfig: random('planted-config-'),
  fetchHead: random('planted fetch+head/'),
  reflog: random('planted-reflog-'),
  shim: random('planted-shim-'),
  argv: random('planted-argv-'),
};

function plantedScanner(): SecretScanner {
  const planted = new SecretScanner();
  for (const [name, value] of Object.entries(PLANTED)) planted.add(name, value);
  return planted;
}

async function runPlantedShim(value: string): Promise<void> {
  await new Promise<void>((resolve) => {
    const child = spawn(path.join(shims.binDir, 'git'), ['rev-parse', '--verify', '--quiet', value], { stdio: 'ignore', cwd: tmpdir() });
    child.once('close', () => resolve());
  });
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

interface Collected {
  findings: Finding[];
  invocations: string[][];
  counts: Record<string, number>;
}

async function collectEverything(scan: SecretScanner): Promise<Collected> {
  const findings: Finding[] = [];
  const counts: Record<string, number> = {};
  const add = (items: Finding[]) => findings.push(...items);

  // Every line every server process printed (stdout and stderr), one by one, and the CLI runs.
  let serverLines = 0;
  let debugLogLines = 0;
  servers.forEach((running, index) => {
    for (const stream of ['stdout', 'stderr'] as const) {
      running[stream]().forEach((line, number) => {
        serverLines++;
        if (line.startsWith('{"level":20')) debugLogLines++;
        add(scan.scan('server output', `server ${index + 1} ${stream} line ${number + 1}`, line));
      });
    }
  });
  for (const { label, result } of cliOutputs) add(scan.scan('server output', `cli ${label}`, `${result.stdout}\n${result.stderr}`));
  counts.serverLines = serverLines;
  counts.debugLogLines = debugLogLines;

  // Every answer the test received (GraphQL data and errors, webhook and OAuth answers with their headers).
  for (const response of responses) add(scan.scan('responses', response.label, response.text));
  counts.responses = responses.length;

  frames.forEach((frame, index) => add(scan.scan('subscription frames', `frame ${index + 1}`, frame)));
  counts.frames = frames.length;

  // Every file under DATA_DIR: working copies (.git/config, FETCH_HEAD, packed-refs, logs, objects…), temporary folders, archives (unpacked too).
  const files = await filesUnder(dataDir);
  let archives = 0;
  for (const file of files) {
    const relative = path.relative(dataDir, file);
    const content = await readFile(file).catch(() => null);
    if (!content) continue;
    add(scan.scan('files', relative, content));
    if (file.endsWith('.gz')) {
      archives++;
      add(scan.scan('files', `${relative} (unpacked)`, gunzipSync(content)));
    }
  }
  const copies = (await readdir(path.join(dataDir, 'repos')).catch(() => [])).filter((name) => !name.startsWith('.'));
  counts.files = files.length;
  counts.archives = archives;
  counts.workingCopies = copies.length;
  counts.gitConfigs = files.filter((file) => /repos\/[^/]+\/\.git\/config$/.test(path.relative(dataDir, file))).length;
  counts.gitFiles = files.filter((file) => /repos\/[^/]+\/\.git\//.test(path.relative(dataDir, file))).length;

  // Every row of every table (sealed columns included: ciphertext must not contain a plaintext).
  const { rows: tables } = await db.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`);
  let databaseRows = 0;
  for (const { tablename } of tables) {
    const { rows } = await db.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${tablename}" t`);
    rows.forEach((row, index) => {
      databaseRows++;
      add(scan.scan('database', `"${tablename}" row ${index + 1}`, row.row));
    });
  }
  counts.databaseRows = databaseRows;

  // The argument lists of every git and tar the servers started (shims), and of every process sampled under them.
  const invocations = await shims.invocations();
  for (const invocation of invocations) add(scan.scan('process arguments', `shim ${invocation.argv[0]} ${invocation.file}`, invocation.argv.join('\0')));
  counts.shimInvocations = invocations.length;
  watched!.cmdlines.forEach((cmdline, index) => add(scan.scan('process arguments', `/proc cmdline ${index + 1} (${path.basename(cmdline.split('\0')[0] ?? '')})`, cmdline)));
  counts.sampledCmdlines = watched!.cmdlines.length;
  counts.sampledProcesses = watched!.processes;
  counts.samplerScans = watched!.scans;

  return { findings, invocations: invocations.map((invocation) => invocation.argv), counts };
}
