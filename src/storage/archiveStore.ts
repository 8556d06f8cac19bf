import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

/** One stored object as a listing sees it. */
export interface StoredObject {
  key: string;
  bytes: number;
  lastModified: Date;
}

/**
 * The archive store of SPEC §2: one key layout (`repos/<repositoryId>/…`)
 * over S3 or a local folder. Bodies are streams both ways, so no archive is
 * held whole in memory.
 */
export interface ArchiveStore {
  readonly kind: 's3' | 'local';
  /** Where an object is, as shown to users (`s3://bucket/key` or `file:///…`). */
  urlOf(key: string): string;
  /** Stores a body under a key; an object becomes visible only once complete. */
  put(key: string, body: Readable | Buffer, options?: { signal?: AbortSignal }): Promise<{ bytes: number }>;
  /** Size of an object, null when absent. */
  head(key: string): Promise<{ bytes: number } | null>;
  /** The object's body, null when absent. */
  get(key: string, options?: { signal?: AbortSignal }): Promise<Readable | null>;
  /** Every object whose key starts with the prefix. */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Deletes the objects (absent ones are ignored). */
  delete(keys: string[]): Promise<void>;
}

/** A failure of the store itself, with a message fit for a run's warning or an API error. */
export class ArchiveStoreError extends Error {}

/** A small object whole (a manifest, a file for the API); null when absent. */
export async function readObject(store: ArchiveStore, key: string): Promise<Buffer | null> {
  const body = await store.get(key);
  return body ? Buffer.concat((await body.toArray()) as Buffer[]) : null;
}

export const archiveKeys = {
  repository: (repositoryId: string) => `repos/${repositoryId}/`,
  snapshot: (repositoryId: string, commitSha: string) => `repos/${repositoryId}/${commitSha}.tar.gz`,
  blobs: (repositoryId: string) => `repos/${repositoryId}/blobs/`,
  blob: (repositoryId: string, blobSha: string) => `repos/${repositoryId}/blobs/${blobSha}`,
  manifests: (repositoryId: string) => `repos/${repositoryId}/manifests/`,
  manifest: (repositoryId: string, commitSha: string) => `repos/${repositoryId}/manifests/${commitSha}.json`,
};

/** Keys are made here only; anything else (`..`, absolute, empty parts) is a bug, refused. */
function assertKey(key: string): void {
  if (!/^[A-Za-z0-9._/-]+$/.test(key) || key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new ArchiveStoreError(`invalid archive key ${JSON.stringify(key)}`);
  }
}

/** A listing prefix: a key, or a key's folder ending in "/" (or empty: everything). */
function assertPrefix(prefix: string): void {
  if (prefix !== '') assertKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}

/** `$DATA_DIR/archives`: writes go to a temporary name and are renamed into place when complete. */
export class LocalArchiveStore implements ArchiveStore {
  readonly kind = 'local';

  constructor(readonly root: string) {}

  urlOf(key: string): string {
    return pathToFileURL(path.join(this.root, key)).href;
  }

