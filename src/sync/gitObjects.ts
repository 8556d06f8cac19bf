import { PassThrough, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Git } from './git.js';

// Reading a repository's objects without its working tree: trees (ls-tree, or
// tree objects), the differences between two commits, commits and blobs, through
// `git cat-file --batch`. Indexing and the per-file archive artifacts share these.

/** One entry of a commit's tree (`git ls-tree -r -l`). */
export interface TreeEntry {
  path: string;
  /** git's mode: 100644, 100755, 120000 (symlink), 160000 (submodule). */
  mode: string;
  /** Blob id (commit id for a submodule). */
  sha: string;
  size: number;
}

/** A path changed between two commits (see diffCommits); a rename is its two sides. */
export interface TreeChange {
  status: 'A' | 'M' | 'D' | 'T';
  path: string;
  oldSha: string | null;
  oldMode: string | null;
  newSha: string | null;
  newMode: string | null;
}

/** Every path of a commit, submodules included (their mode says what they are). */
export async function listTree(git: Git, cwd: string, commitSha: string, signal?: AbortSignal): Promise<TreeEntry[]> {
  return parseTree((await git.run(['ls-tree', '-r', '-l', '-z', '--full-tree', commitSha], { cwd, ...(signal ? { signal } : {}) })).stdout);
}

/** `git ls-tree -l -z` output: "<mode> <type> <id> <size>\t<path>" per entry. */
function parseTree(stdout: string): TreeEntry[] {
  const entries: TreeEntry[] = [];
  for (const record of stdout.split('\0')) {
    if (!record) continue;
    const tab = record.indexOf('\t');
    const [mode = '', , sha = '', size = '-'] = record.slice(0, tab).split(/ +/);
    entries.push({ path: record.slice(tab + 1), mode, sha, size: size === '-' ? 0 : Number(size) });
  }
  return entries;
}

/** A commit object's author (name), author date and message. */
export interface CommitInfo {
  author: string;
  at: Date;
  message: string;
}

/** Reads a raw commit object (as `git cat-file commit` prints it). */
export function parseCommit(content: Buffer): CommitInfo {
  const text = content.toString('utf8');
  const blank = text.indexOf('\n\n');
  const headers = blank < 0 ? text : text.slice(0, blank);
  const author = /^author (.*) <[^>]*> (\d+) [+-]\d{4}$/m.exec(headers);
  return {
    author: author?.[1] ?? '',
    at: new Date(Number(author?.[2] ?? Number.NaN) * 1000),
    message: blank < 0 ? '' : text.slice(blank + 2).trimEnd(),
  };
}

/** Where one object's content goes, as `git cat-file --batch` streams it. */
export interface BlobSink {
  /** A piece of the content (awaited: backpressure reaches git). */
  write(chunk: Buffer): void | Promise<void>;
  /** The content is complete. */
  end(): void | Promise<void>;
}

type ObjectType = 'blob' | 'commit' | 'tree';

/** A request to the reader: its objects' answers go to `open`'s sinks, in order. */
interface Batch {
  remaining: number;
  open: (id: string, type: ObjectType, size: number) => BlobSink;
  error: unknown;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * One `git cat-file --batch` kept open for several rounds of requests (its
 * output is "<id> <type> <size>\n<content>\n" per object, "<id> missing\n"
 * for an unknown one): a commit's trees can be walked and its blobs read by
 * one process. Spawning git is the dearest part of small reads, so a reader
 * serves a whole indexing pass. A sink that waits makes git wait.
 */
export class ObjectReader {
  private readonly requests = new PassThrough();
  private readonly batches: Batch[] = [];
  private pending: Buffer = Buffer.alloc(0);
  private current: { remaining: number; sink: BlobSink; batch: Batch } | null = null;
  private readonly running: Promise<void>;
  private failure: unknown = null;

