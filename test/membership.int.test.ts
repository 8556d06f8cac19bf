import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/storage/database.js';
import { Membership, rendezvousOwner } from '../src/sync/membership.js';
import { createTestDatabase } from './support/database.js';

// SPEC §1 "Several processes", issue 8 item 2: repositories are assigned to
// live instances by rendezvous hashing; membership is the Instance table's
// heartbeats plus each instance's advisory-lock lease, on a real PostgreSQL.

const keys = Array.from({ length: 3000 }, (_, index) => `00000000-0000-4000-8000-${index.toString(16).padStart(12, '0')}`);

function assignment(members: string[]): Map<string, string> {
  return new Map(keys.map((key) => [key, rendezvousOwner(key, members)]));
}

describe('rendezvous assignment', () => {
  it('a member that joins takes only keys it now owns; when it leaves every key goes back where it was', () => {
    const two = assignment(['instance-a', 'instance-b']);
    const three = assignment(['instance-a', 'instance-b', 'instance-c']);
    const moved = keys.filter((key) => two.get(key) !== three.get(key));
    // Every key that moved went to the newcomer; none moved between the two that stayed.
    expect(moved.every((key) => three.get(key) === 'instance-c')).toBe(true);
    // Its share: about a third (3000 keys: well within 25–42 %).
    expect(moved.length).toBeGreaterThan(750);
    expect(moved.length).toBeLessThan(1250);
    // The order members are listed in does not matter.
    expect(assignment(['instance-c', 'instance-a', 'instance-b'])).toEqual(three);
    // Leaving: back to the same two-member assignment, exactly.
    expect(assignment(['instance-b', 'instance-a'])).toEqual(two);
    // One that leaves gives its keys to the others and nothing else moves.
    const withoutA = assignment(['instance-b', 'instance-c']);
    for (const key of keys) if (three.get(key) !== 'instance-a') expect(withoutA.get(key)).toBe(three.get(key));
  });

  it('spreads keys evenly and refuses an empty membership', () => {
    const counts = new Map<string, number>();
    for (const owner of assignment(['x-1', 'x-2', 'x-3']).values()) counts.set(owner, (counts.get(owner) ?? 0) + 1);
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(850);
      expect(count).toBeLessThan(1150);
    }
    expect(() => rendezvousOwner('key', [])).toThrow(/no members/);
  });
});

describe('membership on PostgreSQL', { timeout: 30_000 }, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let first: Database;
  let second: Database;
  let admin: pg.Client;
  const logger = pino({ level: 'silent' });
  const options = { heartbeatMs: 60_000, ttlMs: 3_000 };

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

  async function rows(): Promise<string[]> {
    return (await admin.query<{ id: string }>('SELECT id FROM "Instance" ORDER BY id')).rows.map((row) => row.id);
  }

  it('members see each other; a stopped one leaves; a killed one (lease lost) leaves at the next heartbeat; a silent one after the TTL', async () => {
    const alphaLease = await first.leaseInstance('alpha');
    const betaLease = await second.leaseInstance('beta');
    const alpha = new Membership(first.prisma, alphaLease, 'alpha', logger, options);
    const beta = new Membership(second.prisma, betaLease, 'beta', logger, options);
    const views: string[][] = [];
    alpha.onHeartbeat = (view) => {
      if (view.joined.length || view.left.length) views.push([...view.joined.map((id) => `+${id}`), ...view.left.map((id) => `-${id}`)]);
    };
    await alpha.start();
    expect(alpha.live()).toEqual(['alpha']);
    expect(alpha.owns(keys[0]!)).toBe(true);
    await beta.start();
    expect(beta.live()).toEqual(['alpha', 'beta']);
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha', 'beta']);
    expect(views).toEqual([['+beta']]);
    // Both agree on every owner, and exactly one of them owns each key.
    for (const key of keys.slice(0, 200)) {
      expect(alpha.owner(key)).toBe(beta.owner(key));
      expect(Number(alpha.owns(key)) + Number(beta.owns(key))).toBe(1);
    }

    // Stopped cleanly: its row is gone, the other sees it leave at its next heartbeat.
    await beta.stop();
    expect(await rows()).toEqual(['alpha']);
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha']);
    expect(views.at(-1)).toEqual(['-beta']);

    // Killed: the row stays with a fresh heartbeat, but the lease is gone with the connection.
    const gammaLease = await second.leaseInstance('gamma');
    const gamma = new Membership(second.prisma, gammaLease, 'gamma', logger, options);
    await gamma.start();
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha', 'gamma']);
    await gammaLease.release();
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha']);
    // …and its row is removed by the instance that saw it dead.
    expect(await rows()).toEqual(['alpha']);

    // Hung: the lease is held but no heartbeat comes; it is dropped once its heartbeat is older than the TTL.
    const deltaLease = await second.leaseInstance('delta');
    const delta = new Membership(second.prisma, deltaLease, 'delta', logger, options);
    await delta.start('http://127.0.0.1:4999');
    expect((await admin.query(`SELECT url FROM "Instance" WHERE id = 'delta'`)).rows).toEqual([{ url: 'http://127.0.0.1:4999' }]);
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha', 'delta']);
    await admin.query(`UPDATE "Instance" SET "heartbeatAt" = "heartbeatAt" - interval '4 seconds' WHERE id = 'delta'`);
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha']);
    // Its own view still counts itself: it keeps serving until it sees the others again.
    expect(delta.live()).toContain('delta');
    await delta.tick();
    expect(alpha.live()).toEqual(['alpha']);
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha', 'delta']);

    // Removed while it lives (another instance saw its lease lost for a moment): its next heartbeat writes it back.
    await admin.query(`DELETE FROM "Instance" WHERE id = 'delta'`);
    await delta.tick();
    expect((await admin.query(`SELECT url FROM "Instance" WHERE id = 'delta'`)).rows).toEqual([{ url: 'http://127.0.0.1:4999' }]);
    await alpha.tick();
    expect(alpha.live()).toEqual(['alpha', 'delta']);

    await delta.stop();
    await deltaLease.release();
    await alpha.stop();
    await alphaLease.release();
    await betaLease.release();
    expect(await rows()).toEqual([]);
  });

  it('one process (no options) owns everything and writes nothing', async () => {
    const lease = await first.leaseInstance('solo');
    const solo = new Membership(first.prisma, lease, 'solo', logger, null);
    await solo.start();
    expect(solo.live()).toEqual(['solo']);
    expect(keys.every((key) => solo.owns(key))).toBe(true);
    expect(await rows()).toEqual([]);
    await solo.stop();
    await lease.release();
  });
});
