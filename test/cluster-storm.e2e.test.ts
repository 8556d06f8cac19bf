import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { AddRepositoryDocument, CreateProjectDocument, RemoveRepositoryDocument } from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForMembers, waitForRepository, type TestApp } from './support/app.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { deliver, githubHeaders, loadFixture, retarget } from './support/webhooks.js';
import { exists } from './support/wait.js';

// SPEC §1 "Several processes" (issue 8, item 5 in part): three instances on
// one PostgreSQL database, each with its own disk. A storm of pushes sent
// round-robin to all three coalesces in the database: at most 2 fetches,
// every run executed by one instance, and the repository ends SYNCED at the
// newest SHA.

let server: GitServer;
const apps: TestApp[] = [];

beforeAll(async () => {
  server = await startGitServer();
  const env = { ENCRYPTION_KEY: randomBytes(32).toString('base64'), REPOLENS_HEARTBEAT_MS: '300', REPOLENS_INSTANCE_TTL_MS: '3000' };
  apps.push(await startTestApp({ env }));
  for (let index = 1; index < 3; index++) apps.push(await startTestApp({ databaseUrl: apps[0]!.databaseUrl!, env }));
});

afterAll(async () => {
  for (const app of apps.slice(1)) await app.close({ keep: true });
  await apps[0]?.close();
  await server?.close();
});

