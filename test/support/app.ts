import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { startApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createApiToken } from '../../src/storage/tenants.js';
import { RepositoryDocument, type RepositoryQuery } from '../generated/graphql.js';
import { TestClient } from './client.js';
import { createTestDatabase } from './database.js';

export interface TestAppOptions {
  /** PGlite under DATA_DIR instead of a PostgreSQL database. */
  embedded?: boolean;
  env?: Record<string, string>;
  /** Reuse a data folder / database (restart scenarios). */
  dataDir?: string;
  databaseUrl?: string;
}

export interface TestApp {
  app: App;
  url: string;
  dataDir: string;
  databaseUrl: string | undefined;
  /** Every line the app logged. */
  logs: string[];
  client(tenant?: string): Promise<TestClient>;
  /** Stops the app; `keep` leaves data and database for a restart. */
  close(options?: { keep?: boolean }): Promise<void>;
}

/** The real app on a free port, with its own data folder and database. */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'repolens-test-')));
  const database = options.embedded || options.databaseUrl ? null : await createTestDatabase();
  const databaseUrl = options.databaseUrl ?? database?.url;
  const config = loadConfig({
    PORT: '0',
    DATA_DIR: dataDir,
    REPOLENS_ALLOW_PRIVATE_HOSTS: '1',
    REPOLENS_SCHEDULER_INTERVAL_MS: '0',
    REPOLENS_SHUTDOWN_GRACE_MS: '2000',
    LOG_LEVEL: 'debug',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...options.env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      if (process.env.TEST_LOGS) process.stderr.write(chunk);
      callback();
    },
  });
  const app = await startApp(config, { logger: createLogger(config.logLevel, sink) });
  const tokens = new Map<string, string>();
  return {
    app,
    url: app.url,
    dataDir,
    databaseUrl,
    logs,
    async client(tenant = 'acme') {
      let token = tokens.get(tenant);
      if (!token) {
        token = (await createApiToken(app.db.prisma, tenant)).token;
        tokens.set(tenant, token);
      }
      return new TestClient(app.url, token);
    },
    async close({ keep = false } = {}) {
      await app.close();
      if (keep) return;
      await database?.drop();
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

type RepositoryState = NonNullable<RepositoryQuery['repository']>;

/** Polls the API until the repository satisfies the predicate. */
export async function waitForRepository(
  client: TestClient,
  id: string,
  predicate: (repository: RepositoryState) => boolean,
  timeoutMs = 30_000,
): Promise<RepositoryState> {
  const deadline = Date.now() + timeoutMs;
  let last: RepositoryState | null = null;
  while (Date.now() < deadline) {
    last = (await client.request(RepositoryDocument, { id, runs: 20 })).repository;
    if (last && predicate(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`repository did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

/** Waits until the repository has no queued or running run. */
export async function waitForIdle(app: App, repositoryId: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const active = await app.db.prisma.syncRun.count({ where: { repositoryId, activeSlot: { not: null } } });
    if (!active && !app.engine.isRunning(repositoryId)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`repository ${repositoryId} still has active runs after ${timeoutMs} ms`);
}

/** Waits until every app sees exactly these apps as the live instances (SPEC §1 "Several processes"). */
export async function waitForMembers(apps: TestApp[], timeoutMs = 15_000): Promise<void> {
  const ids = apps.map((app) => app.app.instanceId).sort();
  const deadline = Date.now() + timeoutMs;
  while (!apps.every((app) => JSON.stringify(app.app.membership.live()) === JSON.stringify(ids))) {
    if (Date.now() > deadline) throw new Error(`the instances never agreed: ${apps.map((app) => app.app.membership.live().join(',')).join(' / ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
