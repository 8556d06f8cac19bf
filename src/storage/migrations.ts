import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bindMigrationAwareSqlAdapterFactory, type SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import type { MigrationList, SchemaEngine } from '@prisma/schema-engine-wasm';

/** The folder holding prisma/ (found upwards: this module runs from src/ or from the dist/ bundle). */
function findProjectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'prisma', 'schema.prisma'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('prisma/schema.prisma not found above the program');
    dir = parent;
  }
  return dir;
}

const projectRoot = findProjectRoot();
export const migrationsDir = path.join(projectRoot, 'prisma/migrations');
export const schemaPath = path.join(projectRoot, 'prisma/schema.prisma');

const emptyFilter = { externalTables: [], externalEnums: [] };

type EngineModule = typeof import('@prisma/schema-engine-wasm') & {
  __wbg_set_wasm(exports: WebAssembly.Exports): void;
};

/**
 * The package's ESM entry imports a .wasm file, which Node 20 refuses without
 * a flag, so the bindings are loaded and the module instantiated by hand.
 * Once per process: the bindings module keeps the instance it was given
 * anyway, and a second instance handed to it while the first one's callbacks
 * are still reachable corrupts both (a second fresh embedded database in one
 * process failed with "FnOnce called more than once").
 */
let engineModule: Promise<EngineModule> | undefined;
function loadEngineModule(): Promise<EngineModule> {
  return (engineModule ??= (async () => {
    const require = createRequire(import.meta.url);
    const bindingsPath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
    const bindings = (await import(bindingsPath)) as EngineModule;
    const wasmBytes = await readFile(bindingsPath.replace(/\.js$/, '.wasm'));
    const { instance } = await WebAssembly.instantiate(wasmBytes, {
      './schema_engine_bg.js': bindings as unknown as WebAssembly.ModuleImports,
    });
    bindings.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return bindings;
  })().catch((error: unknown) => {
    engineModule = undefined;
    throw error;
  }));
}

async function openEngine(adapterFactory: SqlMigrationAwareDriverAdapterFactory): Promise<SchemaEngine> {
  const { SchemaEngine } = await loadEngineModule();
  const schema = await readFile(schemaPath, 'utf8');
  return SchemaEngine.new(
    { datamodels: [[schemaPath, schema]] },
    () => undefined,
    bindMigrationAwareSqlAdapterFactory(adapterFactory),
  );
}

export async function loadMigrationsList(): Promise<MigrationList> {
  const entries = (await readdir(migrationsDir, { withFileTypes: true }).catch(() => []))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  const lockfilePath = path.join(migrationsDir, 'migration_lock.toml');
  return {
    baseDir: migrationsDir,
    lockfile: { path: 'migration_lock.toml', content: await readFile(lockfilePath, 'utf8').catch(() => null) },
    shadowDbInitScript: '',
    migrationDirectories: await Promise.all(
      entries.map(async (name) => ({
        path: name,
        migrationFile: {
          path: 'migration.sql',
          content: await readFile(path.join(migrationsDir, name, 'migration.sql'), 'utf8').then(
            (value) => ({ tag: 'ok' as const, value }),
            (error: Error) => ({ tag: 'error' as const, value: error.message }),
          ),
        },
      })),
    ),
  };
}

export interface AppliedMigration {
  migration_name: string;
  checksum: string;
}

export const appliedMigrationsSql = `SELECT migration_name, checksum FROM "_prisma_migrations"
  WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`;

/**
 * True when every committed migration is recorded as applied with the checksum Prisma records
 * (SHA-256 of migration.sql), and nothing else is: then the schema engine (~40 MB of WebAssembly)
 * need not be loaded at all. Anything else, including an edited migration, goes to the engine.
 */
export async function migrationsUpToDate(readApplied: () => Promise<AppliedMigration[]>): Promise<boolean> {
  let applied: AppliedMigration[];
  try {
    applied = await readApplied();
  } catch {
    return false; // no _prisma_migrations table yet
  }
  const { migrationDirectories } = await loadMigrationsList();
  if (applied.length !== migrationDirectories.length) return false;
  const recorded = new Map(applied.map((row) => [row.migration_name, row.checksum]));
  return migrationDirectories.every(
    ({ path: name, migrationFile }) =>
      migrationFile.content.tag === 'ok' &&
      recorded.get(name) === createHash('sha256').update(migrationFile.content.value).digest('hex'),
  );
}

/** Applies every committed migration not yet recorded in `_prisma_migrations`. */
export async function applyMigrations(
  adapterFactory: SqlMigrationAwareDriverAdapterFactory,
  readApplied?: () => Promise<AppliedMigration[]>,
): Promise<string[]> {
  if (readApplied && (await migrationsUpToDate(readApplied))) return [];
  const engine = await openEngine(adapterFactory);
  try {
    const { appliedMigrationNames } = await engine.applyMigrations({
      migrationsList: await loadMigrationsList(),
      filters: emptyFilter,
    });
    return appliedMigrationNames;
  } finally {
    engine.free();
  }
}

/** SQL that takes a database at the committed migrations to the current schema ('' when in step). */
export async function diffMigrationsToSchema(adapterFactory: SqlMigrationAwareDriverAdapterFactory): Promise<string> {
  const engine = await openEngine(adapterFactory);
  try {
    const migrations = await loadMigrationsList();
    const schema = await readFile(schemaPath, 'utf8');
    const result = await engine.diff({
      from: migrations.migrationDirectories.length ? { tag: 'migrations', ...migrations } : { tag: 'empty' },
      to: { tag: 'schemaDatamodel', files: [{ path: schemaPath, content: schema }] },
      script: true,
      exitCode: null,
      filters: emptyFilter,
    });
    const script = result.stdout ?? '';
    return /^\s*(--[^\n]*\n?\s*)*$/.test(script) ? '' : script;
  } finally {
    engine.free();
  }
}
