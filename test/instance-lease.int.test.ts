import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/storage/database.js';
import { createTestDatabase } from './support/database.js';

// SPEC §1 "Several processes": recovery re-queues only the runs of instances that stopped. An
// instance is alive while its session advisory lock is held; these tests use the real locks.
describe('instance leases on PostgreSQL', { timeout: 30_000 }, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let first: Database;
  let second: Database;
  let admin: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    first = await openDatabase({ databaseUrl: database.url, dataDir: '/nonexistent' });
    second = await openDatabase({ databaseUrl: database.url, dataDir: '/nonexistent' });
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin.end();
    await first.close();
    await second.close();
    await database.drop();
  });

  /** Backends holding the advisory lock of an instance id (pg_locks shows the keys as unsigned oids). */
  async function holders(instanceId: string): Promise<number[]> {
    const key = createHash('sha256').update(instanceId).digest().readInt32BE(0) >>> 0;
    const { rows } = await admin.query<{ pid: number }>(
      "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2",
      [0x52504c53, key],
    );
    return rows.map((row) => row.pid);
  }

  it('a live instance is alive to others, an unknown or released one is not; a dropped connection takes the lock again', async () => {
    const alpha = await first.leaseInstance('alpha-instance');
    const beta = await second.leaseInstance('beta-instance');
    expect(await beta.isAlive('alpha-instance')).toBe(true);
    expect(await alpha.isAlive('beta-instance')).toBe(true);
    expect(await alpha.isAlive('alpha-instance')).toBe(true);
    expect(await beta.isAlive('an-instance-that-died')).toBe(false);
    // Asking does not take the lock away from its holder.
    const [holder] = await holders('alpha-instance');
    expect(holder).toBeDefined();
    expect(await holders('alpha-instance')).toEqual([holder]);

    // The server drops alpha's lease connection (a restart, a network cut): alpha takes its lock again.
    await admin.query('SELECT pg_terminate_backend($1)', [holder]);
    const deadline = Date.now() + 10_000;
    let now: number[] = [];
    while (Date.now() < deadline) {
      now = await holders('alpha-instance');
      if (now.length === 1 && now[0] !== holder) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(holder);
    expect(await beta.isAlive('alpha-instance')).toBe(true);

    await alpha.release();
    expect(await beta.isAlive('alpha-instance')).toBe(false);
    expect(await holders('alpha-instance')).toEqual([]);
    await beta.release();
  });
});
