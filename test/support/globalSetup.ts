import { openDatabase } from '../../src/storage/database.js';
import { recreateTemplate } from './database.js';

/** Migrates one template database; each test file clones it (CREATE DATABASE … TEMPLATE). */
export default async function setup(): Promise<void> {
  await recreateTemplate(async (url) => {
    const db = await openDatabase({ databaseUrl: url, dataDir: '/nonexistent' });
    try {
      await db.migrate();
    } finally {
      await db.close();
    }
  });
}
