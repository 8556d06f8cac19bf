import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { lstat, mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, addAbortSignal, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Unpack, type ReadEntry } from 'tar';

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
 * Streams `dir`, `.git` included, as a gzipped tar: entry paths are relative to
 * dir (`.` for dir itself, then `a.txt`, `src`, …). Symlinks are stored, never
 * followed; hard links as separate files; modes keep the executable bit; no
 * owners. Sockets and FIFOs are skipped.
 *
 * The archive is written by GNU tar and gzip in child processes, from a list
 * of paths walked here: packing in this process (node-tar, zlib) allocates a
 * fresh buffer for every read of every file, which grew the server by 65–83 MB
 * and took ~55 s of its CPU per GiB (bench snapshot-1g); this process only
 * hashes the compressed stream and hands it on. Extraction stays with node-tar
 * (extractSnapshot), where every entry is checked.
 */
export function packWorkingCopy(
  dir: string,
  options: { signal?: AbortSignal } = {},
): { stream: Readable; done: Promise<PackSummary> } {
  let entries = 0;
  let bytes = 0;
  let compressedBytes = 0;
  const hash = createHash('sha256');
  // Hashing what passes through is hashing exactly what the consumer reads.
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      compressedBytes += chunk.length;
      callback(null, chunk);
    },
  });
  if (options.signal) addAbortSignal(options.signal, stream);

  const run = async (): Promise<void> => {
    // The folder is read first: a missing one is its own error, not tar's.
    await readdir(dir);
    const walk = walkTree(dir);
    const first = await walk.next();
    const tar = spawn(
      'tar',
      [
        '--create', '--gzip', '--file=-', '--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '--hard-dereference',
        '--no-recursion', `--directory=${dir}`, '--null', '--verbatim-files-from', '--files-from=-',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } },
    );
    let stderr = '';
    tar.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4096)));
    // tar stopping early shows in its exit status; the broken pipe says nothing more.
    tar.stdin.on('error', () => undefined);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      tar.once('error', (error) => reject(new Error(`could not run tar: ${error.message}`)));
      tar.once('close', (code, signal) => resolve({ code, signal }));
    });
    stream.once('close', () => {
      if (!stream.readableEnded) tar.kill('SIGKILL');
    });
    tar.stdout.pipe(stream, { end: false });
    const ended = once(tar.stdout, 'end');
    for (let next = first; !next.done; next = await walk.next()) {
      if (stream.destroyed || tar.stdin.destroyed) break;
      entries += 1;
      bytes += next.value.bytes;
      if (!tar.stdin.write(`${next.value.path}\0`)) await Promise.race([once(tar.stdin, 'drain'), exited]);
    }
    tar.stdin.end();
    const { code, signal } = await exited;
    if (code !== 0) throw new Error(`tar failed (${signal ?? `exit code ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`);
    await ended;
    stream.end();
  };
  run().catch((error: unknown) => {
    if (!stream.destroyed) stream.destroy(error as Error);
  });

  const done = finished(stream).then(() => ({ entries, bytes, sha256: hash.digest('hex'), compressedBytes }));
  return { stream, done };
}

/** `.`, then every directory, file and symlink under dir, depth first, in name order (sockets and FIFOs skipped), with file sizes. */
async function* walkTree(dir: string): AsyncGenerator<{ path: string; bytes: number }> {
  yield { path: '.', bytes: 0 };
  const visit = async function* (relative: string): AsyncGenerator<{ path: string; bytes: number }> {
    const children = await readdir(path.join(dir, relative), { withFileTypes: true });
    children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const child of children) {
      if (!child.isFile() && !child.isDirectory() && !child.isSymbolicLink()) continue;
      const childPath = relative ? `${relative}/${child.name}` : child.name;
      yield { path: childPath, bytes: child.isFile() ? (await lstat(path.join(dir, childPath))).size : 0 };
      if (child.isDirectory()) yield* visit(childPath);
    }
  };
  yield* visit('');
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