describe('three instances on one database', { timeout: 120_000 }, () => {
  it('a storm of 300 pushes through all three: at most 2 fetches, each run executed once, SYNCED at the newest SHA', async () => {
    // One after the other: the first creates the tenant.
    const clients = [];
    for (const app of apps) clients.push(await app.client('cluster'));
    const upstream = await createUpstream(server, 'cluster/storm', { files: { 'README.md': '# storm\n' }, branch: 'master' });
    const projectId = (await clients[0]!.request(CreateProjectDocument, { name: 'cluster' })).createProject.project.id;
    const { addRepository } = await clients[0]!.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
    const globalId = addRepository.repository.id;
    const repositoryId = decodeGlobalId(globalId).id;
    const secret = addRepository.webhook.secret!;
    await waitForRepository(clients[0]!, globalId, (state) => state.status === 'SYNCED');
    await waitForIdle(apps[0]!.app, repositoryId);

    const raw = await loadFixture('github-push-commits-drone.json');
    const publishedAfter = (JSON.parse(raw.toString('utf8')) as { after: string }).after;
    const target = { url: upstream.url, name: 'cluster/storm' };
    const shas: string[] = [];
    for (let index = 0; index < 15; index++) shas.push(await upstream.commit({ 'storm.txt': `storm ${index}\n` }));
    const newest = shas.at(-1)!;
    server.resetStats();
    const runsBefore = await apps[0]!.app.db.prisma.syncRun.count({ where: { repositoryId } });

    const bodies = Array.from({ length: 300 }, (_, index) => retarget(raw, target, { [publishedAfter]: shas[Math.min(shas.length - 1, Math.floor((index * shas.length) / 300))]! }));
    let next = 0;
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        while (next < bodies.length) {
          const index = next++;
          const body = bodies[index]!;
          statuses.push((await deliver(apps[index % 3]!.url, 'github', githubHeaders('push', body, secret), body)).status);
        }
      }),
    );
    expect(statuses.filter((status) => status !== 202)).toEqual([]);

    await waitForRepository(clients[1]!, globalId, (state) => state.status === 'SYNCED' && state.lastCommitSha === newest, 60_000);
    for (const app of apps) await waitForIdle(app.app, repositoryId);
    // Every delivery was stored once, by whichever instance took it.
    expect(await apps[0]!.app.db.prisma.webhookDelivery.count({ where: { repositoryId } })).toBe(300);
    expect(server.repoStats('cluster/storm').fetches).toBeLessThanOrEqual(2);
    const runs = await apps[0]!.app.db.prisma.syncRun.findMany({ where: { repositoryId }, orderBy: { queuedAt: 'asc' }, skip: runsBefore });
    const executed = runs.filter((run) => run.status === 'SUCCEEDED' || run.status === 'SKIPPED');
    expect(executed.length).toBeGreaterThanOrEqual(1);
    expect(executed.length).toBeLessThanOrEqual(2);
    expect(runs.filter((run) => run.status === 'QUEUED' || run.status === 'RUNNING')).toEqual([]);
    // Each executed run names the one instance that ran it.
    const instances = new Set(apps.map((app) => app.app.instanceId));
    for (const run of executed) expect(instances.has(run.claimedBy!)).toBe(true);
  });

  it('a repository removed through an instance that does not own it: the owner deletes its copy at its sweep for stray copies', async () => {
    await waitForMembers(apps);
    const client = await apps[0]!.client('cluster');
    const upstream = await createUpstream(server, 'cluster/stray', { files: { 'README.md': '# stray\n' } });
    const projectId = (await client.request(CreateProjectDocument, { name: 'cluster-stray' })).createProject.project.id;
    const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
    const globalId = addRepository.repository.id;
    const repositoryId = decodeGlobalId(globalId).id;
    await waitForRepository(client, globalId, (state) => state.status === 'SYNCED');
    const owner = apps.find((app) => app.app.membership.owns(repositoryId))!;
    const remover = apps.find((app) => app !== owner)!;
    const copy = owner.app.services.copies.pathOf(repositoryId);
    expect(await exists(copy)).toBe(true);
    // A folder that is not a repository's copy is never touched.
    const foreign = path.join(owner.app.services.copies.reposDir, 'not-a-repository');
    await mkdir(foreign, { recursive: true });

    await (await remover.client('cluster')).request(RemoveRepositoryDocument, { repositoryId: globalId });
    // The remover cleaned its own disk only: the owner's copy is still there…
    expect(await exists(copy)).toBe(true);
    // …until the owner's sweep (at start and every minute) sees that its repository is gone.
    expect(await owner.app.evictor.removeStray()).toEqual([repositoryId]);
    expect(await exists(copy)).toBe(false);
    expect(await exists(foreign)).toBe(true);
    // Copies of repositories that exist stay.
    for (const app of apps) expect(await app.app.evictor.removeStray()).toEqual([]);
    await rm(foreign, { recursive: true });
  });

  it('the scheduler runs on every instance, yet each due check is claimed once: three passes at once queue one SCHEDULED run per repository', async () => {
    await waitForMembers(apps);
    const client = await apps[0]!.client('cluster');
    const projectId = (await client.request(CreateProjectDocument, { name: 'cluster-scheduler' })).createProject.project.id;
    const ids: string[] = [];
    for (let index = 0; index < 8; index++) {
      const upstream = await createUpstream(server, `cluster/scheduled-${index}`, { files: { 'README.md': `# scheduled ${index}\n` } });
      const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
      ids.push(decodeGlobalId(addRepository.repository.id).id);
    }
    const prisma = apps[0]!.app.db.prisma;
    for (const id of ids) for (const app of apps) await waitForIdle(app.app, id);
    // Every one of them is due now; each instance runs a pass at the same moment.
    await prisma.repository.updateMany({ where: { id: { in: ids } }, data: { nextCheckAt: new Date(Date.now() - 1_000) } });
    const queued = await Promise.all(apps.map((app) => app.app.scheduler.pass()));
    expect(queued.reduce((total, count) => total + count, 0)).toBe(ids.length);
    for (const id of ids) for (const app of apps) await waitForIdle(app.app, id);
    const scheduled = await prisma.syncRun.groupBy({ by: ['repositoryId'], where: { repositoryId: { in: ids }, trigger: 'SCHEDULED' }, _count: { _all: true } });
    expect(scheduled).toHaveLength(ids.length);
    for (const row of scheduled) expect(row._count._all).toBe(1);
    // …and each ran on the instance that owns its repository.
    const runs = await prisma.syncRun.findMany({ where: { repositoryId: { in: ids }, trigger: 'SCHEDULED' } });
    for (const run of runs) expect(run.claimedBy).toBe(apps[0]!.app.membership.owner(run.repositoryId));
  });
});

