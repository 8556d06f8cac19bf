import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalArchiveStore, readObject, S3ArchiveStore, type ArchiveStore } from '../src/storage/archiveStore.js';
import type { Manifest } from '../src/storage/fileArtifacts.js';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  RemoveRepositoryDocument,
  RepositoryArchiveDocument,
  RepositoryFileDocument,
  SyncRepositoryDocument,
  UpdateRepositoryDocument,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { TestClient } from './support/client.js';
import { createUpstream, git, type FileChange } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { s3TestEnv } from './support/s3proxy.js';

let server: GitServer;

beforeAll(async () => {
  server = await startGitServer();
});

afterAll(async () => {
  await server?.close();
});

function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
}

/** The store the app writes to, opened the same way, so a test reads what is really there. */
function storeOf(testApp: TestApp, env: Record<string, string>): ArchiveStore {
  return env.S3_BUCKET
    ? new S3ArchiveStore({
        bucket: env.S3_BUCKET,
        endpoint: env.S3_ENDPOINT,
        region: env.S3_REGION,
        forcePathStyle: true,
        credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
      })
    : new LocalArchiveStore(path.join(testApp.dataDir, 'archives'));
}

async function keysOf(store: ArchiveStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of store.list(prefix)) keys.push(object.key);
  return keys.sort();
}

async function readStored(store: ArchiveStore, key: string): Promise<Buffer> {
  const body = await readObject(store, key);
  if (!body) throw new Error(`${key} is not stored`);
  return body;
}

