import type { Logger } from 'pino';
import type { ArchiveStore } from '../storage/archiveStore.js';
import type { Prisma } from '../storage/database.js';
import type { WorkingCopies } from '../storage/workingCopies.js';

export interface EvictionOptions {
  /** Total bytes of working copies this disk may hold; undefined: no budget. */
  budgetBytes?: number | undefined;
  /** Copies unused for this long are evicted; undefined: no age limit. */
  maxIdleMs?: number | undefined;
}

interface Candidate {
  id: string;
  bytes: number;
  usedAt: number;
  /** The snapshot of the copy's commit, when there is one. */
  snapshotKey: string | null;
}

/**
 * Removes local working copies that the archive store can give back (SPEC
 * §2): over the disk budget, the least recently used first; and any unused
 * for longer than the idle limit. Only a copy whose current commit has a
 * snapshot in the store, and that no run is using, is ever removed; the next
 * sync restores it (RESTORE strategy).
 */
export class Evictor {
  private running: Promise<string[]> | null = null;
  private again = false;

  constructor(
    private readonly prisma: Prisma,
    private readonly copies: WorkingCopies,
    private readonly store: ArchiveStore,
    private readonly logger: Logger,
    private readonly options: EvictionOptions,
  ) {}

  get enabled(): boolean {
    return this.options.budgetBytes !== undefined || this.options.maxIdleMs !== undefined;
  }

  /** Starts a pass (one at a time; a request during a pass runs one more after it). */
  request(): void {
    if (!this.enabled) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((error: unknown) => {
        this.logger.error({ err: error }, 'eviction pass failed');
        return [];
      })
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }

  /** Waits for the pass in progress, if any. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** One pass; returns the ids of the evicted copies. */
  async pass(now = Date.now()): Promise<string[]> {
    const candidates = await this.candidates();
    let total = candidates.reduce((sum, candidate) => sum + candidate.bytes, 0);
    const evicted: string[] = [];
    // Least recently used first.
    candidates.sort((a, b) => a.usedAt - b.usedAt);
    for (const candidate of candidates) {
      const overBudget = this.options.budgetBytes !== undefined && total > this.options.budgetBytes;
      const idle = this.options.maxIdleMs !== undefined && now - candidate.usedAt > this.options.maxIdleMs;
      if (!overBudget && !idle) continue;
      if (!candidate.snapshotKey || !(await this.store.head(candidate.snapshotKey).catch(() => null))) continue;
      const removed = await this.copies.ifIdle(candidate.id, async () => {
        await this.copies.remove(candidate.id);
        await this.prisma.repository.updateMany({ where: { id: candidate.id }, data: { localBytes: null } });
        return true;
      });
      if (!removed) continue;
      total -= candidate.bytes;
      evicted.push(candidate.id);
      this.logger.info({ repositoryId: candidate.id, bytes: candidate.bytes, reason: overBudget ? 'over the local budget' : 'idle' }, 'working copy evicted');
    }
    return evicted;
  }

  /**
   * Removes the copies on this disk whose repository no longer exists: one
   * removed through another instance (several processes, SPEC §1) leaves its
   * copy here, since only the instance that took the request cleans its own disk.
   * A copy appears only after its repository's row, so none is taken too early.
   */
  async removeStray(): Promise<string[]> {
    const ids = await this.copies.present();
    if (!ids.length) return [];
    const known = new Set((await this.prisma.repository.findMany({ where: { id: { in: ids } }, select: { id: true } })).map((row) => row.id));
    const removed: string[] = [];
    for (const id of ids.filter((candidate) => !known.has(candidate))) {
      if (await this.copies.ifIdle(id, async () => (await this.copies.remove(id), true))) removed.push(id);
    }
    if (removed.length) this.logger.info({ repositoryIds: removed }, 'working copies of removed repositories deleted');
    return removed;
  }

  private async candidates(): Promise<Candidate[]> {
    const ids = await this.copies.present();
    if (!ids.length) return [];
    const rows = await this.prisma.repository.findMany({
      where: { id: { in: ids } },
      select: { id: true, lastCommitSha: true, localBytes: true, localUsedAt: true, lastSyncedAt: true, createdAt: true },
    });
    const snapshots = await this.prisma.snapshot.findMany({
      where: { OR: rows.filter((row) => row.lastCommitSha).map((row) => ({ repositoryId: row.id, commitSha: row.lastCommitSha! })) },
      select: { repositoryId: true, key: true },
    });
    const snapshotOf = new Map(snapshots.map((snapshot) => [snapshot.repositoryId, snapshot.key]));
    const candidates: Candidate[] = [];
    for (const row of rows) {
      let bytes = row.localBytes;
      if (bytes === null) {
        // Measured once (a copy that is not archived has no size from packing) and remembered.
        bytes = await this.copies.sizeOf(row.id);
        await this.prisma.repository.updateMany({ where: { id: row.id }, data: { localBytes: bytes } });
      }
      const usedAt = (row.localUsedAt ?? row.lastSyncedAt ?? row.createdAt).getTime();
      candidates.push({ id: row.id, bytes, usedAt, snapshotKey: snapshotOf.get(row.id) ?? null });
    }
    return candidates;
  }
}
