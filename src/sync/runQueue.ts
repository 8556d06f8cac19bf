import { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import type { Repository, RepositoryStatus, SyncRun, SyncTrigger } from '../generated/prisma/client.js';
import type { Prisma } from '../storage/database.js';
import type { PhaseLogEntry } from './runRecorder.js';

export const triggerPriority: Record<SyncTrigger, number> = {
  MANUAL: 4,
  WEBHOOK: 3,
  INITIAL: 2,
  SCHEDULED: 1,
};

export interface TriggerRequest {
  repositoryId: string;
  tenantId: string;
  trigger: SyncTrigger;
  targetSha?: string | null;
  force?: boolean;
}

export interface EnqueueResult {
  run: SyncRun;
  /** true when the trigger merged into a run that was already queued */
  coalesced: boolean;
}

function isUniqueViolation(error: unknown): boolean {
  if (!(error instanceof PrismaNamespace.PrismaClientKnownRequestError)) return false;
  // P2002 from a model query; a raw statement reports PostgreSQL's own code.
  return error.code === 'P2002' || (error.code === 'P2010' && /\b23505\b|unique constraint/i.test(`${JSON.stringify(error.meta)} ${error.message}`));
}

export interface ClaimedRun {
  /** The run, now RUNNING in its CHECKING phase (the last phaseLog entry). */
  run: SyncRun;
  repository: Repository;
  /** The commits metadata and graph were indexed at, as the claim read them (null: never indexed). */
  indexed: IndexedCommits | null;
}

export interface IndexedCommits {
  commitSha: string;
  graphSha: string | null;
}

/** Row of to_jsonb(): timestamps come back as text (UTC, since Prisma stores them so). */
function withDates<T>(row: Record<string, unknown>, fields: readonly string[]): T {
  for (const field of fields) {
    const value = row[field];
    if (typeof value === 'string') row[field] = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);
  }
  return row as T;
}

/** The DateTime fields of a model. */
type DateFields<T> = { [K in keyof T]-?: Date extends NonNullable<T[K]> ? K : never }[keyof T];
/** Compiles only when `Listed` names every DateTime field of the model: a new one cannot be forgotten. */
type EveryDateField<T, Listed> = [Exclude<DateFields<T>, Listed>] extends [never] ? true : false;

const runDateFields = ['queuedAt', 'startedAt', 'finishedAt'] as const satisfies readonly DateFields<SyncRun>[];
const repositoryDateFields = ['lastSyncedAt', 'nextCheckAt', 'lastChangedAt', 'lastWebhookAt', 'localUsedAt', 'createdAt', 'updatedAt'] as const satisfies readonly DateFields<Repository>[];
const everyDateField: [EveryDateField<SyncRun, (typeof runDateFields)[number]>, EveryDateField<Repository, (typeof repositoryDateFields)[number]>] = [true, true];
void everyDateField;

/**
 * Pending and running runs live in PostgreSQL. The unique
 * (repositoryId, activeSlot) index allows one QUEUED and one RUNNING run per
 * repository, so every trigger that arrives while a run is queued merges
 * into it, whichever process receives it.
 */
export class RunQueue {
  constructor(private readonly prisma: Prisma) {}

  /**
   * Queues a run, or merges the trigger into the one already queued: one
   * statement either way (an insert that, on the repository's QUEUED slot,
   * becomes the merge). `queuedStatus`: the repository status the run's QUEUED
   * phase records.
   */
  async enqueue(request: TriggerRequest, queuedStatus: RepositoryStatus = 'PENDING'): Promise<EnqueueResult> {
    const priority = triggerPriority[request.trigger];
    const now = new Date();
    const log: PhaseLogEntry[] = [{ phase: 'QUEUED', status: queuedStatus, at: now.toISOString() }];
    const [row] = await this.prisma.$queryRaw<{ run: Record<string, unknown>; inserted: boolean }[]>`
      INSERT INTO "SyncRun" (id, "repositoryId", "tenantId", trigger, priority, force, "targetSha", "phaseLog", status, "activeSlot", phase, "queuedAt", "triggerCount")
      VALUES (gen_random_uuid(), ${request.repositoryId}::uuid, ${request.tenantId}::uuid, ${request.trigger}::"SyncTrigger", ${priority},
              ${Boolean(request.force)}, ${request.targetSha ?? null}, ${JSON.stringify(log)}::jsonb, 'QUEUED', 'QUEUED', 'QUEUED', ${now}, 1)
      ON CONFLICT ("repositoryId", "activeSlot") DO UPDATE SET
        "triggerCount" = "SyncRun"."triggerCount" + 1,
        force = "SyncRun".force OR EXCLUDED.force,
        priority = GREATEST("SyncRun".priority, EXCLUDED.priority),
        trigger = CASE WHEN EXCLUDED.priority > "SyncRun".priority THEN EXCLUDED.trigger ELSE "SyncRun".trigger END,
        "targetSha" = COALESCE(EXCLUDED."targetSha", "SyncRun"."targetSha")
      RETURNING to_jsonb("SyncRun".*) AS run, (xmax = 0) AS inserted`;
    if (!row) throw new Error(`could not queue a run for repository ${request.repositoryId}`);
    return { run: withDates<SyncRun>(row.run, runDateFields), coalesced: !row.inserted };
  }