function blobSha(content: string): string {
  const bytes = Buffer.from(content);
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

interface Harness {
  testApp: TestApp;
  client: TestClient;
  projectId: string;
  store: ArchiveStore;
  env: Record<string, string>;
}

async function startHarness(env: Record<string, string>): Promise<Harness> {
  const testApp = await startTestApp({ env: { REPOLENS_ARCHIVE_RETRY_MS: '10', REPOLENS_ARCHIVE_COLLECT_GRACE_MS: '0', ...env } });
  const client = await testApp.client();
  const projectId = (await client.request(CreateProjectDocument, { name: 'archives' })).createProject.project.id;
  return { testApp, client, projectId, store: storeOf(testApp, env), env };
}

async function addSynced(harness: Harness, name: string, files: Record<string, FileChange>, archivePolicy?: 'NONE' | 'EACH_SYNC' | 'DAILY') {
  const upstream = await createUpstream(server, name, { files: {} });
  await upstream.commit(files, 'initial commit');
  const { addRepository } = await harness.client.request(AddRepositoryDocument, {
    input: { projectId: harness.projectId, url: upstream.url, ...(archivePolicy ? { archivePolicy } : {}) },
  });
  const id = addRepository.repository.id;
  await waitForRepository(harness.client, id, (state) => state.status === 'SYNCED');
  await waitForIdle(harness.testApp.app, dbId(id));
  return { upstream, id, dbId: dbId(id) };
}

async function archiveState(harness: Harness, id: string) {
  const { repository } = await harness.client.request(RepositoryArchiveDocument, { id, first: 20 });
  return repository!;
}

async function syncTo(harness: Harness, id: string, sha: string, force = false) {
  await harness.client.request(SyncRepositoryDocument, { repositoryId: id, force });
  await waitForRepository(harness.client, id, (state) => state.status === 'SYNCED' && state.lastCommitSha === sha);
  await waitForIdle(harness.testApp.app, dbId(id));
}

const stores: { name: string; env: () => Promise<Record<string, string>> }[] = [
  { name: 'local folder', env: async () => ({}) },
  { name: 'S3 (S3Proxy)', env: () => s3TestEnv() },
];

describe.each(stores)('archives in the $name store', ({ env }) => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({ ...(await env()), REPOLENS_KEEP_SNAPSHOTS: '3' });
  });

  afterAll(async () => {
    await harness?.testApp.close();
  });

  it('stores a snapshot and the per-file artifacts of each synced commit, symlinks as symlinks', async () => {
    const files: Record<string, FileChange> = {
      'README.md': '# archived\n',
      'src/a.ts': 'export const a = 1;\n',
      'bin/data.bin': 'binary\u0000content\n',
      'docs/readme-link': { symlink: '../README.md' },
      'passwd-link': { symlink: '/etc/passwd' },
    };
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, 'layout', files);
    const head = await upstream.head();
    const state = await archiveState(harness, id);
    const snapshotKey = `repos/${repositoryId}/${head}.tar.gz`;
    expect(state.snapshots.edges.map((edge) => edge.node.key)).toEqual([snapshotKey]);
    const snapshot = state.snapshots.edges[0]!.node;
    expect(snapshot.url).toBe(harness.store.urlOf(snapshotKey));
    expect(state.archiveUrl).toBe(snapshot.url);
    expect(state.archivePolicy).toBe('EACH_SYNC');
    expect(state.syncRuns.edges[0]!.node).toMatchObject({ status: 'SUCCEEDED', phase: 'DONE', warning: null });
    expect(state.localCopy).toMatchObject({ present: true });
    expect(state.localCopy!.bytes).toBeGreaterThan(0);

    // The snapshot is the object whose checksum was recorded.
    const stored = await readStored(harness.store, snapshotKey);
    expect(stored.length).toBe(snapshot.bytes);
    expect(createHash('sha256').update(stored).digest('hex')).toBe(snapshot.sha256);

    const manifest = JSON.parse((await readStored(harness.store, `repos/${repositoryId}/manifests/${head}.json`)).toString()) as Manifest;
    expect(manifest.commitSha).toBe(head);
    expect(Object.keys(manifest.files).sort()).toEqual(Object.keys(files).sort());
    expect(manifest.files['passwd-link']).toEqual({ type: 'symlink', mode: '120000', sha: blobSha('/etc/passwd'), size: '/etc/passwd'.length });
    expect(manifest.files['src/a.ts']).toEqual({ type: 'file', mode: '100644', sha: blobSha('export const a = 1;\n'), size: 20 });
    const blobs = await keysOf(harness.store, `repos/${repositoryId}/blobs/`);
    expect(blobs).toEqual([...new Set(Object.values(manifest.files).map((entry) => `repos/${repositoryId}/blobs/${entry.sha}`))].sort());
    // A symlink's blob is its target: nothing outside the repository was read.
    expect((await readStored(harness.store, `repos/${repositoryId}/blobs/${blobSha('/etc/passwd')}`)).toString()).toBe('/etc/passwd');

    const read = async (filePath: string, commitSha?: string) =>
      (await harness.client.request(RepositoryFileDocument, { id, path: filePath, ...(commitSha ? { commitSha } : {}) })).repository!.file;
    expect(await read('src/a.ts')).toMatchObject({ encoding: 'utf8', content: 'export const a = 1;\n', blobSha: blobSha('export const a = 1;\n'), commitSha: head });
    expect(await read('passwd-link')).toMatchObject({ encoding: 'utf8', content: '/etc/passwd' });
    expect(await read('bin/data.bin')).toMatchObject({ encoding: 'base64', content: Buffer.from('binary\u0000content\n').toString('base64') });
    expect(await read('missing.txt')).toBeNull();
    await expect(harness.client.request(RepositoryFileDocument, { id, path: '../etc/passwd' })).rejects.toThrow(/relative path/);
    await expect(harness.client.request(RepositoryFileDocument, { id, path: 'README.md', commitSha: 'HEAD' })).rejects.toThrow(/commit id/);
  });

  it('uploads one blob and one manifest for a one-file commit; the same commit again uploads nothing', async () => {
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, 'incremental', {
      'a.txt': 'a\n',
      'b.txt': 'b\n',
      'c/d.txt': 'd\n',
    });
    const first = await upstream.head();
    const prefix = `repos/${repositoryId}/`;
    const before = await keysOf(harness.store, prefix);
    const second = await upstream.commit({ 'b.txt': 'b, changed\n' });
    await syncTo(harness, id, second);
    const after = await keysOf(harness.store, prefix);
    expect(after.filter((key) => !before.includes(key)).sort()).toEqual(
      [`${prefix}${second}.tar.gz`, `${prefix}blobs/${blobSha('b, changed\n')}`, `${prefix}manifests/${second}.json`].sort(),
    );

    // A forced sync of the same commit archives nothing again.
    const snapshotBefore = (await archiveState(harness, id)).snapshots.edges[0]!.node;
    await syncTo(harness, id, second, true);
    expect(await keysOf(harness.store, prefix)).toEqual(after);
    expect((await archiveState(harness, id)).snapshots.edges[0]!.node).toEqual(snapshotBefore);

    // The older commit's files are read from its artifacts.
    const old = (await harness.client.request(RepositoryFileDocument, { id, path: 'b.txt', commitSha: first })).repository!.file;
    expect(old).toMatchObject({ content: 'b\n', commitSha: first });
  });

  it('does not upload a snapshot key that already exists, only records it again', async () => {
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, 'idempotent', { 'a.txt': 'one\n' });
    const head = await upstream.head();
    const key = `repos/${repositoryId}/${head}.tar.gz`;
    const before = await readStored(harness.store, key);
    const recorded = (await archiveState(harness, id)).snapshots.edges[0]!.node;
    // As if the process stopped after the upload but before recording it.
    await harness.testApp.app.db.prisma.snapshot.deleteMany({ where: { repositoryId } });
    await harness.testApp.app.db.prisma.repository.update({ where: { id: repositoryId }, data: { s3ArchiveUrl: null } });
    const listed = async () => {
      for await (const object of harness.store.list(key)) if (object.key === key) return object.lastModified.getTime();
      return null;
    };
    const modified = await listed();
    await syncTo(harness, id, head, true);
    const state = await archiveState(harness, id);
    expect(state.archiveUrl).toBe(harness.store.urlOf(key));
    expect(state.snapshots.edges.map((edge) => edge.node.sha256)).toEqual([recorded.sha256]);
    expect(await listed()).toBe(modified);
    expect((await readStored(harness.store, key)).equals(before)).toBe(true);
  });

  it('keeps the newest snapshots and collects manifests and blobs no kept manifest names', async () => {
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, 'retention', { 'kept.txt': 'always\n', 'moving.txt': 'v0\n' });
    const heads = [await upstream.head()];
    for (let version = 1; version <= 4; version++) {
      heads.push(await upstream.commit({ 'moving.txt': `v${version}\n` }));
      await syncTo(harness, id, heads.at(-1)!);
    }
    const kept = heads.slice(-3);
    const prefix = `repos/${repositoryId}/`;
    const state = await archiveState(harness, id);
    expect(state.snapshots.edges.map((edge) => edge.node.commitSha)).toEqual([...kept].reverse());
    const keys = await keysOf(harness.store, prefix);
    expect(keys.filter((key) => key.endsWith('.tar.gz')).sort()).toEqual(kept.map((sha) => `${prefix}${sha}.tar.gz`).sort());
    expect(keys.filter((key) => key.includes('/manifests/')).sort()).toEqual(kept.map((sha) => `${prefix}manifests/${sha}.json`).sort());
    const liveBlobs = ['always\n', 'v2\n', 'v3\n', 'v4\n'].map((content) => `${prefix}blobs/${blobSha(content)}`);
    expect(keys.filter((key) => key.includes('/blobs/')).sort()).toEqual(liveBlobs.sort());
  });

  it('removeRepository deletes every archived object of the repository', async () => {
    const { id, dbId: repositoryId } = await addSynced(harness, 'removed', { 'a.txt': 'gone soon\n' });
    expect((await keysOf(harness.store, `repos/${repositoryId}/`)).length).toBeGreaterThan(0);
    await harness.client.request(RemoveRepositoryDocument, { repositoryId: id });
    expect(await keysOf(harness.store, `repos/${repositoryId}/`)).toEqual([]);
  });
});

