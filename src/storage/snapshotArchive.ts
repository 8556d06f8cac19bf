import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Stats } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, addAbortSignal, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { create, Unpack, type ReadEntry, type WriteEntry } from 'tar';

/** What packing a working copy produced, known once its stream has ended. */
export interface PackSummary {
  /** Tar entries: the folder itself (`./`), directories, files, symlinks. */
  entries: number;
  /** Sum of the sizes of the regular files. */
  bytes: number;
  /** Hex SHA-256 of the gzip output, as the stream delivered it. */
  sha256: string;
  compressedBytes: number;
}

/** An archive refused by extractSnapshot: an entry that could write outside dest, or one over the limits. */
export class UnsafeArchiveError extends Error {
  override name = 'UnsafeArchiveError';
}

/**
 * node-tar reads up to 16 MiB of a file at a time, for up to 4 entries at once
 * (the one being written and those it prepares); 1 MiB keeps that small.
 */
const PACK_READ_SIZE = 1024 * 1024;

/**
 * A link cache that remembers nothing, so node-tar never turns a second path to
 * the same inode into a hard-link entry (which extractSnapshot refuses): every
 * file is stored with its content.
 */
class NoHardLinks extends Map<`${number}:${number}`, string> {
  override set(): this {
    return this;
  }
}

/**
 * Streams `dir`, `.git` included, as a gzipped tar: entry paths are relative to
 * dir (`./` for dir itself, then `a.txt`, `src/`, …). Symlinks are stored, never
 * followed; modes keep the executable bit; no owners. Sockets and FIFOs are skipped.
 */
export function packWorkingCopy(
  dir: string,
  options: { signal?: AbortSignal } = {},
): { stream: Readable; done: Promise<PackSummary> } {
  let entries = 0;
  let bytes = 0;
  let compressedBytes = 0;
  const hash = createHash('sha256');
  const pack = create(
    {
      cwd: dir,
      portable: true,
      follow: false,
      maxReadSize: PACK_READ_SIZE,
      linkCache: new NoHardLinks(),
      // Always lstat results here: only paths, no tar entries, are added.
      filter: (_path, stat) => isPackable(stat as Stats),
      onWriteEntry: (entry: WriteEntry) => {
        entries += 1;
        if (entry.type === 'File') bytes += entry.stat?.size ?? 0;
      },
    },
    ['.'],
  );
  // Not node-tar's `gzip` option: its zlib runs synchronously on the main
  // thread and stalls the event loop for the whole pack; Node's runs on the pool.
  const gzip = createGzip();
  // Hashing what passes through is hashing exactly what the consumer reads.
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      compressedBytes += chunk.length;
      callback(null, chunk);
    },
  });
  // Either failing destroys both; the consumer learns of it from stream and done.
  pipeline(gzip, stream).catch(() => undefined);
  pack.on('error', (error) => gzip.destroy(error as Error));
  pack.pipe(gzip);
  if (options.signal) addAbortSignal(options.signal, stream);

  const done = finished(stream).then(
    () => ({ entries, bytes, sha256: hash.digest('hex'), compressedBytes }),
    (error: unknown) => {
      // node-tar cannot cancel a pack: the files it has opened are closed only
      // once read to the end. Let it finish, its output discarded, rather than
      // leak their descriptors.
      pack.unpipe(gzip);
      pack.resume();
      throw error;
    },
  );
  return { stream, done };
}

function isPackable(stat: Stats): boolean {
  return stat.isFile() || stat.isDirectory() || stat.isSymbolicLink();
}

const ALLOWED_TYPES = new Set(['File', 'Directory', 'SymbolicLink']);

function notAllowed(entry: ReadEntry): string {
  return entry.meta
    ? `${entry.type} of ${entry.size} bytes is larger than node-tar reads`
    : `${entry.type} entries are not allowed (only File, Directory, SymbolicLink)`;
}

/**
 * Tar framing allowed per entry beside its content (header, padding, a pax
 * header for a long path and link target). With maxBytes it bounds the
 * decompressed stream, so records node-tar skips without showing them to the
 * filter (metadata, data after the end marker) cannot make a small archive
 * expand without end.
 */
const FRAMING_BYTES_PER_ENTRY = 16 * 1024;

/**
 * Gunzips and untars `source` into `dest`, an empty folder the caller created
 * (and discards if this rejects). Every entry is checked from its header, before
 * anything of it is written: only files, directories and symlinks; no absolute
 * path, drive letter or `..`; nothing at or under an earlier symlink entry; at
 * most `limits.maxEntries` entries and `limits.maxBytes` of content. The first
 * violation rejects with UnsafeArchiveError and nothing after it is written; a
 * damaged gzip or tar rejects with a plain Error. Files keep their executable
 * bit but not setuid/setgid/sticky; nothing is chowned.
 *
 * Symlink targets are not checked (a repository may hold a link to /etc/passwd):
 * the links are created only after everything else has been written, so nothing
 * is ever written through one.
 */
