import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { print } from 'graphql';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId, encodeGlobalId } from '../src/schema/globalId.js';
import {
  AddCredentialDocument,
  AddRepositoryDocument,
  CreateProjectDocument,
  CredentialListDocument,
  CredentialSchemaFieldsDocument,
  RemoveCredentialByIdDocument,
  RepositoryDocument,
  SyncRepositoryDocument,
  SyncStatusDocument,
  type SyncStatusSubscription,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, Subscription, TestClient } from './support/client.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer, type GitServerAuth } from './support/gitServer.js';

// A private upstream behind HTTP Basic auth, reached with a credential stored
// through the API. The password must reach the git host and nothing else:
// no log line, error, event, file of the working copy or process argument.

const USERNAME = 'sync-robot';
const PASSWORD = `pw-${randomBytes(32).toString('base64url')}`;
const auth: GitServerAuth = { username: USERNAME, password: PASSWORD, repos: (name) => name.startsWith('private/') };

let server: GitServer;
let testApp: TestApp;
let a: TestClient;
let b: TestClient;
let projectId: string;
let credentialId: string;

const dbId = (globalId: string): string => decodeGlobalId(globalId).id;

/** The forms a password can leak in: as is, and base64 in a Basic header (alone or as user:password). */
function secretForms(password: string): string[] {
  return [password, Buffer.from(password).toString('base64'), Buffer.from(`${USERNAME}:${password}`).toString('base64')];
}

function expectNoSecret(text: string, what: string, passwords: string[] = [PASSWORD]): void {
  for (const password of passwords) {
    for (const form of secretForms(password)) expect(text.includes(form), `${what} contains the password`).toBe(false);
  }
}

/** Every file under `dir`, for a byte-level search. */
async function allFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

// Runs in its own process, so that sampling /proc does not compete with the
// app (same process as the tests) for the event loop and libuv's thread pool.
// What to look for comes through the environment: an argument would be seen by the scan itself.
const PROCESS_WATCHER = `
const fs = require('node:fs');
const forms = JSON.parse(process.env.WATCH_FORMS);
const marker = process.env.WATCH_MARKER;
const seen = new Set();
const leaks = new Set();
let scans = 0;
// Processes older than the watch cannot be the git calls it is after: only newer ones are read.
const baseline = new Set(fs.readdirSync('/proc'));
function scan() {
  for (const pid of fs.readdirSync('/proc')) {
    if (baseline.has(pid) || !/^[0-9]+$/.test(pid) || pid === String(process.pid)) continue;
    let argv;
    try { argv = fs.readFileSync('/proc/' + pid + '/cmdline').toString('utf8').split('\\0').join(' ').trim(); } catch { continue; }
    if (forms.some((form) => argv.includes(form))) leaks.add(argv);
    if (argv.includes(marker)) seen.add(argv);
  }
  scans++;
}
const timer = setInterval(scan, 20);
process.stdin.resume();
process.stdin.on('end', () => {
  clearInterval(timer);
  scan();
  process.stdout.write(JSON.stringify({ seen: [...seen], leaks: [...leaks], scans }));
});
scan();
process.stdout.write('ready\\n');
`;

/**
 * Samples /proc/<pid>/cmdline of every process every ~20 ms until stopped;
 * reports each distinct argument list that mentions `marker`, and any that
 * carries one of the passwords.
 */
async function watchProcessArguments(marker: string, passwords: string[]) {
  const child = spawn(process.execPath, ['-e', PROCESS_WATCHER], {
    env: { PATH: process.env.PATH, WATCH_MARKER: marker, WATCH_FORMS: JSON.stringify(passwords.flatMap(secretForms)) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: string) => {
      output += chunk;
      if (output.startsWith('ready\n')) resolve();
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`process watcher exited early (${code})`)));
  });
  return {
    async stop(): Promise<{ seen: string[]; leaks: string[]; scans: number }> {
      const exited = new Promise((resolve) => child.once('close', resolve));
      child.stdin.end();
      await exited;
      return JSON.parse(output.slice('ready\n'.length)) as { seen: string[]; leaks: string[]; scans: number };
    },
  };
}

