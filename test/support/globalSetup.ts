import { openDatabase } from '../../src/storage/database.js';
import { createTemplate } from './database.js';

/**
 * Builds dist/ once (tests that start `bin/repolens.js` run the compiled service, as users do) and
 * migrates one template database per run; each test app clones it (CREATE DATABASE … TEMPLATE).
 */
export default async function setup(): Promise<() => Promise<void>> {
  // @ts-expect-error: a plain .mjs script without type declarations
  const { ensureBuilt } = (await import('../../scripts/build.mjs')) as { ensureBuilt(): Promise<string> };
  await ensureBuilt();
  return createTemplate(async (url) => {
    const db = await openDatabase({ databaseUrl: url, dataDir: '/nonexistent' });
    try {
      await db.migrate();
    } finally {
      await db.close();
    }
  });
}
