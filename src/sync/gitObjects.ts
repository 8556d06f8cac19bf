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
  const { stdout } = await git.run(['ls-tree', '-r', '-l', '-z', '--full-tree', commitSha], { cwd, ...(signal ? { signal } : {}) });
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

/** The last commit's author, date and message. */
export async function commitInfo(git: Git, cwd: string, commitSha: string, signal?: AbortSignal): Promise<{ author: string; at: Date; message: string }> {
  const { stdout } = await git.run(['show', '-s', '--format=%an%x00%aI%x00%B', commitSha], { cwd, ...(signal ? { signal } : {}) });
  const [author = '', at = '', ...message] = stdout.split('\0');
  return { author, at: new Date(at), message: message.join('\0').trimEnd() };
}

/** Where one blob's content goes, as `git cat-file --batch` streams it. */
export interface BlobSink {
  /** A piece of the content (awaited: backpressure reaches git). */
  write(chunk: Buffer): void | Promise<void>;
  /** The content is complete. */
  end(): void | Promise<void>;
}

/**
 * Streams blobs out of one `git cat-file --batch` (its output is
 * "<id> blob <size>\n<content>\n" per object): `open` is told of each blob,
 * in the order asked, and returns where its content goes. A sink that waits
 * makes git wait.
 */
export async function streamBlobs(
  git: Git,
  cwd: string,
  ids: readonly string[],
  open: (id: string, size: number) => BlobSink,
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
        if (type !== 'blob' || size === undefined) throw new Error(`git cat-file: unexpected object ${JSON.stringify(header)}`);
        current = { remaining: Number(size), sink: open(id, Number(size)) };
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

/**
 * Reads blobs whole, handing each to `onBlob` in the order asked. Blobs over
 * `maxBytes` are skipped as they stream past (their content is null), so a
 * huge file never sits in memory.
 */
export function readBlobs(
  git: Git,
  cwd: string,
  ids: readonly string[],
  maxBytes: number,
  onBlob: (id: string, size: number, content: Buffer | null) => void,
  signal?: AbortSignal,
): Promise<void> {
  return streamBlobs(
    git,
    cwd,
    ids,
    (id, size) => {
      const parts: Buffer[] | null = size <= maxBytes ? [] : null;
      return {
        write: (chunk) => void parts?.push(chunk),
        end: () => onBlob(id, size, parts ? (parts.length === 1 ? parts[0]! : Buffer.concat(parts)) : null),
      };
    },
    signal,
  );
}
