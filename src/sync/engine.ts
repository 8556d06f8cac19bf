import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { Repository, SyncRun } from '../generated/prisma/client.js';
import type { Metrics } from '../metrics.js';
import type { Prisma } from '../storage/database.js';
import type { RunQueuedNotice, SyncEvents } from './events.js';
import type { RunQueue, TriggerRequest, EnqueueResult } from './runQueue.js';
import { executeRun, type QueuedRun, type RunDependencies, type RunOutcome } from './syncRun.js';

export interface EngineOptions {
  concurrency: number;
  hostConcurrency: number;
  /** Names this process in SyncRun.claimedBy. */
  instanceId: string;
  /** Told after each run that changed a working copy (eviction looks at the disk budget). */
  afterSync?: () => void;
  /**
   * Whether this instance owns a repository (affinity, SPEC §1 "Several
   * processes"): only the owner executes its runs; another instance that
   * queues one tells the owner. Default: every repository is this process's.
   */
  owns?: (repositoryId: string) => boolean;
}

/** Abort reason of a run stopped because its repository is being removed. */
class RunCancelled extends Error {}

export type TriggeredRepository = Pick<Repository, 'id' | 'host' | 'status' | 'lastCommitSha'>;

interface ActiveRun {
  runId: string;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * Executes the runs this process has claimed. A global p-queue bounds runs
 * at once; in front of it, one p-queue per host keeps a slow host from
 * occupying every global slot. Coalescing and the one-run-per-repository
 * rule live in the database (RunQueue), not here.
 */
export class SyncEngine {
  private readonly global: PQueue;
  private readonly hosts = new Map<string, PQueue>();
  private readonly scheduled = new Set<string>();
  private readonly active = new Map<string, ActiveRun>();
  /** Claims under way, by run id. */
  private readonly claiming = new Map<string, Promise<unknown>>();
  private abandonedRetry: NodeJS.Timeout | undefined;
  private accepting = true;
  private notices: AsyncIterator<RunQueuedNotice> | undefined;

  constructor(
    private readonly deps: RunDependencies & { prisma: Prisma; events: SyncEvents; logger: Logger },
    private readonly runQueue: RunQueue,
    private readonly metrics: Metrics,
    private readonly options: EngineOptions,
  ) {
    this.global = new PQueue({ concurrency: options.concurrency });
  }

  /**
   * Accepts a trigger: queues a run, or merges it into the one already
   * queued. A caller that has just read the repository passes it along.
   */
  async trigger(request: TriggerRequest, known?: TriggeredRepository): Promise<EnqueueResult> {
    const repository = known ?? (await this.deps.prisma.repository.findUniqueOrThrow({ where: { id: request.repositoryId } }));
    const outdated = Boolean(request.targetSha && request.targetSha !== repository.lastCommitSha);
    const queuedStatus = repository.status === 'PENDING' || repository.status === 'SYNCING' ? repository.status : outdated ? 'OUTDATED' : repository.status;
    const result = await this.runQueue.enqueue(request, queuedStatus);
    this.metrics.triggers.inc({ trigger: request.trigger, coalesced: String(result.coalesced) });
    if (queuedStatus === 'OUTDATED' && repository.status !== 'OUTDATED') {
      await this.deps.prisma.repository.update({ where: { id: repository.id }, data: { status: 'OUTDATED' } });
    }
    if (result.coalesced) {
      this.reprioritise(result.run);
    } else {
      this.deps.events.publish({
        repositoryId: repository.id,
        runId: result.run.id,
        status: queuedStatus,
        phase: 'QUEUED',
        message: `queued by ${request.trigger.toLowerCase()} trigger`,
      });
      this.dispatch(result.run, repository.host);
    }
    return result;
  }

  /**
   * Starts taking the runs other instances queue for repositories this one
   * owns (their notices come through the events' pubsub: Redis or NOTIFY). A
   * notice for a repository this instance does not own is ignored, never
   * passed on: the owner's own sweep (resumeQueued) catches what a notice missed.
   */
  listenForNotices(): void {
    if (this.notices) return;
    const notices = this.deps.events.queuedNotices()[Symbol.asyncIterator]();
    this.notices = notices;
    void (async () => {
      for (;;) {
        const next = await notices.next();
        if (next.done) return;
        const notice = next.value;
        if (this.owns(notice.repositoryId)) this.schedule({ id: notice.runId, repositoryId: notice.repositoryId, priority: notice.priority }, notice.host);
      }
    })().catch((error: unknown) => this.deps.logger.error({ err: error }, 'queued-run notices stopped'));
  }

  private owns(repositoryId: string): boolean {
    return this.options.owns?.(repositoryId) ?? true;
  }

