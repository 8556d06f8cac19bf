import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/storage/database.js';
import { createTemplate } from './database.js';
import { startNeo4j } from './neo4j.js';
import { startS3Proxy } from './s3proxy.js';

/**
 * Builds dist/ once (tests that start `bin/repolens.js` run the compiled service, as users do) and
 * migrates one template database per run; each test app clones it (CREATE DATABASE … TEMPLATE).
 * Starts one S3Proxy (an S3 API server, test/support/s3proxy.ts) for the run meanwhile; test files
 * reach it through `inject('s3')` (or `s3TestEnv()`, which also makes them a bucket of their own).
 * Likewise one Neo4j (test/support/neo4j.ts), shared by all test files (each keeps to repositories of
 * its own): `inject('neo4j')`, or `neo4jTestEnv()`.
 */
export default async function setup({ provide }: TestProject): Promise<() => Promise<void>> {
  // The JVMs start while the bundle is built and the template migrated.
  const s3proxy = startS3Proxy();
  const neo4j = startNeo4j();
  // Awaited below: a failure to start must not count as an unhandled rejection meanwhile.
  s3proxy.catch(() => undefined);
  neo4j.catch(() => undefined);
  let dropTemplate: (() => Promise<void>) | undefined;
  const teardown = async () => {
    const results = await Promise.allSettled([dropTemplate?.(), s3proxy.then((server) => server.stop()), neo4j.then((server) => server.stop())]);
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;
  };
  try {
    // @ts-expect-error: a plain .mjs script without type declarations
    const { ensureBuilt } = (await import('../../scripts/build.mjs')) as { ensureBuilt(): Promise<string> };
    await ensureBuilt();
    dropTemplate = await createTemplate(async (url) => {
      const db = await openDatabase({ databaseUrl: url, dataDir: '/nonexistent' });
      try {
        await db.migrate();
      } finally {
        await db.close();
      }
    });
    const { endpoint, accessKeyId, secretAccessKey } = await s3proxy;
    provide('s3', { endpoint, accessKeyId, secretAccessKey });
    const { url, user, password } = await neo4j;
    provide('neo4j', { url, user, password });
  } catch (error) {
    await teardown().catch(() => undefined);
    throw error;
  }
  return teardown;
}
