import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Repository, Snapshot } from '../generated/prisma/client.js';
import type { Metrics } from '../metrics.js';
import { archiveKeys, type ArchiveStore } from '../storage/archiveStore.js';
import type { Prisma } from '../storage/database.js';
import { blobsOf, readManifest, storeFileArtifacts } from '../storage/fileArtifacts.js';
import { extractSnapshot, packWorkingCopy } from '../storage/snapshotArchive.js';
import { hasObject, type WorkingCopies } from '../storage/workingCopies.js';
import type { Git } from './git.js';
import { redactSecrets } from './redact.js';

export interface ArchiverOptions {
  keepSnapshots: number;
  restoreLimits: { maxBytes: number; maxEntries: number };
  /** First wait between attempts (doubled each time). */
  retryMs: number;
  /** Unreferenced objects younger than this are left to the next collection (an upload may be about to reference them). */
  collectGraceMs: number;
}

export type ArchivedRepository = Pick<Repository, 'id' | 'archivePolicy' | 's3ArchiveUrl'>;

export interface ArchiveOutcome {
  /** archiveUrl of the commit's snapshot; null when it was not archived (policy, or failure). */
  archiveUrl: string | null;
  /** Bytes of the working copy's files, measured while packing. */
  localBytes: number | null;
  /** Why the commit could not be archived: the run records it and still succeeds. */
  warning: string | null;
}

const attempts = 3;
const day = 24 * 60 * 60 * 1000;

/**
 * The ARCHIVING phase and the RESTORE strategy (SPEC §1, §2): snapshots and
 * per-file artifacts of a synced commit in the archive store, retention, and
 * restoring a working copy from the newest snapshot. Runs inside a
 * repository's sync run, so nothing else touches the copy or the
 * repository's objects meanwhile (one run per repository).
 */
export class Archiver {
  constructor(
    private readonly prisma: Prisma,
    private readonly store: ArchiveStore,
    private readonly git: Git,
    private readonly copies: WorkingCopies,
    private readonly logger: Logger,
    private readonly metrics: Pick<Metrics, 'archiveDuration' | 'archiveObjects'>,
    private readonly options: ArchiverOptions,
  ) {}

  /** Whether the policy asks for an archive of this commit now (no store round trip: the URL names the commit). */
  async due(repository: ArchivedRepository, commitSha: string, now = new Date()): Promise<boolean> {
    if (repository.archivePolicy === 'NONE') return false;
    if (repository.s3ArchiveUrl === this.store.urlOf(archiveKeys.snapshot(repository.id, commitSha))) return false;
    if (repository.archivePolicy === 'EACH_SYNC') return true;
    const newest = await this.newestSnapshot(repository.id);
    return !newest || now.getTime() - newest.createdAt.getTime() >= day;
  }

