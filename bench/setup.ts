import type { Service } from './service.js';
import { waitUntil } from './timing.js';

/** Until every registered repository is SYNCED (its initial sync done); a FAILED one stops the bench. */
export async function waitForAllSynced(service: Service, count: number): Promise<void> {
  const state = async () => {
    const [row] = await service.query<{ synced: number; failed: number; error: string | null }>(
      `SELECT count(*) FILTER (WHERE status = 'SYNCED')::int AS synced, count(*) FILTER (WHERE status = 'FAILED')::int AS failed,
              min("lastError") AS error
       FROM "Repository"`,
    );
    if (row?.failed) throw new Error(`${row.failed} repositories failed their initial sync: ${row.error}`);
    return row?.synced ?? 0;
  };
  await waitUntil(async () => (await state()) === count, {
    intervalMs: 250,
    timeoutMs: 600_000,
    describe: async () => `${await state()}/${count} repositories synced`,
  });
}

/** Until no run is queued or running. */
export async function waitForIdle(service: Service): Promise<void> {
  const active = async () =>
    (await service.query<{ n: number }>(`SELECT count(*)::int AS n FROM "SyncRun" WHERE "activeSlot" IS NOT NULL`))[0]?.n ?? 0;
  await waitUntil(async () => (await active()) === 0, {
    intervalMs: 100,
    timeoutMs: 120_000,
    describe: async () => `${await active()} runs still active`,
  });
}

/** Pushes every repository's next check an hour out, so no poll lands inside a measurement. */
export async function deferScheduledChecks(service: Service): Promise<void> {
  await service.query(`UPDATE "Repository" SET "nextCheckAt" = now() + interval '1 hour'`);
}