  constructor(git: Git, cwd: string, signal?: AbortSignal) {
    const output = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
        this.consume().then(() => callback(), callback);
      },
    });
    this.running = Promise.all([
      git.run(['cat-file', '--batch'], { cwd, stdin: this.requests, stdout: output, ...(signal ? { signal } : {}) }),
      finished(output),
    ]).then(
      () => undefined,
      (error: unknown) => {
        this.failure = error;
        for (const batch of this.batches.splice(0)) batch.reject(error);
        throw error;
      },
    );
    // Reported through read() and close().
    this.running.catch(() => undefined);
  }

  /**
   * Reads objects, each into the sink `open` gives. A missing object rejects this request once
   * its answers are in (the reader goes on serving); a sink that fails ends the reader (git is
   * stopped, as nothing more of its output is wanted) and rejects every request.
   */
  read(ids: readonly string[], open: (id: string, type: ObjectType, size: number) => BlobSink): Promise<void> {
    if (!ids.length) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.batches.push({ remaining: ids.length, open, error: null, resolve, reject });
      this.requests.write(`${ids.join('\n')}\n`);
    });
  }

  /** Reads objects whole (trees, commits, small blobs). */
  async whole(ids: readonly string[]): Promise<Map<string, { type: ObjectType; content: Buffer }>> {
    const objects = new Map<string, { type: ObjectType; content: Buffer }>();
    await this.read(ids, (id, type) => {
      const parts: Buffer[] = [];
      return { write: (chunk) => void parts.push(chunk), end: () => void objects.set(id, { type, content: Buffer.concat(parts) }) };
    });
    return objects;
  }

  /** Ends git's input and waits for it to exit. */
  async close(): Promise<void> {
    this.requests.end();
    await this.running;
  }

  private async consume(): Promise<void> {
    for (;;) {
      if (!this.current) {
        const newline = this.pending.indexOf(10);
        if (newline < 0) return;
        const header = this.pending.subarray(0, newline).toString('utf8');
        this.pending = this.pending.subarray(newline + 1);
        const batch = this.batches[0];
        if (!batch) throw new Error(`git cat-file: an answer nobody asked for: ${JSON.stringify(header)}`);
        const [id = '', type, size] = header.split(' ');
        if (type === 'missing') {
          batch.error ??= new Error(`git cat-file: object ${id} missing`);
          this.answered(batch);
          continue;
        }
        if ((type !== 'blob' && type !== 'commit' && type !== 'tree') || size === undefined) {
          throw new Error(`git cat-file: unexpected object ${JSON.stringify(header)}`);
        }
        this.current = { remaining: Number(size), sink: batch.open(id, type, Number(size)), batch };
      }
      const current = this.current;
      // Content, then the newline git puts after it.
      if (current.remaining > 0) {
        if (!this.pending.length) return;
        const piece = this.pending.subarray(0, current.remaining);
        this.pending = this.pending.subarray(piece.length);
        current.remaining -= piece.length;
        await current.sink.write(piece);
        if (current.remaining > 0) return;
      }
      if (!this.pending.length) return;
      this.pending = this.pending.subarray(1);
      this.current = null;
      await current.sink.end();
      this.answered(current.batch);
    }
  }

  private answered(batch: Batch): void {
    if (--batch.remaining > 0) return;
    this.batches.shift();
    if (batch.error) batch.reject(batch.error);
    else batch.resolve();
  }
}

/**
 * Streams objects (blobs, commits) out of one `git cat-file --batch`: `open`
 * is told of each, in the order asked, and returns where its content goes.
 */
export async function streamObjects(
  git: Git,
  cwd: string,
  ids: readonly string[],
  open: (id: string, type: ObjectType, size: number) => BlobSink,
  signal?: AbortSignal,
): Promise<void> {
  if (!ids.length) return;
  const reader = new ObjectReader(git, cwd, signal);
  try {
    await reader.read(ids, open);
  } finally {
    await reader.close().catch(() => undefined);
  }
}

/** One entry of a tree object. */
interface RawEntry {
  name: string;
  mode: string;
  sha: string;
}

