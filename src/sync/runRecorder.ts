import type { Prisma } from '../storage/database.js';
import type { RepositoryStatus, SyncPhase } from '../generated/prisma/enums.js';
import type { SyncEvents } from './events.js';
import { redactSecrets } from './redact.js';

export interface PhaseLogEntry {
  phase: SyncPhase;
  status: RepositoryStatus;
  at: string;
  message?: string;
  commitSha?: string;
}

const progressIntervalMs = 250;

interface PhaseOptions {
  status?: RepositoryStatus;
  message?: string;
  commitSha?: string;
  /** Other SyncRun fields written with the phase. */
  run?: Record<string, unknown>;
}

/**
 * Writes a run's phase changes to its SyncRun row (phase + phaseLog) and
 * publishes them; transfer progress is published only, and throttled.
 */
export class RunRecorder {
  private readonly log: PhaseLogEntry[];
  private lastProgressAt = 0;
  status: RepositoryStatus;

  constructor(
    private readonly prisma: Prisma,
    private readonly events: SyncEvents,
    readonly repositoryId: string,
    readonly runId: string,
    initialStatus: RepositoryStatus,
    initialLog: PhaseLogEntry[],
  ) {
    this.status = initialStatus;
    this.log = [...initialLog];
  }

  async phase(phase: SyncPhase, options: PhaseOptions = {}): Promise<void> {
    const step = this.prepare(phase, options);
    await this.prisma.syncRun.update({ where: { id: this.runId }, data: { ...step.data, ...options.run } });
    step.publish();
  }

  /**
   * Publishes a phase change and keeps it in the log without writing it:
   * the run's next write (at the latest its final one) stores it. For a
   * phase that changes nothing else, so that it costs no round trip.
   */
  announce(phase: SyncPhase): void {
    this.prepare(phase).publish();
  }

  /** Publishes the last logged phase, already written by the caller (a run's claim writes CHECKING). */
  publishLast(): void {
    const entry = this.log.at(-1);
    if (entry) this.publishEntry(entry);
  }

  /**
   * The run-row fields of a phase change and its event, for a caller that
   * writes them together with other rows (a run's final transaction) and
   * publishes once they are committed.
   */
  prepare(phase: SyncPhase, options: Omit<PhaseOptions, 'run'> = {}): { data: { phase: SyncPhase; phaseLog: object[] }; publish(): void } {
    if (options.status) this.status = options.status;
    const message = options.message ? redactSecrets(options.message) : undefined;
    const entry: PhaseLogEntry = { phase, status: this.status, at: new Date().toISOString() };
    if (message) entry.message = message;
    if (options.commitSha) entry.commitSha = options.commitSha;
    this.log.push(entry);
    return { data: { phase, phaseLog: [...this.log] as object[] }, publish: () => this.publishEntry(entry) };
  }

  private publishEntry(entry: PhaseLogEntry): void {
    this.events.publish({
      repositoryId: this.repositoryId,
      runId: this.runId,
      status: entry.status,
      phase: entry.phase,
      message: entry.message ?? null,
      commitSha: entry.commitSha ?? null,
      progress: entry.phase === 'DONE' ? 1 : null,
    });
  }

  progress(phase: SyncPhase, fraction: number, message: string): void {
    const now = Date.now();
    if (now - this.lastProgressAt < progressIntervalMs && fraction < 1) return;
    this.lastProgressAt = now;
    this.events.publish({
      repositoryId: this.repositoryId,
      runId: this.runId,
      status: this.status,
      phase,
      progress: Math.max(0, Math.min(1, fraction)),
      message,
    });
  }

  entries(): readonly PhaseLogEntry[] {
    return this.log;
  }
}
