import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedSharedBuffers } from '../src/storage/database.js';
import { AddRepositoryDocument, CreateProjectDocument, RepositoriesDocument, SyncRepositoryDocument } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository } from './support/app.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { deliver, githubHeaders, loadFixture, retarget } from './support/webhooks.js';

const dbId = (globalId: string) => Buffer.from(globalId, 'base64url').toString().split(':')[1]!;

describe('embedded database (PGlite, the zero-configuration default)', () => {
  let server: GitServer;
  beforeAll(async () => {
    server = await startGitServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('syncs a repository and keeps its state across a restart', async () => {
    const first = await startTestApp({ embedded: true });
    expect(first.app.db.kind).toBe('embedded');
    // Sized for one process on a laptop, not PostgreSQL's server default of 128MB.
    expect(await first.app.db.prisma.$queryRaw`SHOW shared_buffers`).toEqual([{ shared_buffers: embeddedSharedBuffers }]);
    const upstream = await createUpstream(server, 'embedded', { files: { 'a.txt': 'a\n' } });
    const client = await first.client();
    const projectId = (await client.request(CreateProjectDocument, { name: 'local' })).createProject.project.id;
    const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
    const synced = await waitForRepository(client, addRepository.repository.id, (state) => state.status === 'SYNCED');
    expect(synced.lastCommitSha).toBe(await upstream.head());
    await waitForIdle(first.app, dbId(synced.id));
    await first.close({ keep: true });

    const second = await startTestApp({ embedded: true, dataDir: first.dataDir });
    try {
      const again = await second.client('someone-else');
      const listed = await again.request(RepositoriesDocument, {});
      expect(listed.repositories.edges).toEqual([]);
      const acme = await second.client('acme');
      const repositories = (await acme.request(RepositoriesDocument, {})).repositories.edges;
      expect(repositories.map((edge) => edge.node.id)).toEqual([synced.id]);
      const next = await upstream.commit({ 'b.txt': 'b\n' });
      await acme.request(SyncRepositoryDocument, { repositoryId: synced.id });
      const updated = await waitForRepository(acme, synced.id, (state) => state.lastCommitSha === next);
      expect(updated.syncRuns.edges[0]!.node).toMatchObject({ strategy: 'INCREMENTAL', status: 'SUCCEEDED' });
    } finally {
      await second.close({ keep: true });
      await rm(first.dataDir, { recursive: true, force: true });
    }
  });

  it('a signed webhook push is stored (receivedAt in UTC, as Prisma writes it) and synced', async () => {
    const testApp = await startTestApp({ embedded: true });
    try {
      const upstream = await createUpstream(server, 'embedded-hook', { files: { 'a.txt': 'a\n' }, branch: 'master' });
      const client = await testApp.client();
      const projectId = (await client.request(CreateProjectDocument, { name: 'local' })).createProject.project.id;
      const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } });
      const id = addRepository.repository.id;
      await waitForRepository(client, id, (state) => state.status === 'SYNCED');
      const next = await upstream.commit({ 'b.txt': 'b\n' });
      const raw = await loadFixture('github-push-commits-drone.json');
      const published = JSON.parse(raw.toString('utf8')) as { after: string };
      const body = retarget(raw, { url: upstream.url, name: upstream.url.replace(/^https?:\/\/[^/]+\//, '').replace(/\.git$/, '') }, { [published.after]: next });
      const sent = Date.now();
      expect(await deliver(testApp.url, 'github', githubHeaders('push', body, addRepository.webhook.secret!), body)).toEqual({ status: 202, body: { accepted: 1 } });
      const [stored] = await testApp.app.db.prisma.webhookDelivery.findMany({ where: { repositoryId: dbId(id) } });
      expect(Math.abs(stored!.receivedAt.getTime() - sent)).toBeLessThan(5_000);
      expect((await waitForRepository(client, id, (state) => state.lastCommitSha === next)).status).toBe('SYNCED');
      await waitForIdle(testApp.app, dbId(id));
    } finally {
      await testApp.close();
    }
  });
});
