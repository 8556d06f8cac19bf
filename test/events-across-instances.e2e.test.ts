import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { AddRepositoryDocument, CreateProjectDocument, SyncRepositoryDocument, SyncStatusDocument } from './generated/graphql.js';
import { startTestApp, waitForMembers, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// SPEC §1 "Several processes", issue 8 item 3: two instances on one
// PostgreSQL database; a syncStatus subscriber on instance A sees, live, the
// events of a run that instance B executes. Through Redis (REDIS_URL, the
// CI's Redis) with yoga's Redis event target, and through PostgreSQL
// LISTEN/NOTIFY when no Redis is configured.

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
let server: GitServer;

beforeAll(async () => {
  server = await startGitServer();
});

afterAll(async () => {
  await server?.close();
});

describe.each([
  ['redis', { REDIS_URL: redisUrl }],
  ['postgresql', {}],
] as const)('sync events across instances through %s', (kind, env) => {
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    // One key for both: either may open what the other sealed.
    const shared = { ...env, ENCRYPTION_KEY: randomBytes(32).toString('base64'), REPOLENS_HEARTBEAT_MS: '300', REPOLENS_INSTANCE_TTL_MS: '3000' };
    a = await startTestApp({ env: shared });
    b = await startTestApp({ databaseUrl: a.databaseUrl!, env: shared });
    // NOTIFY is sent once another instance is seen listening (looked at every second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
  });

  afterAll(async () => {
    await b?.close({ keep: true });
    await a?.close();
  });

  it(`a subscriber on one instance sees the run another executes (${kind})`, async () => {
    expect(a.app.eventFanout).toBe(kind);
    expect(b.app.eventFanout).toBe(kind);
    const clientA = await a.client('fanout');
    const clientB = await b.client('fanout');
    const upstream = await createUpstream(server, `fanout/${kind}`);
    const projectId = (await clientB.request(CreateProjectDocument, { name: `fanout-${kind}` })).createProject.project.id;
    const added = await clientB.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
    const globalId = added.addRepository.repository.id;
    const repositoryId = decodeGlobalId(globalId).id;
    await waitForRepository(clientB, globalId, (repository) => repository.status === 'SYNCED');
    await waitForIdle(b.app, repositoryId);

    // The instance that owns the repository executes its runs (affinity); the subscriber is on the other one,
    // and the trigger goes to the subscriber's instance, which tells the owner.
    await waitForMembers([a, b]);
    const [executor, watcher] = a.app.membership.owns(repositoryId) ? [a, b] : [b, a];
    expect(b.app.membership.owner(repositoryId)).toBe(executor.app.instanceId);
    const watcherClient = watcher === a ? clientA : clientB;
    const subscription = watcherClient.subscribe(SyncStatusDocument, { repositoryId: globalId });
    try {
      // The subscription is live once the server has it: give it a moment before the run starts.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const head = await upstream.commit({ 'fanout.txt': `seen on the other instance through ${kind}\n` });
      await watcherClient.request(SyncRepositoryDocument, { repositoryId: globalId });
      const events = await subscription.waitFor((received) => received.some((event) => event.syncStatus.phase === 'DONE'), 30_000);
      const phases = events.map((event) => event.syncStatus.phase);
      expect(phases).toEqual(expect.arrayContaining(['QUEUED', 'CHECKING', 'FETCHING', 'DONE']));
      const done = events.find((event) => event.syncStatus.phase === 'DONE')!.syncStatus;
      expect(done).toMatchObject({ repositoryId: globalId, status: 'SYNCED', commitSha: head });
      expect(new Date(done.at as string).getTime()).toBeGreaterThan(Date.now() - 60_000);
      // The owner executed it: the instance that took the trigger only queued it and relayed the owner's events.
      const run = await executor.app.db.prisma.syncRun.findFirstOrThrow({ where: { repositoryId, trigger: 'MANUAL' }, orderBy: { queuedAt: 'desc' } });
      expect(run.claimedBy).toBe(executor.app.instanceId);
      expect(run.claimedBy).not.toBe(watcher.app.instanceId);
    } finally {
      await subscription.close();
    }
  });
});

describe('one process', () => {
  it('the embedded database keeps its events in the process', async () => {
    const app = await startTestApp({ embedded: true });
    try {
      expect(app.app.eventFanout).toBe('local');
    } finally {
      await app.close();
    }
  });
});
