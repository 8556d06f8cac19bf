import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { applyMigrations, loadMigrationsList } from './migrations.js';

export type Prisma = PrismaClient;

export interface Database {
  prisma: PrismaClient;
  kind: 'postgresql' | 'embedded';
  /** Applies pending migrations; returns the names applied now. */
  migrate(): Promise<string[]>;
  /** Throws unless the database answers and every committed migration is applied. */
  checkReady(): Promise<void>;
  close(): Promise<void>;
}

export class DatabaseLockedError extends Error {}

export async function openDatabase(options: { databaseUrl?: string; dataDir: string }): Promise<Database> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl);
  return openEmbedded(path.join(options.dataDir, 'db'));
}

function openPostgres(connectionString: string): Database {
  const pool = new pg.Pool({ connectionString, max: 10 });
  // An idle pooled connection that the server drops must not crash the process.
  pool.on('error', () => undefined);
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const database = withCommon(prisma, 'postgresql', async () => {
    await prisma.$disconnect();
    await pool.end();
  });
  database.migrate = async () => {
    const migrationPool = new pg.Pool({ connectionString, max: 1 });
    try {
      return await applyMigrations(new PrismaPg(migrationPool));
    } finally {
      await migrationPool.end();
    }
  };
  return database;
}

async function openEmbedded(dir: string): Promise<Database> {
  await mkdir(dir, { recursive: true });
  const releaseLock = await lockEmbeddedDatabase(dir);
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(dir);
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
  database.migrate = () => applyMigrations(adapter);
  return database;
}

function withCommon(prisma: PrismaClient, kind: Database['kind'], close: () => Promise<void>): Database {
  return {
    prisma,
    kind,
    migrate: () => Promise.reject(new Error('no migration adapter')),
    async checkReady() {
      const expected = (await loadMigrationsList()).migrationDirectories.length;
      const rows = await prisma.$queryRaw<{ applied: bigint }[]>`
        SELECT count(*) AS applied FROM "_prisma_migrations"
        WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`;
      const applied = Number(rows[0]?.applied ?? 0);
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