async function addCredential(client: TestClient, token: string, host = new URL(server.url).host) {
  const result = await client.raw(AddCredentialDocument, { input: { provider: 'GIT', host, login: USERNAME, token } });
  expectNoSecret(JSON.stringify(result), 'the addCredential answer', [token]);
  expect(result.errors).toBeUndefined();
  return result.data!.addCredential.credential;
}

function phasesDone(events: SyncStatusSubscription[]): boolean {
  return events.some((event) => ['DONE', 'FAILED', 'SKIPPED'].includes(event.syncStatus.phase));
}

beforeAll(async () => {
  server = await startGitServer({ auth });
  testApp = await startTestApp();
  [a, b] = await Promise.all([testApp.client('cred-a'), testApp.client('cred-b')]);
  projectId = (await a.request(CreateProjectDocument, { name: 'private' })).createProject.project.id;
  credentialId = (await addCredential(a, PASSWORD)).id;
});

afterEach(() => {
  auth.password = PASSWORD;
  server.setFault('*', null);
});

afterAll(async () => {
  await testApp?.close();
  await server?.close();
});

describe('private repositories through a stored credential', () => {
  it('refuses a private repository without a credential, or with a wrong one, and writes no row', async () => {
    const upstream = await createUpstream(server, 'private/refused');
    const wrong = `pw-${randomBytes(24).toString('base64url')}`;
    const wrongCredential = await addCredential(a, wrong);
    const before = await testApp.app.db.prisma.repository.count();
    for (const input of [{ url: upstream.url }, { url: upstream.url, credentialId: wrongCredential.id }]) {
      const result = await a.raw(AddRepositoryDocument, { input: { projectId, ...input } });
      expect((result.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.message).toMatch(/auth/i);
      expectNoSecret(JSON.stringify(result), 'the error', [wrong, PASSWORD]);
    }
    expect(await testApp.app.db.prisma.repository.count()).toBe(before);
    expect(server.repoStats('private/refused').fetches).toBe(0);
    expectNoSecret(testApp.logs.join('\n'), 'the log', [wrong, PASSWORD]);
  });

  it('syncs with the credential and never exposes the password in logs, errors, events, files or process arguments', async () => {
    const upstream = await createUpstream(server, 'private/app', { files: { 'README.md': '# private\n', 'src/app.ts': 'export {};\n' } });
    // Every request waits, so that each git process lives long enough to be sampled.
    server.setFault('private/app', { kind: 'delay', ms: 300 });
    const watcher = await watchProcessArguments(`${server.url}/private/app`, [PASSWORD]);
    let events: SyncStatusSubscription[] = [];
    let repositoryId: string;
    let subscription: Subscription<SyncStatusSubscription> | undefined;
    let sampled: Awaited<ReturnType<typeof watcher.stop>>;
    try {
      const { addRepository } = await a.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, credentialId } });
      repositoryId = addRepository.repository.id;
      subscription = a.subscribe(SyncStatusDocument, { repositoryId });
      await subscription.waitFor(phasesDone);
      await waitForIdle(testApp.app, dbId(repositoryId));
      // A second, incremental sync fetches with the credential too.
      const head = await upstream.commit({ 'src/app.ts': 'export const v = 2;\n' }, 'second');
      await a.request(SyncRepositoryDocument, { repositoryId });
      await waitForIdle(testApp.app, dbId(repositoryId));
      await waitForRepository(a, repositoryId, (state) => state.lastCommitSha === head, 10_000);
      events = [...subscription.events];
    } finally {
      await subscription?.close();
      server.setFault('private/app', null);
      sampled = await watcher.stop();
    }
    const { seen, leaks, scans } = sampled;

    const state = (await a.request(RepositoryDocument, { id: repositoryId, runs: 5 })).repository!;
    expect(state).toMatchObject({ status: 'SYNCED', lastCommitSha: await upstream.head(), lastError: null, url: upstream.url });
    expect(state.syncRuns.edges.map((edge) => edge.node.status)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    // The credential really went to the git host (and so was in this process's hands).
    const basic = `Basic ${Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')}`;
    expect(server.authorizations.some((entry) => entry.repo === 'private/app' && entry.value === basic)).toBe(true);
    expect(phasesDone(events)).toBe(true);

    // Process arguments: git processes were sampled, none carried the password.
    expect(scans).toBeGreaterThan(10);
    expect(seen.filter((argv) => /\bgit\b|git-remote-http/.test(argv)).length, 'no git process was sampled').toBeGreaterThan(0);
    expect(leaks).toEqual([]);

    expectNoSecret(testApp.logs.join('\n'), 'the log');
    expectNoSecret(JSON.stringify(events), 'the sync events');
    const repositories = await testApp.app.db.prisma.repository.findMany({ select: { lastError: true, url: true } });
    expectNoSecret(JSON.stringify(repositories), 'a repository row');
    const runs = await testApp.app.db.prisma.syncRun.findMany({ select: { error: true, phaseLog: true } });
    expectNoSecret(JSON.stringify(runs), 'a sync run');
    const credentials = await testApp.app.db.prisma.credential.findMany();
    expectNoSecret(JSON.stringify(credentials), 'the credential row (it must be encrypted)');

    // Files: the working copy's .git (config, FETCH_HEAD, packed-refs, logs…) and everything else under DATA_DIR.
    const copy = path.join(testApp.dataDir, 'repos', dbId(repositoryId));
    const gitFiles = await allFiles(path.join(copy, '.git'));
    expect(gitFiles.map((file) => path.basename(file))).toContain('config');
    for (const file of await allFiles(testApp.dataDir)) {
      const content = await readFile(file);
      for (const form of secretForms(PASSWORD)) expect(content.includes(form), `${file} contains the password`).toBe(false);
    }
    expect(await readFile(path.join(copy, '.git', 'config'), 'utf8')).not.toMatch(/@127\.0\.0\.1/);
  });

  it('fails a sync whose credential was rotated upstream with a clear error and without either password', async () => {
    const upstream = await createUpstream(server, 'private/rotated');
    const { addRepository } = await a.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, credentialId } });
    const repositoryId = addRepository.repository.id;
    const synced = await waitForRepository(a, repositoryId, (state) => state.status === 'SYNCED');
    await waitForIdle(testApp.app, dbId(repositoryId));

    const rotated = `pw-${randomBytes(32).toString('base64url')}`;
    auth.password = rotated;
    await upstream.commit({ 'new.txt': 'new\n' }, 'after rotation');
    server.setFault('private/rotated', { kind: 'delay', ms: 100 });
    const subscription = a.subscribe(SyncStatusDocument, { repositoryId });
    let events: SyncStatusSubscription[];
    try {
      const { syncRepository } = await a.request(SyncRepositoryDocument, { repositoryId });
      events = await subscription.waitFor(phasesDone);
      await waitForIdle(testApp.app, dbId(repositoryId));
      const state = (await a.request(RepositoryDocument, { id: repositoryId, runs: 1 })).repository!;
      const run = state.syncRuns.edges[0]!.node;
      expect(run).toMatchObject({ id: syncRepository.run.id, status: 'FAILED', phase: 'FAILED' });
      expect(run.error).toMatch(/auth/i);
      expect(state.status).toBe('FAILED');
      expect(state.lastError).toMatch(/auth/i);
      // The last good copy stays.
      expect(state.lastCommitSha).toBe(synced.lastCommitSha);
      const failed = events.find((event) => event.syncStatus.phase === 'FAILED');
      expect(failed?.syncStatus.message).toMatch(/auth/i);

      const both = [PASSWORD, rotated];
      expectNoSecret(`${run.error}\n${state.lastError}`, 'the run error / lastError', both);
      expectNoSecret(JSON.stringify(events), 'the sync events', both);
      expectNoSecret(testApp.logs.join('\n'), 'the log', both);
      const rows = await testApp.app.db.prisma.syncRun.findMany({ where: { repositoryId: dbId(repositoryId) } });
      expectNoSecret(JSON.stringify(rows), 'a sync run row', both);
    } finally {
      await subscription.close();
    }
  });

  it('does not hand a credential to a host it was not made for', async () => {
    const upstream = await createUpstream(server, 'private/elsewhere');
    const foreign = await addCredential(a, PASSWORD, 'git.example.com');
    server.resetStats();
    const before = await testApp.app.db.prisma.repository.count();
    const result = await a.raw(AddRepositoryDocument, { input: { projectId, url: upstream.url, credentialId: foreign.id } });
    expect((result.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await testApp.app.db.prisma.repository.count()).toBe(before);
    const basic = `Basic ${Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')}`;
    expect(server.authorizations.filter((entry) => entry.value === basic)).toEqual([]);
  });
});