  /**
   * Moves a queued run to RUNNING and into its CHECKING phase, and reads its
   * repository, in one statement (the hot path of every sync). null when
   * another run of the repository is running, the run was taken, or the
   * repository is gone.
   *
   * A run of the repository that is ending (its final statement not yet
   * committed) is waited for, on its row lock, before anything is written, so
   * that the start is stamped after it: by the database's clock, as it is
   * written, a repository's history never shows two runs overlapping. The
   * claim then succeeds, as the ending run may have looked for queued runs
   * before this one was queued.
   */
  async claim(runId: string, owner: string): Promise<ClaimedRun | null> {
    try {
      const rows = await this.prisma.$queryRaw<{ run: Record<string, unknown>; repository: Record<string, unknown>; indexed: IndexedCommits | null }[]>`
        WITH ending AS (
          SELECT running.id FROM "SyncRun" AS running
          WHERE running."repositoryId" = (SELECT "repositoryId" FROM "SyncRun" WHERE id = ${runId}::uuid) AND running."activeSlot" = 'RUNNING'
          FOR UPDATE
        )
        UPDATE "SyncRun" AS run SET
          status = 'RUNNING', "activeSlot" = 'RUNNING', "startedAt" = clock_timestamp() AT TIME ZONE 'UTC', "claimedBy" = ${owner},
          phase = 'CHECKING', "fromSha" = repository."lastCommitSha",
          "phaseLog" = run."phaseLog" || jsonb_build_array(jsonb_build_object('phase', 'CHECKING', 'status', repository.status,
            'at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
        FROM "Repository" AS repository
        WHERE run.id = ${runId}::uuid AND run.status = 'QUEUED' AND repository.id = run."repositoryId" AND NOT EXISTS (SELECT 1 FROM ending)
        RETURNING to_jsonb(run.*) AS run, to_jsonb(repository.*) AS repository,
          (SELECT jsonb_build_object('commitSha', metadata."commitSha", 'graphSha', metadata."graphSha")
           FROM "RepositoryMetadata" AS metadata WHERE metadata."repositoryId" = repository.id) AS indexed`;
      const [row] = rows;
      if (!row) return null;
      return {
        run: withDates<SyncRun>(row.run, runDateFields),
        repository: withDates<Repository>(row.repository, repositoryDateFields),
        // Whether the commit a check finds is indexed already, without a read of its own.
        indexed: row.indexed,
      };
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  async nextQueued(repositoryId: string): Promise<SyncRun | null> {
    return this.prisma.syncRun.findFirst({ where: { repositoryId, activeSlot: 'QUEUED' } });
  }

  /** Every queued run, the most urgent first (status QUEUED is activeSlot QUEUED; the (status, priority) index serves it). */
  async allQueued(): Promise<Pick<SyncRun, 'id' | 'repositoryId' | 'priority'>[]> {
    return this.prisma.syncRun.findMany({
      where: { status: 'QUEUED' },
      select: { id: true, repositoryId: true, priority: true },
      orderBy: [{ priority: 'desc' }, { queuedAt: 'asc' }],
    });
  }

  /**
   * The instances (SyncRun.claimedBy) that hold running runs; null for a run with no owner recorded.
   * (status RUNNING is activeSlot RUNNING; the (status, priority) index serves it.)
   */
  async runningOwners(): Promise<(string | null)[]> {
    const rows = await this.prisma.syncRun.findMany({ where: { status: 'RUNNING' }, select: { claimedBy: true }, distinct: ['claimedBy'] });
    return rows.map((row) => row.claimedBy);
  }

  /**
   * Runs `owner` left RUNNING go back to the queue (or are cancelled when a
   * follow-up is already queued, which covers them): those of a process that
   * stopped, or, with `keep`, those a live one no longer executes.
   */
  async requeueOrphans(
    owner: string | null,
    reason = 'interrupted: the process stopped during this run',
    keep: (run: { id: string; repositoryId: string }) => boolean = () => false,
  ): Promise<number> {
    const orphans = await this.prisma.syncRun.findMany({ where: { status: 'RUNNING', claimedBy: owner }, select: { id: true, repositoryId: true } });
    let requeued = 0;
    for (const orphan of orphans) {
      if (!keep(orphan) && (await this.requeue(orphan.id, reason, owner))) requeued++;
    }
    return requeued;
  }

  /**
   * A running run goes back to the queue (or is cancelled when a follow-up is
   * queued already, which covers it). Only while it is still RUNNING, and
   * under `claimedBy` when given: two instances sweeping the same orphan, or a
   * sweep that read it before another instance claimed it again, change
   * nothing. Returns whether this call moved it.
   */
  async requeue(runId: string, reason: string, claimedBy?: string | null): Promise<boolean> {
    const where = { id: runId, status: 'RUNNING' as const, ...(claimedBy === undefined ? {} : { claimedBy }) };
    try {
      const { count } = await this.prisma.syncRun.updateMany({
        where,
        data: { status: 'QUEUED', activeSlot: 'QUEUED', phase: 'QUEUED', startedAt: null, claimedBy: null, error: reason },
      });
      return count > 0;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      const { count } = await this.prisma.syncRun.updateMany({
        where,
        data: { status: 'CANCELLED', activeSlot: null, finishedAt: new Date(), error: `${reason}; superseded by the queued run` },
      });
      return count > 0;
    }
  }
}
