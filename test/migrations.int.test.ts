import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appliedMigrationsSql, loadMigrationsList, migrationsUpToDate, type AppliedMigration } from '../src/storage/migrations.js';
import { createTestDatabase } from './support/database.js';

// `serve` skips the schema engine (tens of MB of WebAssembly) when `_prisma_migrations` already
// records every committed migration with Prisma's checksum; anything else must go to the engine.
describe('the migrations fast path', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let client: pg.Client;
  const readApplied = async () => (await client.query<AppliedMigration>(appliedMigrationsSql)).rows;

  beforeAll(async () => {
    // Cloned from the template that the schema engine migrated.
    database = await createTestDatabase();
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  });
  afterAll(async () => {
    await client.end();
    await database.drop();
  });

  it('agrees with what the schema engine recorded: every migration, with the same checksums', async () => {
    const names = (await loadMigrationsList()).migrationDirectories.map((entry) => entry.path);
    expect((await readApplied()).map((row) => row.migration_name).sort()).toEqual(names);
    expect(await migrationsUpToDate(readApplied)).toBe(true);
  });

  it('is not taken when a migration was edited after it was applied, was rolled back, or the table is missing', async () => {
    const [first] = await readApplied();
    await client.query('UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2', ['0'.repeat(64), first!.migration_name]);
    expect(await migrationsUpToDate(readApplied)).toBe(false);
    await client.query('UPDATE "_prisma_migrations" SET checksum = $1, rolled_back_at = now() WHERE migration_name = $2', [
      first!.checksum,
      first!.migration_name,
    ]);
    expect(await migrationsUpToDate(readApplied)).toBe(false);
    await client.query('DROP TABLE "_prisma_migrations"');
    expect(await migrationsUpToDate(readApplied)).toBe(false);
  });
});
