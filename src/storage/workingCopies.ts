import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

const syncingMarker = 'repolens-syncing';
const repositoryIdPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type CopyHealth = { healthy: true; head: string } | { healthy: false; reason: string };

/**
 * Working copies live in $DATA_DIR/repos/<repositoryId>; clones are made in
 * $DATA_DIR/tmp and renamed into place, so a copy is either the last good one
 * or the new one, never half of each.
 */
export class WorkingCopies {
  readonly reposDir: string;
  readonly tmpDir: string;
  /** Copies a run or an eviction is working on in this process. */
  private readonly inUse = new Map<string, Promise<unknown>>();

  constructor(dataDir: string) {
    this.reposDir = path.join(dataDir, 'repos');
    this.tmpDir = path.join(dataDir, 'tmp');
  }

  async init(): Promise<void> {
    await mkdir(this.reposDir, { recursive: true });
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  /** Runs work on a copy with nothing else touching it (a sync run); waits for the one in progress. */
  async exclusive<T>(repositoryId: string, work: () => Promise<T>): Promise<T> {
    for (let busy = this.inUse.get(repositoryId); busy; busy = this.inUse.get(repositoryId)) await busy.catch(() => undefined);
    return this.hold(repositoryId, work);
  }

  /** Like exclusive, but gives up at once (null) when the copy is in use: eviction never waits for a run. */
  async ifIdle<T>(repositoryId: string, work: () => Promise<T>): Promise<T | null> {
    return this.inUse.has(repositoryId) ? null : this.hold(repositoryId, work);
  }

  private async hold<T>(repositoryId: string, work: () => Promise<T>): Promise<T> {
    const running = work();
    this.inUse.set(repositoryId, running);
    try {
      return await running;
    } finally {
      this.inUse.delete(repositoryId);
    }
  }

  /** Ids of the working copies on this disk (folders named like a repository id: anything else is not ours to judge). */
  async present(): Promise<string[]> {
    return (await readdir(this.reposDir, { withFileTypes: true }).catch(() => []))
      .filter((entry) => entry.isDirectory() && repositoryIdPattern.test(entry.name))
      .map((entry) => entry.name);
  }

  /** Bytes of a copy's files (what eviction frees), walked without following symlinks. */
  async sizeOf(repositoryId: string): Promise<number> {
    let total = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.isFile()) total += (await stat(full).catch(() => null))?.size ?? 0;
      }
    };
    await walk(this.pathOf(repositoryId));
    return total;
  }

  pathOf(repositoryId: string): string {
    return path.join(this.reposDir, repositoryId);
  }

  async exists(repositoryId: string): Promise<boolean> {
    return stat(this.pathOf(repositoryId)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Reads HEAD straight from .git (no git process), so a check pass over
   * thousands of repositories costs file reads only. A copy whose last update
   * was interrupted still carries the syncing marker and is not healthy.
   */
  async health(repositoryId: string): Promise<CopyHealth> {
    const gitDir = path.join(this.pathOf(repositoryId), '.git');
    const headFile = await readFile(path.join(gitDir, 'HEAD'), 'utf8').catch(() => null);
    if (headFile === null) return { healthy: false, reason: 'no repository' };
    if (await stat(path.join(gitDir, syncingMarker)).then(() => true, () => false)) {
      return { healthy: false, reason: 'an update was interrupted' };
    }
    const head = await resolveHead(gitDir, headFile.trim());
    if (!head) return { healthy: false, reason: 'HEAD is missing' };
    // Fetches tell the server they have HEAD: a store that lost it would get a pack on top of nothing.
    if (!(await hasObject(gitDir, head))) return { healthy: false, reason: 'the HEAD commit is missing from the object store' };
    return { healthy: true, head };
  }

  /**
   * Points refs/remotes/origin/<branch> at a fetched commit, as git fetch
   * would, when the objects came without it (packFetch.ts): a loose ref,
   * written to a temporary file and renamed, git's own way of updating one.
   */
  async setTrackingRef(repositoryId: string, branch: string, sha: string): Promise<void> {
    if (!/^[0-9a-f]{40,64}$/.test(sha)) throw new Error(`not an object id: ${sha}`);
    if (!isValidBranchName(branch)) throw new Error(`not a valid branch name: ${JSON.stringify(branch)}`);
    const file = path.join(this.pathOf(repositoryId), '.git', 'refs', 'remotes', 'origin', ...branch.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${randomUUID()}.tmp`;
    await writeFile(temporary, `${sha}\n`);
    await rename(temporary, file);
  }

  /** HEAD of a work tree (a fresh clone), read from its files: the commit and the branch it is on. */
  async headOf(workTree: string): Promise<{ sha: string; branch: string | null } | null> {
    const gitDir = path.join(workTree, '.git');
    const headFile = (await readFile(path.join(gitDir, 'HEAD'), 'utf8').catch(() => '')).trim();
    const sha = await resolveHead(gitDir, headFile);
    if (!sha) return null;
    return { sha, branch: /^ref: refs\/heads\/(\S+)$/.exec(headFile)?.[1] ?? null };
  }

  async markSyncing(repositoryId: string): Promise<void> {
    await writeFile(path.join(this.pathOf(repositoryId), '.git', syncingMarker), String(process.pid));
  }

  async clearSyncing(repositoryId: string): Promise<void> {
    await rm(path.join(this.pathOf(repositoryId), '.git', syncingMarker), { force: true });
  }

  newTemporaryPath(repositoryId: string): string {
    return path.join(this.tmpDir, `${repositoryId}-${randomUUID()}`);
  }

  /** Moves a finished clone into place; the previous copy is removed only after the swap. */
  async swapIn(repositoryId: string, clonePath: string): Promise<void> {
    const target = this.pathOf(repositoryId);
    const retired = path.join(this.tmpDir, `retired-${repositoryId}-${randomUUID()}`);
    const hadCopy = await rename(target, retired).then(
      () => true,
      () => false,
    );
    await rename(clonePath, target);
    if (hadCopy) await rm(retired, { recursive: true, force: true });
  }

  async remove(repositoryId: string): Promise<void> {
    await rm(this.pathOf(repositoryId), { recursive: true, force: true });
  }

  async discard(temporaryPath: string): Promise<void> {
    await rm(temporaryPath, { recursive: true, force: true });
  }

  /** Lock files a killed git left behind would block every later update. */
  async removeStaleLocks(repositoryId: string): Promise<string[]> {
    const gitDir = path.join(this.pathOf(repositoryId), '.git');
    const removed: string[] = [];
    const visit = async (dir: string, depth: number): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory() && depth < 4 && entry.name !== 'objects') await visit(full, depth + 1);
        else if (entry.isFile() && entry.name.endsWith('.lock')) {
          await rm(full, { force: true });
          removed.push(path.relative(gitDir, full));
        }
      }
    };
    await visit(gitDir, 0);
    return removed;
  }
}

/** A name git accepts for a branch (git check-ref-format's rules), at most 255 characters. */
export function isValidBranchName(name: string): boolean {
  return (
    name.length > 0 &&
    name.length <= 255 &&
    !/(^[-/.])|([/.]$)|\.\.|\/\/|@\{|[\u0000-\u0020\u007f~^:?*[\\]|\.lock(\/|$)/.test(name) &&
    !name.split('/').some((part) => part.startsWith('.'))
  );
}

/**
 * Whether the object store holds an object: a loose file, or an entry of a
 * pack index (version 2: a 256-entry fan-out table, then the sorted ids,
 * searched with a few small reads).
 */
export async function hasObject(gitDir: string, sha: string): Promise<boolean> {
  const objects = path.join(gitDir, 'objects');
  if (await stat(path.join(objects, sha.slice(0, 2), sha.slice(2))).then(() => true, () => false)) return true;
  const packDir = path.join(objects, 'pack');
  const indexes = (await readdir(packDir).catch(() => [] as string[])).filter((name) => name.endsWith('.idx'));
  const id = Buffer.from(sha, 'hex');
  for (const index of indexes) {
    if (await packIndexHolds(path.join(packDir, index), id)) return true;
  }
  return false;
}

async function packIndexHolds(file: string, id: Buffer): Promise<boolean> {
  const handle = await open(file, 'r').catch(() => null);
  if (!handle) return false;
  try {
    const header = Buffer.alloc(8);
    await handle.read(header, 0, 8, 0);
    // "\377tOc" version 2; version 1 indexes (no header) are not written by any git of this century.
    if (header.readUInt32BE(0) !== 0xff744f63 || header.readUInt32BE(4) !== 2) return false;
    // Fan-out entry b (after the header) counts the ids whose first byte is at most b.
    const first = id[0]!;
    let low = first === 0 ? 0 : await readUInt32(handle, 8 + 4 * (first - 1));
    let high = await readUInt32(handle, 8 + 4 * first);
    const entry = Buffer.alloc(id.length);
    const idsAt = 8 + 256 * 4;
    while (low < high) {
      const middle = (low + high) >>> 1;
      await handle.read(entry, 0, id.length, idsAt + middle * id.length);
      const order = entry.compare(id);
      if (order === 0) return true;
      if (order < 0) low = middle + 1;
      else high = middle;
    }
    return false;
  } finally {
    await handle.close();
  }
}

async function readUInt32(handle: Awaited<ReturnType<typeof open>>, position: number): Promise<number> {
  const buffer = Buffer.alloc(4);
  await handle.read(buffer, 0, 4, position);
  return buffer.readUInt32BE(0);
}

async function resolveHead(gitDir: string, head: string): Promise<string | null> {
  if (/^[0-9a-f]{40,64}$/.test(head)) return head;
  const ref = /^ref: (refs\/\S+)$/.exec(head)?.[1];
  if (!ref) return null;
  const loose = await readFile(path.join(gitDir, ref), 'utf8').catch(() => null);
  if (loose && /^[0-9a-f]{40,64}\s*$/.test(loose)) return loose.trim();
  const packed = await readFile(path.join(gitDir, 'packed-refs'), 'utf8').catch(() => '');
  for (const line of packed.split('\n')) {
    const [sha, name] = line.split(' ');
    if (name === ref && sha && /^[0-9a-f]{40,64}$/.test(sha)) return sha;
  }
  return null;
}