describe('archive policies', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({});
  });

  afterAll(async () => {
    await harness?.testApp.close();
  });

  it('NONE archives nothing; switching to EACH_SYNC archives the unchanged head at the next check; DAILY archives once a day', async () => {
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, 'policy', { 'a.txt': '1\n' }, 'NONE');
    expect(await keysOf(harness.store, `repos/${repositoryId}/`)).toEqual([]);
    expect((await archiveState(harness, id)).archivePolicy).toBe('NONE');

    const updated = await harness.client.request(UpdateRepositoryDocument, { input: { repositoryId: id, archivePolicy: 'DAILY' } });
    expect(updated.updateRepository.repository.archivePolicy).toBe('DAILY');
    await syncTo(harness, id, await upstream.head());
    const daily = await archiveState(harness, id);
    expect(daily.snapshots.edges.map((edge) => edge.node.commitSha)).toEqual([await upstream.head()]);
    expect(daily.syncRuns.edges[0]!.node.status).toBe('SKIPPED');

    // Within the day, a new commit is synced but not archived; archiveUrl keeps the newest archive.
    const second = await upstream.commit({ 'a.txt': '2\n' });
    await syncTo(harness, id, second);
    const later = await archiveState(harness, id);
    expect(later.snapshots.edges).toHaveLength(1);
    expect(later.archiveUrl).toBe(daily.archiveUrl);

    await harness.client.request(UpdateRepositoryDocument, { input: { repositoryId: id, archivePolicy: 'EACH_SYNC' } });
    await syncTo(harness, id, second);
    expect((await archiveState(harness, id)).snapshots.edges.map((edge) => edge.node.commitSha)).toEqual([second, daily.lastCommitSha]);
  });

  it('refuses a policy change for another tenant\'s repository as NOT_FOUND', async () => {
    const { id } = await addSynced(harness, 'foreign', { 'a.txt': 'x\n' });
    const other = await harness.testApp.client('someone-else');
    await expect(other.request(UpdateRepositoryDocument, { input: { repositoryId: id, archivePolicy: 'NONE' } })).rejects.toThrow(/not found/i);
    expect((await archiveState(harness, id)).archivePolicy).toBe('EACH_SYNC');
  });
});

