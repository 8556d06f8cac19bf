import { once, setMaxListeners } from 'node:events';
import { Readable, PassThrough, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Git } from '../sync/git.js';
import { archiveKeys, readObject, type ArchiveStore } from './archiveStore.js';

/** One path of a commit's tree. Symlinks are recorded as such (their blob is the link target), never followed. */
export interface ManifestEntry {
  type: 'file' | 'symlink' | 'submodule';
  /** git's object id: the blob (file, symlink) or the commit (submodule). */
  sha: string;
  /** git's file mode: 100644, 100755, 120000, 160000. */
  mode: string;
  size: number;
}

export interface Manifest {
  commitSha: string;
  files: Record<string, ManifestEntry>;
}

export interface ArtifactsResult {
  manifestKey: string;
  files: number;
  /** Objects written by this pass: the new blobs and the manifest. */
  uploaded: number;
}

/** Blobs up to this size are read whole and sent in one request; bigger ones stream. */
const wholeBlobLimit = 8 * 1024 * 1024;
const uploadsInFlight = 16;

/**
 * Per-file artifacts of a commit (SPEC §2): every blob of its tree under
 * `repos/<id>/blobs/<blobSha>`, then the manifest. Blobs the store already
 * holds are skipped, so a commit that changes one file uploads one blob and
 * one manifest. The manifest is written last: a manifest in the store means
 * every blob it names is there too.
 */
export async function storeFileArtifacts(
  git: Git,
  store: ArchiveStore,
  input: { repositoryId: string; cwd: string; commitSha: string; stored: Set<string> | null; signal?: AbortSignal },
): Promise<ArtifactsResult & { manifest: Manifest }> {
  const manifest = await readTree(git, input.cwd, input.commitSha, input.signal);
  const stored = input.stored ?? (await storedBlobs(store, input.repositoryId));
  const missing = new Set<string>();
  for (const entry of Object.values(manifest.files)) {
    if (entry.type !== 'submodule' && !stored.has(entry.sha)) missing.add(entry.sha);
  }
  if (missing.size) await uploadBlobs(git, store, input.repositoryId, input.cwd, [...missing], input.signal);
  const manifestKey = archiveKeys.manifest(input.repositoryId, input.commitSha);
  await store.put(manifestKey, Buffer.from(JSON.stringify(manifest)), input.signal ? { signal: input.signal } : {});
  return { manifest, manifestKey, files: Object.keys(manifest.files).length, uploaded: missing.size + 1 };
}

/** The blob ids a manifest names: what the store holds for sure once that manifest is there. */
export function blobsOf(manifest: Manifest): Set<string> {
  const blobs = new Set<string>();
  for (const entry of Object.values(manifest.files)) if (entry.type !== 'submodule') blobs.add(entry.sha);
  return blobs;
}

export async function readManifest(store: ArchiveStore, key: string): Promise<Manifest | null> {
  const body = await readObject(store, key);
  if (!body) return null;
  const parsed = JSON.parse(body.toString('utf8')) as Manifest;
  if (typeof parsed.commitSha !== 'string' || typeof parsed.files !== 'object' || parsed.files === null) {
    throw new Error(`${key} is not a manifest`);
  }
  return parsed;
}

async function storedBlobs(store: ArchiveStore, repositoryId: string): Promise<Set<string>> {
  const prefix = archiveKeys.blobs(repositoryId);
  const blobs = new Set<string>();
  for await (const object of store.list(prefix)) blobs.add(object.key.slice(prefix.length));
  return blobs;
}

/** `git ls-tree -r -l -z`: "<mode> <type> <id> <size>\t<path>" per entry. */
async function readTree(git: Git, cwd: string, commitSha: string, signal?: AbortSignal): Promise<Manifest> {
  const { stdout } = await git.run(['ls-tree', '-r', '-l', '-z', '--full-tree', commitSha], { cwd, ...(signal ? { signal } : {}) });
  const files: Record<string, ManifestEntry> = {};
  for (const record of stdout.split('\0')) {
    if (!record) continue;
    const tab = record.indexOf('\t');
    const [mode = '', kind, sha = '', size = '-'] = record.slice(0, tab).split(/ +/);
    const type = kind === 'commit' ? 'submodule' : mode === '120000' ? 'symlink' : 'file';
    files[record.slice(tab + 1)] = { type, sha, mode, size: size === '-' ? 0 : Number(size) };
  }
  return { commitSha, files };
}

/**
 * One `git cat-file --batch` reads every missing blob; its output ("<id> blob
 * <size>\n<content>\n" per object) is cut here into uploads, a bounded
 * number in flight, so git waits while the store is slower than the disk.
 */
async function uploadBlobs(git: Git, store: ArchiveStore, repositoryId: string, cwd: string, ids: string[], signal?: AbortSignal): Promise<void> {
  const inFlight = new Set<Promise<unknown>>();
  let failure: unknown = null;
  const track = (upload: Promise<unknown>) => {
    const tracked = upload.catch((error: unknown) => (failure ??= error)).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const options = signal ? { signal } : {};
  // Each upload in flight listens on the run's signal: more than Node's default of 10, by design.
  if (signal) setMaxListeners(uploadsInFlight * 2, signal);
  let pending: Buffer = Buffer.alloc(0);
  // The blob being read: its id, bytes still to come, and where they go.
  let current: { id: string; remaining: number; parts: Buffer[] | null; stream: PassThrough | null } | null = null;

  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      void consume().then(() => callback(failure as Error | null), callback);
    },
    final(callback) {
      Promise.all(inFlight).then(() => callback(failure as Error | null), callback);
    },
  });

  async function consume(): Promise<void> {
    for (;;) {
      if (!current) {
        const newline = pending.indexOf(10);
        if (newline < 0) return;
        const header = pending.subarray(0, newline).toString('utf8');
        pending = pending.subarray(newline + 1);
        const [id = '', type, size] = header.split(' ');
        if (type !== 'blob' || size === undefined) throw new Error(`git cat-file: unexpected object ${JSON.stringify(header)}`);
        const bytes = Number(size);
        if (bytes > wholeBlobLimit) {
          const stream = new PassThrough();
          track(store.put(archiveKeys.blob(repositoryId, id), stream, options));
          current = { id, remaining: bytes, parts: null, stream };
        } else {
          current = { id, remaining: bytes, parts: [], stream: null };
        }
      }
      // Content, then the newline git puts after it.
      if (current.remaining > 0) {
        if (!pending.length) return;
        const piece = pending.subarray(0, current.remaining);
        pending = pending.subarray(piece.length);
        current.remaining -= piece.length;
        if (current.parts) current.parts.push(Buffer.from(piece));
        else if (!current.stream!.write(piece)) await once(current.stream!, 'drain');
        if (current.remaining > 0) return;
      }
      if (!pending.length) return;
      pending = pending.subarray(1);
      if (current.parts) track(store.put(archiveKeys.blob(repositoryId, current.id), Buffer.concat(current.parts), options));
      else current.stream!.end();
      current = null;
      while (inFlight.size >= uploadsInFlight) await Promise.race(inFlight);
      if (failure) throw failure;
    }
  }

  await Promise.all([
    git.run(['cat-file', '--batch'], { cwd, stdin: Readable.from([`${ids.join('\n')}\n`]), stdout: sink, ...options }),
    finished(sink),
  ]);
}