describe('credentials through the API', () => {
  it('lists credentials without any secret field', async () => {
    const listed = await a.request(CredentialListDocument, {});
    const credential = listed.credentials.find((entry) => entry.id === credentialId);
    expect(credential).toMatchObject({ provider: 'GIT', host: new URL(server.url).host, login: USERNAME });
    expectNoSecret(JSON.stringify(listed), 'the credentials list');
    expect((await a.request(CredentialListDocument, { provider: 'GITHUB' })).credentials).toEqual([]);

    const fields = (await a.request(CredentialSchemaFieldsDocument, {})).__type?.fields?.map((field) => field.name) ?? [];
    expect(fields).toContain('host');
    expect(fields.filter((name) => /token|secret|password|encrypted/i.test(name))).toEqual([]);

    // Another tenant sees none of them.
    expect((await b.request(CredentialListDocument, {})).credentials).toEqual([]);
  });

  it('does not echo the token of a malformed addCredential input in the answer or the log', async () => {
    const token = `pw-${randomBytes(24).toString('base64url')}`;
    const query = print(AddCredentialDocument);
    const before = await testApp.app.db.prisma.credential.count();
    const inputs = [
      { provider: 'GIT', token, hots: '127.0.0.1' }, // a misspelt field
      { token, host: '127.0.0.1' }, // a required field missing
      { provider: 'SVN', token, host: '127.0.0.1' }, // an unknown enum value
    ];
    for (const input of inputs) {
      const response = await fetch(`${testApp.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}` },
        body: JSON.stringify({ query, variables: { input } }),
      });
      const body = await response.text();
      expect((JSON.parse(body) as { errors?: GraphQLErrorShape[] }).errors?.[0]?.extensions?.code, body).toBe('BAD_USER_INPUT');
      expectNoSecret(body, `the answer to ${JSON.stringify(Object.keys(input))}`, [token]);
    }
    expectNoSecret(testApp.logs.join('\n'), 'the log', [token]);
    expect(await testApp.app.db.prisma.credential.count()).toBe(before);
  });

  it('answers removeCredential and use of another tenant\'s credential with NOT_FOUND and changes nothing', async () => {
    const removeForeign = await b.raw(RemoveCredentialByIdDocument, { credentialId });
    const removeUnknown = await b.raw(RemoveCredentialByIdDocument, { credentialId: encodeGlobalId('Credential', randomUUID()) });
    expect((removeForeign.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('NOT_FOUND');
    expect(removeForeign.errors).toEqual(removeUnknown.errors);
    expect((await a.request(CredentialListDocument, {})).credentials.map((entry) => entry.id)).toContain(credentialId);

    // Nor can B attach A's credential to a repository of its own.
    const upstream = await createUpstream(server, 'private/b-wants-in');
    const ownProject = (await b.request(CreateProjectDocument, { name: 'b' })).createProject.project.id;
    const before = await testApp.app.db.prisma.repository.count();
    const attach = await b.raw(AddRepositoryDocument, { input: { projectId: ownProject, url: upstream.url, credentialId } });
    expect((attach.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('NOT_FOUND');
    expect(await testApp.app.db.prisma.repository.count()).toBe(before);
    expect(server.repoStats('private/b-wants-in').requests).toBe(0);

    // The owner can remove its own credential (so NOT_FOUND above was about ownership).
    const spare = await addCredential(a, `pw-${randomBytes(16).toString('hex')}`);
    expect((await a.request(RemoveCredentialByIdDocument, { credentialId: spare.id })).removeCredential.removedCredentialId).toBe(spare.id);
    expect((await a.request(CredentialListDocument, {})).credentials.map((entry) => entry.id)).not.toContain(spare.id);
  });
});