  private pathOf(key: string): string {
    assertKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Readable | Buffer, options: { signal?: AbortSignal } = {}): Promise<{ bytes: number }> {
    const file = this.pathOf(key);
    await mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${randomUUID()}.partial`;
    try {
      await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, createWriteStream(temporary), options.signal ? { signal: options.signal } : {});
      await rename(temporary, file);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
    return { bytes: (await stat(file)).size };
  }

  async head(key: string): Promise<{ bytes: number } | null> {
    const info = await stat(this.pathOf(key)).catch(() => null);
    return info?.isFile() ? { bytes: info.size } : null;
  }

  async get(key: string): Promise<Readable | null> {
    const file = this.pathOf(key);
    if (!(await this.head(key))) return null;
    return createReadStream(file);
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    assertPrefix(prefix);
    // Prefixes end at a folder here ("repos/<id>/blobs/"); a partial name is matched within it.
    const folder = prefix.endsWith('/') ? prefix : prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const start = path.join(this.root, ...folder.split('/').filter(Boolean));
    const walk = async function* (dir: string, keyPrefix: string): AsyncIterable<StoredObject> {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const entry of entries) {
        const key = `${keyPrefix}${entry.name}`;
        if (entry.isDirectory()) yield* walk(path.join(dir, entry.name), `${key}/`);
        else if (entry.isFile() && !entry.name.endsWith('.partial') && key.startsWith(prefix)) {
          const info = await stat(path.join(dir, entry.name)).catch(() => null);
          if (info) yield { key, bytes: info.size, lastModified: info.mtime };
        }
      }
    };
    yield* walk(start, folder);
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) await rm(this.pathOf(key), { force: true });
  }
}

export interface S3StoreOptions {
  bucket: string;
  endpoint?: string | undefined;
  region?: string | undefined;
  forcePathStyle?: boolean | undefined;
  /** Bytes per multipart part (S3's minimum is 5 MiB); parts in flight are bounded by queueSize. */
  partSize?: number;
  /** From the standard AWS variables as configured; absent: the SDK's default provider chain (profiles, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined } | undefined;
}

/** S3 (or any S3 API server): multipart uploads from a stream, a few parts in memory at most. */
export class S3ArchiveStore implements ArchiveStore {
  readonly kind = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly partSize: number;
  /** Set once the bucket is known to exist: from then on a bare 404 to HEAD object means "no such key". */
  private bucketSeen = false;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    // S3's smallest part: the least memory per upload (parts in flight × part size);
    // 10,000 parts of 5 MiB bound a snapshot at about 48 GiB compressed.
    this.partSize = options.partSize ?? 5 * 1024 * 1024;
    this.client = new S3Client({
      region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? false,
      maxAttempts: 3,
      // Checksums only where S3 requires them (the SDK's behaviour before 3.729): CRC32 over every
      // 5 MiB part costs this process CPU and memory, and many S3 API servers refuse or ignore them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  urlOf(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  async put(key: string, body: Readable | Buffer, options: { signal?: AbortSignal } = {}): Promise<{ bytes: number }> {
    assertKey(key);
    return this.call(`upload ${key}`, async () => {
      if (Buffer.isBuffer(body)) {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length }), {
          ...(options.signal ? { abortSignal: options.signal } : {}),
        });
        return { bytes: body.length };
      }
      let bytes = 0;
      body.on('data', (chunk: Buffer) => (bytes += chunk.length));
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: key, Body: body },
        partSize: this.partSize,
        queueSize: 2,
        leavePartsOnError: false,
      });
      // An abort breaks the body off: the upload then fails as with any broken body, and done() settles
      // once the multipart upload is aborted too (Upload.abort() would reject at once and abort it later).
      const abort = () => body.destroy(abortReason(options.signal));
      options.signal?.addEventListener('abort', abort, { once: true });
      try {
        // (An abort before the call fires no event.)
        options.signal?.throwIfAborted();
        await upload.done();
        await this.abortStaleUploads(key);
      } catch (error) {
        // Whatever still writes into the body learns that nobody reads it any more.
        body.destroy();
        throw error;
      } finally {
        options.signal?.removeEventListener('abort', abort);
      }
      return { bytes };
    });
  }

  /**
   * Multipart uploads of `key` still open once one has completed are aborted: one run of a
   * repository archives at a time across instances, so an open one was left by a process killed
   * mid-upload, and S3 would keep (and bill) its parts until a lifecycle rule removed them. A
   * policy without s3:ListBucketMultipartUploads only skips this.
   */
  private async abortStaleUploads(key: string): Promise<void> {
    const listed = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key })).catch(() => null);
    for (const stale of listed?.Uploads ?? []) {
      if (stale.Key !== key || !stale.UploadId) continue;
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: stale.UploadId })).catch(() => undefined);
    }
  }

  async head(key: string): Promise<{ bytes: number } | null> {
    assertKey(key);
    return this.call(`read ${key}`, async () => {
      try {
        const result = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
        this.bucketSeen = true;
        return { bytes: result.ContentLength ?? 0 };
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      // A HEAD answer has no body, so a missing bucket is a bare 404 too: asked once per store.
      if (!this.bucketSeen) {
        await this.client.send(new HeadBucketCommand({ Bucket: this.bucket })).catch((error: unknown) => {
          throw isNotFound(error) ? new NoSuchBucketError() : error;
        });
        this.bucketSeen = true;
      }
      return null;
    });
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<Readable | null> {
    assertKey(key);
    return this.call(`read ${key}`, async () => {
      try {
        const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
          ...(options.signal ? { abortSignal: options.signal } : {}),
        });
        return result.Body as Readable;
      } catch (error) {
        if (isNotFound(error)) return null;
        throw error;
      }
    });
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    assertPrefix(prefix);
    let token: string | undefined;
    do {
      const page = await this.call(`list ${prefix}`, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) })),
      );
      for (const object of page.Contents ?? []) {
        // "Folder" markers (keys ending in "/", as consoles create them) are not objects of this layout.
        if (object.Key && !object.Key.endsWith('/')) yield { key: object.Key, bytes: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(keys: string[]): Promise<void> {
    for (let start = 0; start < keys.length; start += 1000) {
      const batch = keys.slice(start, start + 1000);
      for (const key of batch) assertKey(key);
      const result = await this.call('delete objects', () =>
        this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        ),
      );
      const failed = result.Errors?.filter((error) => error.Code !== 'NoSuchKey') ?? [];
      if (failed.length) throw new ArchiveStoreError(`S3 bucket ${this.bucket}: could not delete ${failed.length} objects (${failed[0]?.Code ?? 'error'})`);
    }
  }

  /** Runs an S3 call; a failure becomes one clear line naming the bucket and what was refused. */
  private async call<T>(what: string, action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (error) {
      throw new ArchiveStoreError(`S3 bucket ${this.bucket}: could not ${what}: ${describeS3Error(error)}`);
    }
  }
}

function abortReason(signal: AbortSignal | undefined): Error {
  return signal?.reason instanceof Error ? signal.reason : Object.assign(new Error('aborted'), { name: 'AbortError' });
}

/** HEAD bucket's bare 404, named as S3 names a missing bucket elsewhere. */
class NoSuchBucketError extends Error {
  override readonly name = 'NoSuchBucket';
}

function isNotFound(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NotFound' || error.name === 'NoSuchKey' || error.$metadata.httpStatusCode === 404) && error.name !== 'NoSuchBucket';
}

function describeS3Error(error: unknown): string {
  if (error instanceof NoSuchBucketError) return 'the bucket does not exist';
  if (error instanceof S3ServiceException) {
    const status = error.$metadata.httpStatusCode;
    if (error.name === 'NoSuchBucket') return 'the bucket does not exist';
    // These are 403s as well: tested before the generic 403, they say more.
    if (error.name === 'InvalidAccessKeyId' || error.name === 'SignatureDoesNotMatch') return 'the AWS credentials were refused';
    if (error.name === 'AccessDenied' || status === 403) return 'access denied (check the AWS credentials and the bucket policy)';
    return `${error.name}${status ? ` (HTTP ${status})` : ''}`;
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNREFUSED') return 'connection refused (is S3_ENDPOINT right and the server up?)';
  if (code === 'ENOTFOUND') return 'the endpoint host was not found';
  if (error instanceof Error && error.name === 'AbortError') return 'aborted';
  return error instanceof Error ? error.message : String(error);
}