  /** Executes a queued run here when this instance owns its repository, else tells the owner. */
  private dispatch(run: Pick<SyncRun, 'id' | 'repositoryId' | 'priority'>, host: string): void {
    if (this.owns(run.repositoryId)) this.schedule(run, host);
    else this.deps.events.announceQueued({ runId: run.id, repositoryId: run.repositoryId, host, priority: run.priority });
  }

  /** Hands a queued run to the local queues (idempotent). */
  schedule(run: Pick<SyncRun, 'id' | 'repositoryId' | 'priority'>, host: string): void {
    if (!this.accepting || this.scheduled.has(run.id)) return;
    this.scheduled.add(run.id);
    const hostQueue = this.hostQueue(host);
    void hostQueue
      .add(() => this.global.add(() => this.execute(run.id, run.repositoryId, host, run.priority), { priority: run.priority, id: run.id }), {
        priority: run.priority,
        id: run.id,
      })
      .catch((error: unknown) => {
        this.deps.logger.error({ err: error, runId: run.id }, 'sync task crashed');
        // Most likely the database went away mid-claim or as the run ended: its row is put right once it is back.
        this.retryAbandoned();
      })
      .finally(() => this.scheduled.delete(run.id));
    this.updateQueueGauge();
  }

  /**
   * Queues every run waiting in the database for a repository this instance
   * owns (start-up, after another process stopped, when members change, and
   * at each heartbeat while there are several).
   */
  async resumeQueued(): Promise<number> {
    if (!this.accepting) return 0;
    const queued = (await this.runQueue.allQueued()).filter((run) => this.owns(run.repositoryId) && !this.scheduled.has(run.id));
    if (!queued.length) return 0;
    const hosts = await this.hostsOf(queued.map((run) => run.repositoryId));
    for (const run of queued) {
      const host = hosts.get(run.repositoryId);
      if (host) this.schedule(run, host);
    }
    return queued.length;
  }

  /**
   * Runs this instance holds RUNNING in the database but no longer executes
   * go back to the queue, and every queued run it owns is scheduled again.
   * That happens when the database was unreachable as a run was claimed or
   * ended: the row kept the claim, and as this instance is alive no other
   * sweep would ever take it. Returns how many runs were re-queued.
   */
  async requeueAbandoned(): Promise<number> {
    const requeued = await this.runQueue.requeueOrphans(
      this.options.instanceId,
      'interrupted: its end could not be recorded; queued again',
      (run) => this.active.get(run.repositoryId)?.runId === run.id || this.claiming.has(run.id),
    );
    if (requeued) this.deps.logger.warn({ requeuedRuns: requeued }, 'runs whose end could not be recorded were queued again');
    await this.resumeQueued();
    return requeued;
  }

  /** requeueAbandoned() soon, and again with backoff while the database is still away. */
  private retryAbandoned(delayMs = 1_000): void {
    if (this.abandonedRetry || !this.accepting) return;
    this.abandonedRetry = setTimeout(() => {
      this.abandonedRetry = undefined;
      this.requeueAbandoned().catch(() => this.retryAbandoned(Math.min(delayMs * 2, 30_000)));
    }, delayMs).unref();
  }

  /** Stops and forgets a repository's runs (removeRepository). */
  async cancelRepository(repositoryId: string): Promise<void> {
    await this.deps.prisma.syncRun.updateMany({
      where: { repositoryId, activeSlot: 'QUEUED' },
      data: { status: 'CANCELLED', activeSlot: null, finishedAt: new Date(), error: 'repository removed' },
    });
    const active = this.active.get(repositoryId);
    if (active) {
      active.abort.abort(new RunCancelled('repository removed'));
      await active.done;
    }
  }

  isRunning(repositoryId: string): boolean {
    return this.active.has(repositoryId);
  }

