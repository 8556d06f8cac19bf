import { openDatabase } from '../../src/storage/database.js';
import { createTemplate } from './database.js';

/** Migrates one template database per run; each test app clones it (CREATE DATABASE … TEMPLATE). */
export default async function setup(): Promise<() => Promise<void>> {
  return createTemplate(async (url) => {
    const db = await openDatabase({ databaseUrl: url, dataDir: '/nonexistent' });
    try {
      await db.migrate();
    } finally {
      await db.close();
    }
  });
}