describe('eviction and restore', () => {
  let harness: Harness;

  beforeAll(async () => {
    // A one-byte budget: every archived copy is evicted as soon as its run ends.
    harness = await startHarness({ REPOLENS_LOCAL_BUDGET_BYTES: '1' });
  });

  afterAll(async () => {
    await harness?.testApp.close();
  });

  async function waitEvicted(id: string): Promise<void> {
    await harness.testApp.app.evictor.idle();
    const deadline = Date.now() + 10_000;
    while ((await archiveState(harness, id)).localCopy?.present) {
      if (Date.now() > deadline) throw new Error('the copy was not evicted');
      await harness.testApp.app.evictor.idle();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('evicts an archived copy, restores it from the snapshot at the next sync and fetches only the new commit', async () => {
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, 'evicted', { 'a.txt': 'a\n', 'big/b.txt': 'b\n'.repeat(1000) });
    await waitEvicted(id);
    expect((await archiveState(harness, id)).localCopy).toEqual({ present: false, bytes: null, lastUsedAt: expect.any(String) });
    // Reads are served from the archived artifacts meanwhile.
    const file = (await harness.client.request(RepositoryFileDocument, { id, path: 'a.txt' })).repository!.file;
    expect(file).toMatchObject({ content: 'a\n' });

    const next = await upstream.commit({ 'a.txt': 'a, changed\n' });
    await syncTo(harness, id, next);
    const run = await harness.testApp.app.db.prisma.syncRun.findFirstOrThrow({ where: { repositoryId }, orderBy: { queuedAt: 'desc' } });
    const phases = (run.phaseLog as { phase: string }[]).map((entry) => entry.phase);
    expect(phases).toContain('RESTORING');
    expect(phases).not.toContain('CLONING');
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'INCREMENTAL', fromSha: expect.any(String), toSha: next, filesChanged: 1 });
    // Evicted again once archived; the restored copy was a complete repository at the new head.
    await waitEvicted(id);
    expect((await archiveState(harness, id)).snapshots.edges[0]!.node.commitSha).toBe(next);
  });

  const unusable: { name: string; damage: (key: string) => Promise<unknown>; reason: string }[] = [
    { name: 'corrupt', damage: (key) => harness.store.put(key, Buffer.from('this is not a gzip stream')), reason: 'incorrect header check' },
    { name: 'missing from the store', damage: (key) => harness.store.delete([key]), reason: 'missing from the archive store' },
  ];

  it.each(unusable)('clones (FULL) when the snapshot is $name, and says why', async ({ name, damage, reason }) => {
    const { upstream, id, dbId: repositoryId } = await addSynced(harness, `unusable-${name.split(' ')[0]}`, { 'a.txt': 'a\n' });
    await waitEvicted(id);
    await damage(`repos/${repositoryId}/${await upstream.head()}.tar.gz`);
    const next = await upstream.commit({ 'a.txt': 'b\n' });
    await syncTo(harness, id, next);
    const run = await harness.testApp.app.db.prisma.syncRun.findFirstOrThrow({ where: { repositoryId }, orderBy: { queuedAt: 'desc' } });
    const log = run.phaseLog as { phase: string; message?: string }[];
    const restoring = log.find((entry) => entry.phase === 'RESTORING' && entry.message?.includes('cloning instead'));
    expect(restoring?.message).toContain(reason);
    expect(run).toMatchObject({ status: 'SUCCEEDED', strategy: 'FULL', toSha: next });
  });

  it('never evicts a copy that is not archived', async () => {
    const { id, dbId: repositoryId } = await addSynced(harness, 'unarchived', { 'a.txt': 'kept\n' }, 'NONE');
    await harness.testApp.app.evictor.pass();
    expect((await archiveState(harness, id)).localCopy?.present).toBe(true);
    expect(await readFile(path.join(harness.testApp.dataDir, 'repos', repositoryId, 'a.txt'), 'utf8')).toBe('kept\n');
    expect(await git(['status', '--porcelain'], { cwd: path.join(harness.testApp.dataDir, 'repos', repositoryId) })).toBe('');
  });
});