export async function extractSnapshot(
  source: Readable,
  dest: string,
  limits: { maxBytes: number; maxEntries: number },
  options: { signal?: AbortSignal } = {},
): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  let sawEnd = false;
  const symlinks = new Map<string, string>(); // normalized path -> target
  let failure: unknown;
  const stop = new AbortController();
  const fail = (error: unknown) => {
    failure ??= error;
    stop.abort(error);
  };
  const refuse = (entry: ReadEntry, why: string) => {
    fail(new UnsafeArchiveError(`archive entry ${JSON.stringify(entry.path)} refused: ${why}`));
    return false;
  };

  /** Decides on an entry from its header alone; false skips its content. */
  const admit = (entry: ReadEntry): boolean => {
    if (failure) return false; // after the first problem, nothing more is written
    if (++entries > limits.maxEntries) return refuse(entry, `archive has more than ${limits.maxEntries} entries`);
    bytes += entry.size;
    if (bytes > limits.maxBytes) return refuse(entry, `archive content exceeds ${limits.maxBytes} bytes`);
    if (!ALLOWED_TYPES.has(entry.type)) return refuse(entry, notAllowed(entry));
    // node-tar would only warn and strip or skip these; here they refuse the archive.
    // Roots as node-tar sees them: `/`, `\\`, `C:`, `//host/share/`.
    if (path.win32.parse(entry.path).root) return refuse(entry, 'absolute path or drive letter');
    if (entry.path.split(/[\\/]/).includes('..')) return refuse(entry, "path contains '..'");

    const segments = entry.path.split('/').filter((part) => part !== '' && part !== '.');
    for (let depth = 1; depth <= segments.length; depth++) {
      const prefix = segments.slice(0, depth).join('/');
      if (symlinks.has(prefix)) return refuse(entry, `path is at or under symlink ${JSON.stringify(prefix)}`);
    }
    if (segments.length === 0 && entry.type !== 'Directory') return refuse(entry, 'would replace the destination folder');

    if (entry.type === 'SymbolicLink') {
      symlinks.set(segments.join('/'), entry.linkpath ?? '');
      return false; // created at the end, see below
    }
    if (entry.mode) entry.mode &= 0o777; // node-tar would keep setuid/setgid/sticky
    return true;
  };

  const unpack = new Unpack({
    cwd: dest,
    // node-tar's own objections (bad header, truncated input, path too deep,
    // a write that meets a symlink) become errors instead of warnings.
    strict: true,
    // Defaults to true when running as root.
    preserveOwner: false,
    // Unpack passes ReadEntry objects (Stats only when packing).
    filter: (_path, entry) => admit(entry as ReadEntry),
  });
  unpack.on('error', fail);
  // Entries of types node-tar does not know, and oversized metadata, bypass the
  // filter: they are skipped unwritten, but the archive is still refused.
  unpack.on('ignoredEntry', (entry: ReadEntry) => {
    if (!ALLOWED_TYPES.has(entry.type)) refuse(entry, notAllowed(entry));
  });
  unpack.on('eof', () => (sawEnd = true));
  // 'close' once every accepted entry is on disk; 'abort' when node-tar gives up
  // on input it decompresses itself (it sniffs for a nested gzip) and never closes.
  const settled = new Promise((resolve) => {
    unpack.on('close', resolve);
    unpack.on('abort', resolve);
  });

  const maxTarBytes = limits.maxBytes + (limits.maxEntries + 1) * FRAMING_BYTES_PER_ENTRY;
  let tarBytes = 0;
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  try {
    await pipeline(
      source,
      createGunzip(),
      async (tar: AsyncIterable<Buffer>) => {
        // Errors are recorded with fail() before throwing: pipeline reports the
        // AbortError of the iterator it destroys rather than what was thrown.
        for await (const chunk of tar) {
          tarBytes += chunk.length;
          if (tarBytes > maxTarBytes) {
            fail(new UnsafeArchiveError(`archive expands to more than ${maxTarBytes} bytes of tar`));
          } else if (!sawEnd && !unpack.write(chunk)) {
            // Past the end marker data is only counted: node-tar would pile it up in memory.
            await once(unpack, 'drain', { signal });
          }
          if (failure) throw failure;
        }
      },
      { signal },
    );
  } catch (error) {
    fail(error);
  }
  unpack.end();
  await settled;
  if (!failure && !sawEnd) failure = new Error('archive is truncated: no end-of-archive marker');
  if (failure) throw failure;

  // Deepest first: when a link is made, every symlink that could be one of its
  // parent folders (shallower) does not exist yet, even on a case-insensitive
  // file system where the prefix check above can be fooled.
  const byDepth = [...symlinks].sort(([a], [b]) => b.split('/').length - a.split('/').length);
  for (const [link, target] of byDepth) {
    const at = path.join(dest, link);
    await mkdir(path.dirname(at), { recursive: true });
    await symlink(target, at);
  }
  return { entries, bytes };
}
