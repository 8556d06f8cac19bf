import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { applyMigrations, appliedMigrationsSql, loadMigrationsList, type AppliedMigration } from './migrations.js';

export type Prisma = PrismaClient;

export interface Database {
  prisma: PrismaClient;
  kind: 'postgresql' | 'embedded';
  /**
   * One SQL statement straight on the driver, for the few hot paths where Prisma's per-query work
   * shows in a benchmark (the webhook intake). `name` makes it a prepared statement per connection.
   */
  statement<Row>(name: string, text: string, values: unknown[]): Promise<Row[]>;
  /** Applies pending migrations; returns the names applied now. */
  migrate(): Promise<string[]>;
  /** Throws unless the database answers and every committed migration is applied. */
  checkReady(): Promise<void>;
  /** Marks this process as alive under `instanceId` (the SyncRun.claimedBy it writes) until `release`. */
  leaseInstance(instanceId: string): Promise<InstanceLease>;
  close(): Promise<void>;
}

export class DatabaseLockedError extends Error {}

/** Socket errors and PostgreSQL's connection-class (08) and shutdown (57P01–57P03) codes. */
const unreachableCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', '57P01', '57P02', '57P03']);
const unreachableMessages =
  /Can't reach database server|Server has closed the connection|Connection terminated|connection is closed|Client has encountered a connection error|terminating connection due to administrator command|Code: `(08[0-9A-Z]{3}|57P0[123])`/i;

/** Retry-After (seconds) of the 503 that a request gets while the database is unreachable. */
export const unavailableRetrySeconds = 5;

/**
 * Whether `error` (or one of its causes) says the database could not be
 * reached, rather than that a statement was wrong: the server answers 503
 * with Retry-After then, so that a sender tries again instead of giving up.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (unreachableCodes.has(code) || code.startsWith('08'))) return true;
    if (unreachableMessages.test(current.message)) return true;
  }
  return false;
}

export const embeddedSharedBuffers = '32MB';

export interface InstanceLease {
  /** False only when the process that wrote `claimedBy` has certainly stopped. */
  isAlive(instanceId: string): Promise<boolean>;
  release(): Promise<void>;
}

/** Advisory-lock namespace of instance leases ("RPLS"); the second key is derived from the instance id. */
const leaseLockClass = 0x52504c53;
const leaseKey = (instanceId: string) => createHash('sha256').update(instanceId).digest().readInt32BE(0);

export async function openDatabase(options: { databaseUrl?: string; dataDir: string }): Promise<Database> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl);
  return openEmbedded(path.join(options.dataDir, 'db'));
}