  /** Archives the working copy at commitSha; failures are retried, then reported as a warning, never thrown. */
  async archive(repository: ArchivedRepository, commitSha: string, signal: AbortSignal): Promise<ArchiveOutcome> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const outcome = await this.archiveOnce(repository.id, commitSha, signal);
        await this.applyRetention(repository.id).catch((error: unknown) =>
          this.logger.warn({ repositoryId: repository.id, err: describe(error) }, 'archive retention failed; tried again after the next archive'),
        );
        return outcome;
      } catch (error) {
        if (signal.aborted) throw error;
        lastError = error;
        this.logger.warn({ repositoryId: repository.id, attempt, err: describe(error) }, 'archiving failed');
        if (attempt < attempts) await sleep(this.options.retryMs * 2 ** (attempt - 1), signal);
      }
    }
    return { archiveUrl: null, localBytes: null, warning: `archive not stored after ${attempts} attempts: ${describe(lastError)}` };
  }

  private async archiveOnce(repositoryId: string, commitSha: string, signal: AbortSignal): Promise<ArchiveOutcome> {
    const cwd = this.copies.pathOf(repositoryId);
    const previous = await this.prisma.snapshot.findFirst({
      where: { repositoryId, manifestKey: { not: null } },
      orderBy: { createdAt: 'desc' },
    });
    const stored = previous?.manifestKey ? await readManifest(this.store, previous.manifestKey).then((manifest) => (manifest ? blobsOf(manifest) : null), () => null) : null;
    const artifacts = await this.timed('artifacts', () => storeFileArtifacts(this.git, this.store, { repositoryId, cwd, commitSha, stored, signal }));
    this.metrics.archiveObjects.inc({ part: 'blob' }, artifacts.uploaded - 1);
    this.metrics.archiveObjects.inc({ part: 'manifest' });

    const key = archiveKeys.snapshot(repositoryId, commitSha);
    let bytes: number;
    let sha256: string;
    let localBytes: number | null = null;
    const existing = await this.store.head(key);
    if (existing) {
      // Stored before (a run that stopped before recording it): not uploaded again, only its checksum read.
      bytes = existing.bytes;
      sha256 = await this.checksumOf(key, signal);
    } else {
      const summary = await this.timed('snapshot', async () => {
        const packed = packWorkingCopy(cwd, { signal });
        return (await Promise.all([packed.done, this.store.put(key, packed.stream, { signal })]))[0];
      });
      this.metrics.archiveObjects.inc({ part: 'snapshot' });
      ({ sha256, compressedBytes: bytes } = summary);
      localBytes = summary.bytes;
    }
    await this.prisma.snapshot.upsert({
      where: { repositoryId_commitSha: { repositoryId, commitSha } },
      create: { repositoryId, commitSha, key, bytes, sha256, manifestKey: artifacts.manifestKey },
      update: { key, bytes, sha256, manifestKey: artifacts.manifestKey, createdAt: new Date() },
    });
    this.logger.debug({ repositoryId, commitSha, bytes, blobsUploaded: artifacts.uploaded - 1 }, 'commit archived');
    return { archiveUrl: this.store.urlOf(key), localBytes, warning: null };
  }

  private async timed<T>(part: 'snapshot' | 'artifacts', work: () => Promise<T>): Promise<T> {
    const stop = this.metrics.archiveDuration.startTimer({ part });
    try {
      const result = await work();
      stop({ outcome: 'stored' });
      return result;
    } catch (error) {
      stop({ outcome: 'failed' });
      throw error;
    }
  }

  private async checksumOf(key: string, signal: AbortSignal): Promise<string> {
    const body = await this.store.get(key, { signal });
    if (!body) throw new Error(`${key} disappeared while being read`);
    const hash = createHash('sha256');
    await pipeline(body, async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) hash.update(chunk);
    });
    return hash.digest('hex');
  }

  /**
   * Keeps the newest snapshots; then deletes manifests of commits no kept
   * snapshot names, and blobs no kept manifest names, when older than the
   * grace period. Manifests are written after their blobs, so a blob being
   * uploaded is either young or already named by the manifest it belongs to.
   */
  async applyRetention(repositoryId: string): Promise<void> {
    const snapshots = await this.prisma.snapshot.findMany({ where: { repositoryId }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] });
    const dropped = snapshots.slice(this.options.keepSnapshots);
    if (!dropped.length) return;
    const kept = snapshots.slice(0, this.options.keepSnapshots);
    await this.store.delete(dropped.map((snapshot) => snapshot.key));
    await this.prisma.snapshot.deleteMany({ where: { id: { in: dropped.map((snapshot) => snapshot.id) } } });

    const cutoff = Date.now() - this.options.collectGraceMs;
    const keptManifests = new Set(kept.map((snapshot) => snapshot.manifestKey).filter((key): key is string => key !== null));
    const referenced = new Set<string>();
    for (const key of keptManifests) {
      const manifest = await readManifest(this.store, key);
      if (manifest) for (const blob of blobsOf(manifest)) referenced.add(blob);
    }
    const garbage: string[] = [];
    for await (const object of this.store.list(archiveKeys.manifests(repositoryId))) {
      if (!keptManifests.has(object.key) && object.lastModified.getTime() < cutoff) garbage.push(object.key);
    }
    const blobs = archiveKeys.blobs(repositoryId);
    for await (const object of this.store.list(blobs)) {
      if (!referenced.has(object.key.slice(blobs.length)) && object.lastModified.getTime() < cutoff) garbage.push(object.key);
    }
    await this.store.delete(garbage);
    this.logger.info({ repositoryId, snapshotsDropped: dropped.length, objectsCollected: garbage.length }, 'archive retention applied');
  }

  newestSnapshot(repositoryId: string): Promise<Snapshot | null> {
    return this.prisma.snapshot.findFirst({ where: { repositoryId }, orderBy: { createdAt: 'desc' } });
  }

  /**
   * RESTORE: a snapshot (the newest), checked against its recorded checksum
   * and extracted safely into a temporary folder, becomes the working copy once
   * it is a repository at the recorded commit. Throws when it cannot be used.
   */
  async restore(snapshot: Snapshot, signal: AbortSignal): Promise<void> {
    const { repositoryId } = snapshot;
    const body = await this.store.get(snapshot.key, { signal });
    if (!body) throw new Error(`snapshot ${snapshot.key} is missing from the archive store`);
    const temporary = this.copies.newTemporaryPath(repositoryId);
    try {
      await mkdir(temporary, { recursive: true });
      const hash = createHash('sha256');
      const tap = new PassThrough();
      tap.on('data', (chunk: Buffer) => hash.update(chunk));
      body.once('error', (error) => tap.destroy(error));
      body.pipe(tap);
      await extractSnapshot(tap, temporary, this.options.restoreLimits, { signal });
      if (hash.digest('hex') !== snapshot.sha256) throw new Error(`snapshot ${snapshot.key} does not match its recorded checksum`);
      const head = await this.copies.headOf(temporary);
      if (head?.sha !== snapshot.commitSha || !(await hasObject(path.join(temporary, '.git'), snapshot.commitSha))) {
        throw new Error(`snapshot ${snapshot.key} is not a repository at ${snapshot.commitSha}`);
      }
      await this.git.run(['cat-file', '-e', `${snapshot.commitSha}^{tree}`], { cwd: temporary, signal });
      // Extracted files have new inodes and times: the index learns them, or the next checkout rewrites every file.
      await this.git.run(['update-index', '-q', '--refresh'], { cwd: temporary, signal }).catch(() => undefined);
      await this.copies.swapIn(repositoryId, temporary);
    } catch (error) {
      await this.copies.discard(temporary);
      throw error;
    }
  }

  /** removeRepository: every object under repos/<id>/. */
  async removeRepository(repositoryId: string): Promise<number> {
    const keys: string[] = [];
    for await (const object of this.store.list(archiveKeys.repository(repositoryId))) keys.push(object.key);
    await this.store.delete(keys);
    return keys.length;
  }
}

function describe(error: unknown): string {
  return redactSecrets(error instanceof Error ? error.message : String(error));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason as Error)), { once: true });
  });
}
