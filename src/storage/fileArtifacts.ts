import { once, setMaxListeners } from 'node:events';
import { PassThrough } from 'node:stream';
import type { Git } from '../sync/git.js';
import { listTree, streamObjects, type BlobSink } from '../sync/gitObjects.js';
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

/** The commit's tree as a manifest. */
async function readTree(git: Git, cwd: string, commitSha: string, signal?: AbortSignal): Promise<Manifest> {
  const files: Record<string, ManifestEntry> = {};
  for (const entry of await listTree(git, cwd, commitSha, signal)) {
    const type = entry.mode === '160000' ? 'submodule' : entry.mode === '120000' ? 'symlink' : 'file';
    files[entry.path] = { type, sha: entry.sha, mode: entry.mode, size: entry.size };
  }
  return { commitSha, files };
}

/**
 * One `git cat-file --batch` reads every missing blob, cut into uploads as
 * it streams, a bounded number in flight, so git waits while the store is
 * slower than the disk.
 */
async function uploadBlobs(git: Git, store: ArchiveStore, repositoryId: string, cwd: string, ids: string[], signal?: AbortSignal): Promise<void> {
  const inFlight = new Set<Promise<unknown>>();
  let failure: unknown = null;
  const track = (upload: Promise<unknown>) => {
    const tracked = upload.catch((error: unknown) => (failure ??= error)).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const room = async () => {
    while (inFlight.size >= uploadsInFlight) await Promise.race(inFlight);
    if (failure) throw failure;
  };
  const options = signal ? { signal } : {};
  // Each upload in flight listens on the run's signal: more than Node's default of 10, by design.
  if (signal) setMaxListeners(uploadsInFlight * 2, signal);

  await streamObjects(
    git,
    cwd,
    ids,
    (id, _type, size): BlobSink => {
      const key = archiveKeys.blob(repositoryId, id);
      if (size > wholeBlobLimit) {
        const stream = new PassThrough();
        track(store.put(key, stream, options));
        return {
          write: async (chunk) => {
            if (!stream.write(chunk)) await once(stream, 'drain');
          },
          end: () => {
            stream.end();
            return room();
          },
        };
      }
      const parts: Buffer[] = [];
      return {
        write: (chunk) => void parts.push(Buffer.from(chunk)),
        end: () => {
          track(store.put(key, Buffer.concat(parts), options));
          return room();
        },
      };
    },
    signal,
  );
  await Promise.all(inFlight);
  if (failure) throw failure;
}