async function openPostgres(connectionString: string): Promise<Database> {
  const pool = new pg.Pool({ connectionString, max: 10 });
  // An idle pooled connection that the server drops must not crash the process.
  pool.on('error', () => undefined);
  try {
    // Fail at start-up, in one place, when the server is unreachable or the database missing.
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const database = withCommon(prisma, 'postgresql', async () => {
    await prisma.$disconnect();
    await pool.end();
  });
  database.migrate = async () => {
    const migrationPool = new pg.Pool({ connectionString, max: 1 });
    try {
      return await applyMigrations(new PrismaPg(migrationPool), async () => (await pool.query<AppliedMigration>(appliedMigrationsSql)).rows);
    } finally {
      await migrationPool.end();
    }
  };
  database.statement = async <Row>(name: string, text: string, values: unknown[]) =>
    (await pool.query({ name, text, values })).rows as Row[];
  database.leaseInstance = (instanceId) => leasePostgresInstance(connectionString, instanceId);
  return database;
}

/**
 * Several processes share one PostgreSQL database (SPEC §1). Each holds a session advisory lock
 * named after its instance id on a connection of its own; PostgreSQL drops the lock when the
 * process dies (its connection closes), so a lock that can be taken names a stopped instance.
 */
async function leasePostgresInstance(connectionString: string, instanceId: string): Promise<InstanceLease> {
  const key = [leaseLockClass, leaseKey(instanceId)];
  let released = false;
  let reconnecting = false;
  let client!: pg.Client;
  const connect = async () => {
    const next = new pg.Client({ connectionString });
    next.on('error', () => undefined);
    try {
      await next.connect();
      await next.query('SELECT pg_advisory_lock($1, $2)', key);
    } catch (error) {
      await next.end().catch(() => undefined);
      throw error;
    }
    // A lost connection loses the lock: take it again at once, so that others do not see this process as stopped.
    next.on('end', () => {
      if (!released && client === next) void reconnect();
    });
    client = next;
  };
  const reconnect = async () => {
    if (reconnecting) return;
    reconnecting = true;
    try {
      for (let delay = 100; !released; delay = Math.min(delay * 2, 5_000)) {
        try {
          return await connect();
        } catch {
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    } finally {
      reconnecting = false;
    }
  };
  await connect();
  let asking: Promise<unknown> = Promise.resolve();
  return {
    isAlive(owner) {
      if (owner === instanceId) return Promise.resolve(!released);
      // One question at a time on the lease's connection (membership and the orphan sweep both ask).
      const answer = asking.then(async () => {
        const ownerKey = [leaseLockClass, leaseKey(owner)];
        const { rows } = await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS taken', ownerKey);
        if (!rows[0]?.taken) return true;
        await client.query('SELECT pg_advisory_unlock($1, $2)', ownerKey);
        return false;
      });
      asking = answer.catch(() => undefined);
      return answer;
    },
    async release() {
      released = true;
      await client.end().catch(() => undefined);
    },
  };
}

async function openEmbedded(dir: string): Promise<Database> {
  await mkdir(dir, { recursive: true });
  const releaseLock = await lockEmbeddedDatabase(dir);
  // Loaded only here: a server on PostgreSQL does not carry PGlite's runtime in memory.
  const [{ PGlite: PGliteClass }, { PrismaPGlite }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('pglite-prisma-adapter'),
  ]);
  let pglite: PGlite;
  try {
    // PostgreSQL's 128 MB of shared buffers would be most of the process's memory (PGlite runs
    // in it); the embedded database holds a laptop's worth of rows, and the OS caches the files.
    pglite = await PGliteClass.create(dir, { postgresqlconf: [`shared_buffers=${embeddedSharedBuffers}`] });
  } catch (error) {
    await releaseLock();
    throw error;
  }
  const adapter = new PrismaPGlite(pglite);
  const prisma = new PrismaClient({ adapter });
  const database = withCommon(prisma, 'embedded', async () => {
    await prisma.$disconnect();
    await pglite.close();
    await releaseLock();
  });
  database.migrate = () => applyMigrations(adapter, async () => (await pglite.query<AppliedMigration>(appliedMigrationsSql)).rows);
  database.statement = async <Row>(_name: string, text: string, values: unknown[]) => (await pglite.query<Row>(text, values)).rows;
  // The lock file makes this process the database's only user: every other instance id is a stopped one.
  database.leaseInstance = async (instanceId) => ({ isAlive: async (owner) => owner === instanceId, release: async () => undefined });
  return database;
}

function withCommon(prisma: PrismaClient, kind: Database['kind'], close: () => Promise<void>): Database {
  return {
    prisma,
    kind,
    migrate: () => Promise.reject(new Error('no migration adapter')),
    statement: () => Promise.reject(new Error('no driver')),
    leaseInstance: () => Promise.reject(new Error('no instance leases')),
    async checkReady() {
      const expected = (await loadMigrationsList()).migrationDirectories.length;
      const applied = (await prisma.$queryRawUnsafe<AppliedMigration[]>(appliedMigrationsSql)).length;
      if (applied < expected) throw new Error(`${expected - applied} migration(s) not applied`);
    },
    close,
  };
}

/**
 * PGlite is single-process: a pid lock file says who holds the embedded
 * database, and a lock left by a process that died is taken over.
 */
async function lockEmbeddedDatabase(dir: string): Promise<() => Promise<void>> {
  const lockFile = path.join(dir, 'repolens.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(lockFile, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(lockFile, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
      if (holder && holder !== process.pid && isAlive(holder)) {
        throw new DatabaseLockedError(
          `the embedded database in ${dir} is in use by another repolens process (pid ${holder}); stop it first or set DATABASE_URL`,
        );
      }
      await rm(lockFile, { force: true });
    }
  }
  throw new DatabaseLockedError(`could not lock the embedded database in ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