  /**
   * Stops intake, lets running runs finish within the grace period, then
   * aborts the rest and puts them back in the queue for the next start.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.accepting = false;
    void this.notices?.return?.();
    this.global.clear();
    for (const queue of this.hosts.values()) queue.clear();
    // A claim that was under way when intake stopped is put back in the queue (execute()).
    clearTimeout(this.abandonedRetry);
    await Promise.allSettled([...this.claiming.values()]);
    const running = [...this.active.values()];
    const allDone = Promise.all(running.map((run) => run.done));
    const timedOut = await Promise.race([
      allDone.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), graceMs).unref()),
    ]);
    if (timedOut) {
      for (const run of this.active.values()) run.abort.abort(new Error('shutting down'));
      await allDone;
    }
  }

  stats(): { queued: number; running: number } {
    let waiting = this.global.size;
    for (const queue of this.hosts.values()) waiting += queue.size;
    return { queued: waiting, running: this.active.size };
  }

  private async execute(runId: string, repositoryId: string, host: string, priority: number): Promise<void> {
    if (!this.accepting) return;
    // The repository moved to another instance while this run waited here (members changed).
    if (!this.owns(repositoryId)) {
      this.deps.events.announceQueued({ runId, repositoryId, host, priority });
      return;
    }
    // shutdown() waits for claims under way: one that lands after intake stopped goes back to the queue.
    const claiming = (async () => {
      const run = await this.runQueue.claim(runId, this.options.instanceId);
      if (run && !this.accepting) {
        await this.runQueue.requeue(run.run.id, 'interrupted by shutdown; queued again');
        return null;
      }
      return run;
    })();
    this.claiming.set(runId, claiming);
    const claimed = await claiming.catch((error: unknown) => {
      this.claiming.delete(runId);
      throw error;
    });
    // Not claimable: another run of this repository is running; it re-schedules this one when it ends.
    if (!claimed) {
      this.claiming.delete(runId);
      return;
    }
    const abort = new AbortController();
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    this.active.set(repositoryId, { runId, abort, done });
    // Only now that it is active: requeueAbandoned never finds a claimed run in neither place.
    this.claiming.delete(runId);
    this.updateQueueGauge();
    const stopTimer = this.metrics.runDuration.startTimer({ trigger: claimed.run.trigger });
    let outcome: RunOutcome = 'FAILED';
    let queued: QueuedRun | null | undefined;
    try {
      // Eviction never removes a copy a run is using (WorkingCopies.ifIdle).
      ({ outcome, queued } = await this.deps.copies.exclusive(repositoryId, () => executeRun(this.deps, claimed, abort.signal)));
    } catch (error) {
      outcome = await this.afterInterruptedRun(claimed.run, abort.signal, error);
    } finally {
      stopTimer({ outcome });
      if (outcome === 'SUCCEEDED') this.options.afterSync?.();
      this.metrics.runs.inc({ trigger: claimed.run.trigger, outcome });
      this.active.delete(repositoryId);
      finish();
      this.updateQueueGauge();
    }
    if (!this.accepting) return;
    // A run queued while this one ran waits for it (its claim failed): it is scheduled from here.
    const next = queued === undefined ? await this.runQueue.nextQueued(repositoryId).catch(() => null) : queued;
    if (next) this.dispatch(next, host);
  }

  private async afterInterruptedRun(run: SyncRun, signal: AbortSignal, error: unknown): Promise<RunOutcome> {
    const exists = await this.deps.prisma.repository.count({ where: { id: run.repositoryId } });
    if (!exists) return 'CANCELLED';
    if (signal.reason instanceof RunCancelled) {
      await this.deps.prisma.syncRun.update({
        where: { id: run.id },
        data: { status: 'CANCELLED', activeSlot: null, phase: 'FAILED', finishedAt: new Date(), error: 'repository removed' },
      });
      return 'CANCELLED';
    }
    if (signal.aborted) {
      await this.runQueue.requeue(run.id, 'interrupted by shutdown; queued again');
      await this.deps.prisma.repository.updateMany({ where: { id: run.repositoryId, status: 'SYNCING' }, data: { status: 'OUTDATED' } });
      return 'CANCELLED';
    }
    this.deps.logger.error({ err: error, runId: run.id }, 'sync run crashed');
    await this.deps.prisma.syncRun.update({
      where: { id: run.id },
      data: { status: 'FAILED', activeSlot: null, phase: 'FAILED', finishedAt: new Date(), error: 'internal error' },
    });
    return 'FAILED';
  }

  private reprioritise(run: SyncRun): void {
    for (const queue of [this.global, ...this.hosts.values()]) {
      try {
        queue.setPriority(run.id, run.priority);
      } catch {
        // not waiting in this queue (already running or elsewhere)
      }
    }
  }

  private hostQueue(host: string): PQueue {
    let queue = this.hosts.get(host);
    if (!queue) {
      queue = new PQueue({ concurrency: this.options.hostConcurrency });
      this.hosts.set(host, queue);
    }
    return queue;
  }

  private async hostsOf(repositoryIds: string[]): Promise<Map<string, string>> {
    const rows = await this.deps.prisma.repository.findMany({
      where: { id: { in: repositoryIds } },
      select: { id: true, host: true },
    });
    return new Map(rows.map((row) => [row.id, row.host]));
  }

  private updateQueueGauge(): void {
    const { queued, running } = this.stats();
    this.metrics.queueDepth.set(queued);
    this.metrics.runningRuns.set(running);
  }
}