/** A tree object's entries ("<mode> <name>\0<20-byte id>" each); modes as ls-tree prints them (040000 for a tree). */
function parseTreeObject(content: Buffer): RawEntry[] {
  const entries: RawEntry[] = [];
  for (let offset = 0; offset < content.length; ) {
    const space = content.indexOf(32, offset);
    const nul = content.indexOf(0, space);
    const mode = content.subarray(offset, space).toString('latin1').padStart(6, '0');
    entries.push({ mode, name: content.subarray(space + 1, nul).toString('utf8'), sha: content.subarray(nul + 1, nul + 21).toString('hex') });
    offset = nul + 21;
  }
  return entries;
}

/** The tree a commit object names. */
function treeOf(content: Buffer): string {
  const match = /^tree ([0-9a-f]{40,64})$/m.exec(content.subarray(0, 200).toString('latin1'));
  if (!match) throw new Error('git: a commit object without a tree');
  return match[1]!;
}

const treeMode = '040000';

function kindOf(mode: string): 'file' | 'symlink' | 'submodule' {
  return mode === '120000' ? 'symlink' : mode === '160000' ? 'submodule' : 'file';
}

/**
 * What changed between two commits, computed from their tree objects through
 * the reader (what `git diff --raw --no-renames -r` reports: a rename is the
 * old path deleted and the new one added, a type change file↔symlink↔submodule
 * is T), and the newer commit's tree. Subtrees that did not change are
 * never read; the ones that did are read a level at a time, one request per
 * level. Rejects when either commit is missing.
 */
export async function diffCommits(reader: ObjectReader, fromSha: string, toSha: string): Promise<{ changes: TreeChange[]; tree: string }> {
  const commits = await reader.whole([fromSha, toSha]);
  const from = commits.get(fromSha)!;
  const to = commits.get(toSha)!;
  if (from.type !== 'commit' || to.type !== 'commit') throw new Error('git: not a commit');
  const changes: TreeChange[] = [];
  let level: { prefix: string; old: string | null; next: string | null }[] = [{ prefix: '', old: treeOf(from.content), next: treeOf(to.content) }];
  while (level.length) {
    const trees = await reader.whole([...new Set(level.flatMap((pair) => [pair.old, pair.next]).filter((sha): sha is string => sha !== null))]);
    const entriesOf = (sha: string | null) => new Map((sha ? parseTreeObject(trees.get(sha)!.content) : []).map((entry) => [entry.name, entry]));
    const deeper: typeof level = [];
    for (const pair of level) {
      if (pair.old === pair.next) continue;
      const old = entriesOf(pair.old);
      const next = entriesOf(pair.next);
      for (const name of [...new Set([...old.keys(), ...next.keys()])].sort()) {
        const before = old.get(name);
        const after = next.get(name);
        if (before && after && before.sha === after.sha && before.mode === after.mode) continue;
        const path = pair.prefix + name;
        const beforeTree = before?.mode === treeMode;
        const afterTree = after?.mode === treeMode;
        if (beforeTree || afterTree) deeper.push({ prefix: `${path}/`, old: beforeTree ? before!.sha : null, next: afterTree ? after!.sha : null });
        const file = (entry: RawEntry | undefined, isTree: boolean) => (entry && !isTree ? entry : undefined);
        const removed = file(before, beforeTree);
        const added = file(after, afterTree);
        if (removed && added) {
          const status = kindOf(removed.mode) === kindOf(added.mode) ? 'M' : 'T';
          changes.push({ status, path, oldSha: removed.sha, oldMode: removed.mode, newSha: added.sha, newMode: added.mode });
        } else if (removed) {
          changes.push({ status: 'D', path, oldSha: removed.sha, oldMode: removed.mode, newSha: null, newMode: null });
        } else if (added) {
          changes.push({ status: 'A', path, oldSha: null, oldMode: null, newSha: added.sha, newMode: added.mode });
        }
      }
    }
    level = deeper;
  }
  return { changes, tree: treeOf(to.content) };
}

/** The entries at the root of a tree, read through the reader. */
export async function rootEntries(reader: ObjectReader, treeSha: string): Promise<RawEntry[]> {
  const trees = await reader.whole([treeSha]);
  return parseTreeObject(trees.get(treeSha)!.content);
}
