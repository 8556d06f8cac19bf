import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Git } from './git.js';

// Reading a repository's objects without its working tree: trees (ls-tree),
// differences (diff --raw), commits (show) and blobs (one cat-file --batch).
// Indexing and the per-file archive artifacts share these.

/** One entry of a commit's tree (`git ls-tree -r -l`). */
export interface TreeEntry {
  path: string;
  /** git's mode: 100644, 100755, 120000 (symlink), 160000 (submodule). */
  mode: string;
  /** Blob id (commit id for a submodule). */
  sha: string;
  size: number;
}

/** A path changed between two commits (`git diff --raw -M`); a rename is its two sides. */
export interface TreeChange {
  status: 'A' | 'M' | 'D' | 'T';
  path: string;
  oldSha: string | null;
  oldMode: string | null;
  newSha: string | null;
  newMode: string | null;
}

const zeroSha = /^0+$/;

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

/**
 * What changed from one commit to another, renames detected (`-M`) and split
 * into a deletion of the old path and an addition of the new one: the index
 * treats a renamed file as a new file (its imports resolve from its new folder).
 */
export async function diffTrees(git: Git, cwd: string, fromSha: string, toSha: string, signal?: AbortSignal): Promise<TreeChange[]> {
  const { stdout } = await git.run(['diff', '--raw', '-z', '-M', '--no-abbrev', fromSha, toSha], {
    cwd,
    ...(signal ? { signal } : {}),
  });
  const fields = stdout.split('\0');
  const changes: TreeChange[] = [];
  for (let i = 0; i < fields.length; ) {
    const meta = fields[i++];
    if (!meta) continue;
    // ":<old mode> <new mode> <old sha> <new sha> <status>[score]", then one path (two for R and C).
    const [oldMode = '', newMode = '', oldSha = '', newSha = '', status = ''] = meta.slice(1).split(' ');
    const letter = status[0];
    const first = fields[i++] ?? '';
    const old = { oldSha: zeroSha.test(oldSha) ? null : oldSha, oldMode: oldMode === '000000' ? null : oldMode };
    const next = { newSha: zeroSha.test(newSha) ? null : newSha, newMode: newMode === '000000' ? null : newMode };
    if (letter === 'R' || letter === 'C') {
      const second = fields[i++] ?? '';
      if (letter === 'R') changes.push({ status: 'D', path: first, ...old, newSha: null, newMode: null });
      changes.push({ status: 'A', path: second, oldSha: null, oldMode: null, ...next });
    } else if (letter === 'A' || letter === 'D' || letter === 'M' || letter === 'T') {
      changes.push({ status: letter, path: first, ...old, ...next });
    } else {
      throw new Error(`git diff: unexpected status ${JSON.stringify(status)} for ${JSON.stringify(first)}`);
    }
  }
  return changes;
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

/** The entries at the root of a commit's tree (not recursive). */
export async function listRoot(git: Git, cwd: string, commitSha: string, signal?: AbortSignal): Promise<TreeEntry[]> {
  return parseTree((await git.run(['ls-tree', '-l', '-z', '--full-tree', commitSha], { cwd, ...(signal ? { signal } : {}) })).stdout);
}

/** Where one object's content goes, as `git cat-file --batch` streams it. */
export interface BlobSink {
  /** A piece of the content (awaited: backpressure reaches git). */
  write(chunk: Buffer): void | Promise<void>;
  /** The content is complete. */
  end(): void | Promise<void>;
}

/**
 * Streams objects (blobs, commits) out of one `git cat-file --batch` (its
 * output is "<id> <type> <size>\n<content>\n" per object): `open` is told
 * of each, in the order asked, and returns where its content goes. A sink
 * that waits makes git wait.
 */
export async function streamObjects(
  git: Git,
  cwd: string,
  ids: readonly string[],
  open: (id: string, type: 'blob' | 'commit', size: number) => BlobSink,
  signal?: AbortSignal,
): Promise<void> {
  if (!ids.length) return;
  let pending: Buffer = Buffer.alloc(0);
  // The blob being read: bytes still to come, and where they go.
  let current: { remaining: number; sink: BlobSink } | null = null;

  const consume = async (): Promise<void> => {
    for (;;) {
      if (!current) {
        const newline = pending.indexOf(10);
        if (newline < 0) return;
        const header = pending.subarray(0, newline).toString('utf8');
        pending = pending.subarray(newline + 1);
        const [id = '', type, size] = header.split(' ');
        if ((type !== 'blob' && type !== 'commit') || size === undefined) throw new Error(`git cat-file: unexpected object ${JSON.stringify(header)}`);
        current = { remaining: Number(size), sink: open(id, type, Number(size)) };
      }
      // Content, then the newline git puts after it.
      if (current.remaining > 0) {
        if (!pending.length) return;
        const piece = pending.subarray(0, current.remaining);
        pending = pending.subarray(piece.length);
        current.remaining -= piece.length;
        await current.sink.write(piece);
        if (current.remaining > 0) return;
      }
      if (!pending.length) return;
      pending = pending.subarray(1);
      const { sink } = current;
      current = null;
      await sink.end();
    }
  };

  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      consume().then(() => callback(), callback);
    },
  });
  await Promise.all([
    git.run(['cat-file', '--batch'], { cwd, stdin: Readable.from([`${ids.join('\n')}\n`]), stdout: sink, ...(signal ? { signal } : {}) }),
    finished(sink),
  ]);
}
