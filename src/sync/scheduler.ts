import type { Logger } from 'pino';
import type { Prisma } from '../storage/database.js';
import type { SyncEngine, TriggeredRepository } from './engine.js';

/** A claimed repository is not claimed again for this long, even if its run never reports back. */
const claimLeaseMs = 10 * 60_000;
const batchSize = 500;

/**
 * Finds repositories whose next check is due and queues SCHEDULED runs.
 * Due rows are claimed with FOR UPDATE SKIP LOCKED and pushed forward in the
 * same statement, so several processes never poll the same repository twice.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private passing: Promise<number> | undefined;

  constructor(
    private readonly prisma: Prisma,
    private readonly engine: SyncEngine,
    private readonly logger: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.pass(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.passing;
  }

  /** One check pass over every due repository; returns how many were queued. */
  pass(): Promise<number> {
    this.passing ??= this.claimAndTrigger()
      .catch((error: unknown) => {
        this.logger.error({ err: error }, 'scheduler pass failed');
        return 0;
      })
      .finally(() => (this.passing = undefined));
    return this.passing;
  }

  private async claimAndTrigger(): Promise<number> {
    let total = 0;
    for (;;) {
      const due = await this.prisma.$queryRaw<(TriggeredRepository & { tenantId: string })[]>`
        UPDATE "Repository" SET "nextCheckAt" = now() + make_interval(secs => ${claimLeaseMs / 1000})
        WHERE id IN (
          SELECT id FROM "Repository"
          WHERE "nextCheckAt" <= now()
          ORDER BY "nextCheckAt"
          LIMIT ${batchSize}
          FOR UPDATE SKIP LOCKED)
        RETURNING id, "tenantId", host, status, "lastCommitSha"`;
      for (const repository of due) {
        await this.engine
          .trigger({ repositoryId: repository.id, tenantId: repository.tenantId, trigger: 'SCHEDULED' }, repository)
          .catch((error: unknown) => this.logger.warn({ err: error, repositoryId: repository.id }, 'scheduled trigger failed'));
      }
      total += due.length;
      if (due.length < batchSize) return total;
    }
  }
}
