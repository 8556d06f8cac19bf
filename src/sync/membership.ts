import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { InstanceLease, Prisma } from '../storage/database.js';

export interface MembershipOptions {
  /** How often this instance writes its heartbeat and reads the others'. */
  heartbeatMs: number;
  /** A member whose heartbeat is older than this is gone (a hung process; a killed one is seen at once by its lease). */
  ttlMs: number;
}

export interface MembershipChange {
  joined: string[];
  left: string[];
  members: readonly string[];
}

/** Rendezvous weight of a member for a key: the first 48 bits of sha256(member NUL key). */
function weight(member: string, key: string): number {
  return createHash('sha256').update(member).update('\0').update(key).digest().readUIntBE(0, 6);
}

/**
 * Highest-random-weight (rendezvous) hashing: the member with the highest
 * weight for the key owns it. A member that joins takes only the keys it now
 * weighs most for; one that leaves gives up only its own: every other key
 * stays where it was.
 */
export function rendezvousOwner(key: string, members: readonly string[]): string {
  let best: string | undefined;
  let bestWeight = -1;
  for (const member of members) {
    const w = weight(member, key);
    if (w > bestWeight || (w === bestWeight && best !== undefined && member < best)) {
      best = member;
      bestWeight = w;
    }
  }
  if (best === undefined) throw new Error('no members to assign to');
  return best;
}

/**
 * Affinity of SPEC §1 "Several processes": the instances sharing the database
 * record themselves in the Instance table and renew a heartbeat; a repository
 * belongs to the live instance that rendezvous hashing picks, which keeps its
 * working copy on its disk and executes its runs. A member is live while its
 * heartbeat is fresh and its advisory-lock lease is held (a killed process
 * loses the lease with its connection, so it leaves at the next heartbeat, not
 * after the whole TTL). One process alone, or the embedded database, owns
 * everything.
 */
export class Membership {
  private members: readonly string[];
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;
  private url: string | null = null;
  private started = false;
  /** Told after every heartbeat with the view it read (joined and left are empty when nothing changed). */
  onHeartbeat: ((view: MembershipChange) => void) | undefined;

  constructor(
    private readonly prisma: Prisma,
    private readonly lease: InstanceLease,
    readonly instanceId: string,
    private readonly logger: Logger,
    private readonly options: MembershipOptions | null,
  ) {
    this.members = [instanceId];
  }

  /**
   * Records this instance (with where its HTTP server listens, for operators) and reads the others;
   * renews both every heartbeat. No-op without options (one process).
   */
  async start(url?: string): Promise<void> {
    if (!this.options) return;
    this.url = url ?? null;
    await this.beat();
    await this.refresh();
    this.timer = setInterval(() => void this.tick(), this.options.heartbeatMs);
    this.timer.unref();
  }

  /** The live members, this one included, in a stable order. */
  live(): readonly string[] {
    return this.members;
  }

  owner(repositoryId: string): string {
    return this.members.length === 1 ? this.members[0]! : rendezvousOwner(repositoryId, this.members);
  }

  owns(repositoryId: string): boolean {
    return this.owner(repositoryId) === this.instanceId;
  }

  /** One heartbeat now (tests, and the timer). */
  tick(): Promise<void> {
    this.ticking ??= (async () => {
      try {
        await this.beat();
        await this.refresh();
      } catch (error) {
        // The view is kept: a database blip must not reshuffle every repository.
        this.logger.warn({ err: (error as Error).message }, 'instance heartbeat failed; keeping the last view of the cluster');
      }
    })().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  /** Leaves the cluster: the others take this instance's repositories at their next heartbeat. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    if (!this.options) return;
    await this.prisma.instance.deleteMany({ where: { id: this.instanceId } }).catch((error: unknown) => {
      this.logger.warn({ err: (error as Error).message }, 'could not remove this instance from the cluster; it ages out');
    });
  }

  /** Inserts this instance's row when it is missing: another instance that saw its lease lost for a moment removed it. */
  private async beat(): Promise<void> {
    await this.prisma.$executeRaw`
      INSERT INTO "Instance" (id, url, "startedAt", "heartbeatAt")
      VALUES (${this.instanceId}, ${this.url}, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
      ON CONFLICT (id) DO UPDATE SET "heartbeatAt" = EXCLUDED."heartbeatAt"`;
  }

  private async refresh(): Promise<void> {
    const ttlSeconds = this.options!.ttlMs / 1000;
    const rows = await this.prisma.$queryRaw<{ id: string }[]>`
      SELECT id FROM "Instance" WHERE "heartbeatAt" > (now() AT TIME ZONE 'UTC') - make_interval(secs => ${ttlSeconds}) ORDER BY id`;
    const live: string[] = [];
    for (const { id } of rows) {
      if (id === this.instanceId || (await this.lease.isAlive(id))) live.push(id);
      else await this.prisma.instance.deleteMany({ where: { id } });
    }
    // This instance counts itself even when its own heartbeat is late: it still serves.
    if (!live.includes(this.instanceId)) live.push(this.instanceId);
    live.sort();
    if (this.stopped) return;
    const before = new Set(this.members);
    const after = new Set(live);
    const joined = live.filter((id) => !before.has(id));
    const left = this.members.filter((id) => !after.has(id));
    this.members = live;
    // The first view is where this instance starts, not a change.
    const first = !this.started;
    this.started = true;
    if (!first && (joined.length || left.length)) this.logger.info({ joined, left, instances: live.length }, 'cluster membership changed');
    this.onHeartbeat?.({ joined, left, members: live });
  }
}
