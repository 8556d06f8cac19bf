// Writes prisma/migrations/<timestamp>_<name>/migration.sql for the difference
// between the committed migrations and prisma/schema.prisma. The diff needs a
// scratch database for the "migrations" side; an in-memory PGlite serves.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { diffMigrationsToSchema, migrationsDir } from '../src/storage/migrations.js';

const name = process.argv[2];
if (!name || !/^[a-z0-9_]+$/.test(name)) {
  console.error('usage: npm run migration:create -- <snake_case_name>');
  process.exit(2);
}
const scratch = new PGlite();
const sql = await diffMigrationsToSchema(new PrismaPGlite(scratch));
await scratch.close();
if (!sql) {
  console.log('schema and migrations are in step; nothing written');
  process.exit(0);
}
const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const dir = path.join(migrationsDir, `${stamp}_${name}`);
await mkdir(dir, { recursive: true });
await writeFile(path.join(dir, 'migration.sql'), sql);
await writeFile(path.join(migrationsDir, 'migration_lock.toml'), 'provider = "postgresql"\n');
console.log(`wrote ${path.relative(process.cwd(), dir)}/migration.sql`);