describe('eviction by idle age', () => {
  it('evicts an archived copy unused for longer than REPOLENS_LOCAL_MAX_IDLE_MS, and keeps recently used ones', async () => {
    const harness = await startHarness({ REPOLENS_LOCAL_MAX_IDLE_MS: '60000' });
    try {
      const { id, dbId: repositoryId } = await addSynced(harness, 'idle', { 'a.txt': 'idle\n' });
      const app = harness.testApp.app;
      await app.evictor.idle();
      expect(await app.evictor.pass()).toEqual([]);
      expect((await archiveState(harness, id)).localCopy?.present).toBe(true);
      // Two minutes later the copy has been idle for longer than a minute.
      expect(await app.evictor.pass(Date.now() + 120_000)).toEqual([repositoryId]);
      expect((await archiveState(harness, id)).localCopy?.present).toBe(false);
    } finally {
      await harness.testApp.close();
    }
  });
});

describe('S3 failures', () => {
  const failures: { name: string; env: () => Promise<Record<string, string>>; message: RegExp }[] = [
    { name: 'a missing bucket', env: async () => ({ ...(await s3TestEnv()), S3_BUCKET: 'no-such-bucket-here' }), message: /no-such-bucket-here.*does not exist/ },
    {
      name: 'refused credentials',
      env: async () => ({ ...(await s3TestEnv()), AWS_SECRET_ACCESS_KEY: 'wrong-secret-value' }),
      message: /credentials were refused|access denied/,
    },
    { name: 'a refused connection', env: async () => ({ ...(await s3TestEnv()), S3_ENDPOINT: 'http://127.0.0.1:9' }), message: /connection refused/ },
  ];

  it.each(failures)('$name is reported as the run\'s warning and the sync still succeeds', async ({ env, message }) => {
    const harness = await startHarness(await env());
    try {
      const upstream = await createUpstream(server, `s3-failure-${Math.random().toString(36).slice(2)}`);
      const { addRepository } = await harness.client.request(AddRepositoryDocument, { input: { projectId: harness.projectId, url: upstream.url } });
      const id = addRepository.repository.id;
      await waitForRepository(harness.client, id, (state) => state.status === 'SYNCED');
      await waitForIdle(harness.testApp.app, dbId(id));
      const state = await archiveState(harness, id);
      expect(state.lastCommitSha).toBe(await upstream.head());
      expect(state.archiveUrl).toBeNull();
      expect(state.snapshots.edges).toEqual([]);
      const run = state.syncRuns.edges[0]!.node;
      expect(run.status).toBe('SUCCEEDED');
      expect(run.warning).toMatch(message);
      expect(run.warning).not.toContain('wrong-secret-value');
      expect(harness.testApp.logs.join('\n')).not.toContain('wrong-secret-value');
    } finally {
      await harness.testApp.close();
    }
  });
});
