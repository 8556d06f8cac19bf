import { randomUUID } from 'node:crypto';
import pg from 'pg';

/** The PostgreSQL server the tests use (CI's, or TEST_DATABASE_URL). */
export const serverUrl = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

const prefix = 'repolens_test_';
/** Leftovers of interrupted runs older than this are dropped; younger ones may belong to a concurrent run. */
const leftoverAgeMs = 2 * 60 * 60_000;

export function databaseUrl(name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Names carry their creation time so a cleanup never drops a database a concurrent run still uses. */
function newDatabaseName(): string {
  return `${prefix}${Date.now()}_${randomUUID().replace(/-/g, '').slice(0, 8)}`;
}

function templateName(): string {
  const name = process.env.REPOLENS_TEST_TEMPLATE;
  if (!name) throw new Error('no template database: run through vitest (globalSetup) or call createTemplate() first');
  return name;
}

/** A fresh database cloned from the migrated template. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = newDatabaseName();
  await withAdmin((client) => client.query(`CREATE DATABASE "${name}" TEMPLATE "${templateName()}"`));
  return { url: databaseUrl(name), drop: () => dropDatabase(name) };
}

export function dropDatabase(name: string): Promise<void> {
  return withAdmin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined);
}

/**
 * Creates and migrates this run's template database and publishes its name in
 * REPOLENS_TEST_TEMPLATE (inherited by test workers); returns a cleanup.
 */
export async function createTemplate(migrate: (url: string) => Promise<void>): Promise<() => Promise<void>> {
  const name = newDatabaseName();
  await withAdmin(async (client) => {
    const { rows } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%'`);
    for (const { datname } of rows) {
      const createdAt = Number(/^repolens_test_(\d+)_/.exec(datname)?.[1] ?? 0);
      if (Date.now() - createdAt > leftoverAgeMs) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    await client.query(`CREATE DATABASE "${name}"`);
  });
  await migrate(databaseUrl(name));
  process.env.REPOLENS_TEST_TEMPLATE = name;
  return () => dropDatabase(name);
}
