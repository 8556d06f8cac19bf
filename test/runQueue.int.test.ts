import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/storage/database.js';
import { recordRefs } from '../src/sync/refs.js';
import { RunQueue } from '../src/sync/runQueue.js';
import { createTestDatabase } from './support/database.js';

// The hot path of a sync writes with hand-written statements (one round trip per phase instead
// of several Prisma calls): what they return and store must be what Prisma itself reads back.
describe('run queue and refs statements against PostgreSQL', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let tenantId: string;
  let projectId: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ databaseUrl: database.url, dataDir: '/nonexistent' });
    const tenant = await db.prisma.tenant.create({ data: { name: 'queue' } });
    tenantId = tenant.id;
    projectId = (await db.prisma.project.create({ data: { tenantId, name: 'queue' } })).id;
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  async function repository(name: string) {
    return db.prisma.repository.create({
      data: {
        tenantId,
        projectId,
        provider: 'GIT',
        name,
        url: `https://git.example.com/${name}.git`,
        host: 'git.example.com',
        branch: 'main',
        status: 'OUTDATED',
        lastCommitSha: 'a'.repeat(40),
        lastSyncedAt: new Date('2026-01-02T03:04:05.678Z'),
        nextCheckAt: new Date('2026-12-31T23:59:59.001Z'),
        lastChangedAt: new Date('2025-06-07T08:09:10.111Z'),
        consecutiveFailures: 2,
      },
    });
  }

  it('claim moves the run to RUNNING/CHECKING and returns exactly the rows Prisma reads', async () => {
    const queue = new RunQueue(db.prisma);
    const repo = await repository('claimed');
    const { run } = await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'MANUAL' }, 'OUTDATED');
    const claimed = await queue.claim(run.id, 'instance-1');
    expect(claimed).not.toBeNull();
    const storedRun = await db.prisma.syncRun.findUniqueOrThrow({ where: { id: run.id } });
    const storedRepository = await db.prisma.repository.findUniqueOrThrow({ where: { id: repo.id } });
    expect(claimed!.run).toEqual(storedRun);
    expect(claimed!.repository).toEqual(storedRepository);
    expect(claimed!.repository.lastSyncedAt).toEqual(new Date('2026-01-02T03:04:05.678Z'));
    expect(storedRun).toMatchObject({ status: 'RUNNING', activeSlot: 'RUNNING', phase: 'CHECKING', claimedBy: 'instance-1', fromSha: 'a'.repeat(40) });
    expect(storedRun.startedAt).toBeInstanceOf(Date);
    expect(Math.abs(storedRun.startedAt!.getTime() - Date.now())).toBeLessThan(60_000);
    expect(storedRun.phaseLog).toEqual([
      { phase: 'QUEUED', status: 'OUTDATED', at: expect.any(String) },
      { phase: 'CHECKING', status: 'OUTDATED', at: expect.any(String) },
    ]);
  });

  it('claim also reads the commits metadata and graph were indexed at (null before the first index)', async () => {
    const queue = new RunQueue(db.prisma);
    const repo = await repository('indexed');
    const first = (await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'MANUAL' })).run;
    expect((await queue.claim(first.id, 'a'))!.indexed).toBeNull();
    await db.prisma.syncRun.update({ where: { id: first.id }, data: { status: 'SUCCEEDED', activeSlot: null } });
    await db.prisma.repositoryMetadata.create({
      data: { repositoryId: repo.id, commitSha: 'b'.repeat(40), graphSha: 'c'.repeat(40), languages: {}, fileCount: 1, totalBytes: 1, linesOfCode: 1 },
    });
    const second = (await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'SCHEDULED' })).run;
    expect((await queue.claim(second.id, 'a'))!.indexed).toEqual({ commitSha: 'b'.repeat(40), graphSha: 'c'.repeat(40) });
  });

  it('claim gives nothing for a run already taken, or while another run of the repository is running', async () => {
    const queue = new RunQueue(db.prisma);
    const repo = await repository('busy');
    const first = (await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'MANUAL' })).run;
    expect(await queue.claim(first.id, 'a')).not.toBeNull();
    expect(await queue.claim(first.id, 'b')).toBeNull();
    const second = (await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'SCHEDULED' })).run;
    expect(await queue.claim(second.id, 'b')).toBeNull();
    expect(await db.prisma.syncRun.findUniqueOrThrow({ where: { id: second.id } })).toMatchObject({ status: 'QUEUED', activeSlot: 'QUEUED', claimedBy: null });
  });

  it('a claim made while the previous run is ending starts after that run finished', async () => {
    const queue = new RunQueue(db.prisma);
    const repo = await repository('ending');
    const first = (await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'MANUAL' })).run;
    expect(await queue.claim(first.id, 'a')).not.toBeNull();
    const second = (await queue.enqueue({ repositoryId: repo.id, tenantId, trigger: 'WEBHOOK' })).run;
    let released!: () => void;
    const release = new Promise<void>((resolve) => (released = resolve));
    let ending!: () => void;
    const ended = new Promise<void>((resolve) => (ending = resolve));
    let finishedAt!: Date;
    // The first run's final statement, committed only after the second run's claim was sent.
    const finish = db.prisma.$transaction(async (tx) => {
      await tx.syncRun.update({ where: { id: first.id }, data: { status: 'SUCCEEDED', activeSlot: null } });
      ending();
      await release;
      finishedAt = new Date();
      await tx.syncRun.update({ where: { id: first.id }, data: { finishedAt } });
    }, { timeout: 20_000 });
    await ended;
    const claiming = queue.claim(second.id, 'a');
    await new Promise((resolve) => setTimeout(resolve, 300));
    released();
    await finish;
    const claimed = await claiming;
    expect(claimed).not.toBeNull();
    expect(claimed!.run.startedAt!.getTime()).toBeGreaterThanOrEqual(finishedAt.getTime());
    expect(new Date((claimed!.run.phaseLog as { at: string }[]).at(-1)!.at).getTime()).toBeGreaterThanOrEqual(finishedAt.getTime());
  });

  it('recordRefs makes the Ref rows equal to the listing: new, moved and vanished refs; an unchanged listing writes nothing', async () => {
    const repo = await repository('refs');
    const read = async () =>
      (await db.prisma.ref.findMany({ where: { repositoryId: repo.id }, orderBy: [{ kind: 'asc' }, { name: 'asc' }] })).map(({ kind, name, sha }) => ({ kind, name, sha }));
    const listing = (branches: Record<string, string>, tags: Record<string, string>) => ({
      defaultBranch: 'main',
      branches: new Map(Object.entries(branches)),
      tags: new Map(Object.entries(tags)),
    });
    const digest = async () => (await db.prisma.repository.findUniqueOrThrow({ where: { id: repo.id } })).refsDigest;

    await recordRefs(db.prisma, { id: repo.id, refsDigest: null }, listing({ main: '1'.repeat(40), dev: '2'.repeat(40) }, { v1: '1'.repeat(40) }));
    expect(await read()).toEqual([
      { kind: 'BRANCH', name: 'dev', sha: '2'.repeat(40) },
      { kind: 'BRANCH', name: 'main', sha: '1'.repeat(40) },
      { kind: 'TAG', name: 'v1', sha: '1'.repeat(40) },
    ]);
    const untouched = await db.prisma.ref.findFirstOrThrow({ where: { repositoryId: repo.id, name: 'v1' } });

    await recordRefs(db.prisma, { id: repo.id, refsDigest: await digest() }, listing({ main: '3'.repeat(40), 'feature/x': '4'.repeat(40) }, { v1: '1'.repeat(40) }));
    expect(await read()).toEqual([
      { kind: 'BRANCH', name: 'feature/x', sha: '4'.repeat(40) },
      { kind: 'BRANCH', name: 'main', sha: '3'.repeat(40) },
      { kind: 'TAG', name: 'v1', sha: '1'.repeat(40) },
    ]);
    // A ref that did not move keeps its row.
    expect(await db.prisma.ref.findFirstOrThrow({ where: { repositoryId: repo.id, name: 'v1' } })).toEqual(untouched);

    const stored = await digest();
    const before = await db.prisma.repository.findUniqueOrThrow({ where: { id: repo.id } });
    await recordRefs(db.prisma, { id: repo.id, refsDigest: stored }, listing({ main: '3'.repeat(40), 'feature/x': '4'.repeat(40) }, { v1: '1'.repeat(40) }));
    expect((await db.prisma.repository.findUniqueOrThrow({ where: { id: repo.id } })).updatedAt).toEqual(before.updatedAt);

    await recordRefs(db.prisma, { id: repo.id, refsDigest: stored }, listing({}, {}));
    expect(await read()).toEqual([]);
  });
});
