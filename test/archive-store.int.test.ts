import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { ArchiveStoreError, LocalArchiveStore, S3ArchiveStore, type ArchiveStore } from '../src/storage/archiveStore.js';
import { freePort } from './support/serverProcess.js';
import { s3TestEnv, type S3TestEnv } from './support/s3proxy.js';

const MiB = 1024 * 1024;

/** `size` random bytes, made a chunk at a time as they are read (never held whole), and their sha256 once read. */
function generated(size: number, options: { failAfter?: number; chunk?: number } = {}): { stream: Readable; sha256(): string } {
  const hash = createHash('sha256');
  const chunk = options.chunk ?? 256 * 1024;
  let sent = 0;
  const stream = new Readable({
    read() {
      if (options.failAfter !== undefined && sent >= options.failAfter) {
        this.destroy(new Error('the source broke off'));
        return;
      }
      if (sent >= size) {
        this.push(null);
        return;
      }
      const bytes = randomBytes(Math.min(chunk, size - sent));
      sent += bytes.length;
      hash.update(bytes);
      this.push(bytes);
    },
  });
  return { stream, sha256: () => hash.digest('hex') };
}

async function sha256Of(body: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

async function text(body: Readable | null): Promise<string | null> {
  if (!body) return null;
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function listed(store: ArchiveStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of store.list(prefix)) keys.push(object.key);
  return keys;
}

/** Runs `fn` over the items, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Every request an S3 client sends, as `METHOD /path?query`: an HTTP proxy in front of S3Proxy (it signs nothing, so signatures stay valid). */
async function recordingProxy(target: string): Promise<{ endpoint: string; requests: string[]; close(): Promise<void> }> {
  const upstream = new URL(target);
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const forwarded = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.once('error', () => res.destroy());
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function s3Store(env: S3TestEnv, overrides: { bucket?: string; endpoint?: string; secretAccessKey?: string; accessKeyId?: string } = {}): S3ArchiveStore {
  return new S3ArchiveStore({
    bucket: overrides.bucket ?? env.S3_BUCKET,
    endpoint: overrides.endpoint ?? env.S3_ENDPOINT,
    region: env.S3_REGION,
    forcePathStyle: true,
    credentials: {
      accessKeyId: overrides.accessKeyId ?? env.AWS_ACCESS_KEY_ID,
      secretAccessKey: overrides.secretAccessKey ?? env.AWS_SECRET_ACCESS_KEY,
    },
  });
}

interface Subject {
  store: ArchiveStore;
  /** The same objects, without the recording proxy: to put many quickly. */
  direct: ArchiveStore;
  /** What urlOf should say for a key. */
  url(key: string): string;
  /** Requests the store sent (S3 only; the local store sends none). */
  requests: string[];
  /** Where a key that escaped the store's root would land (local only). */
  outside?: string;
  cleanup(): Promise<void>;
}

const subjects: Record<'local' | 's3', () => Promise<Subject>> = {
  async local() {
    const parent = await mkdtemp(path.join(tmpdir(), 'archive-store-'));
    const root = path.join(parent, 'archives');
    await mkdir(root);
    const store = new LocalArchiveStore(root);
    return {
      store,
      direct: store,
      url: (key) => pathToFileURL(path.join(root, key)).href,
      requests: [],
      outside: parent,
      cleanup: () => rm(parent, { recursive: true, force: true }),
    };
  },
  async s3() {
    // Each test its own bucket; objects go through a recording proxy so the tests see the S3 calls made.
    const env = await s3TestEnv();
    const proxy = await recordingProxy(env.S3_ENDPOINT);
    return {
      store: s3Store(env, { endpoint: proxy.endpoint }),
      direct: s3Store(env),
      url: (key) => `s3://${env.S3_BUCKET}/${key}`,
      requests: proxy.requests,
      cleanup: () => proxy.close(),
    };
  },
};

describe.each(['local', 's3'] as const)('%s archive store', (kind) => {
  let subject: Subject;
  let store: ArchiveStore;
  beforeEach(async () => {
    subject = await subjects[kind]();
    store = subject.store;
  });
  afterEach(async () => {
    await subject.cleanup();
  });

  it('stores a 20 MiB stream and reads it back byte for byte (a multipart upload on S3)', async () => {
    const size = 20 * MiB;
    const source = generated(size);
    expect(await store.put('repos/r1/big.tar.gz', source.stream)).toEqual({ bytes: size });
    const written = source.sha256();
    expect(await store.head('repos/r1/big.tar.gz')).toEqual({ bytes: size });
    const body = await store.get('repos/r1/big.tar.gz');
    expect(body).not.toBeNull();
    expect(await sha256Of(body!)).toEqual({ sha256: written, bytes: size });
    if (kind === 's3') {
      // 5 MiB parts (S3's smallest): create, four parts, complete.
      const upload = subject.requests.filter((line) => line.includes('/repos/r1/big.tar.gz'));
      expect(upload.filter((line) => line.startsWith('POST') && /[?&]uploads(=|&|$)/.test(line))).toHaveLength(1);
      expect(upload.filter((line) => line.startsWith('PUT') && /[?&]partNumber=/.test(line))).toHaveLength(4);
      expect(upload.filter((line) => line.startsWith('POST') && /[?&]uploadId=/.test(line))).toHaveLength(1);
    }
  });

  it('stores a Buffer and a small stream, and replaces an object', async () => {
    expect(await store.put('repos/r1/manifests/abc.json', Buffer.from('{"a":1}'))).toEqual({ bytes: 7 });
    expect(await store.head('repos/r1/manifests/abc.json')).toEqual({ bytes: 7 });
    expect(await text(await store.get('repos/r1/manifests/abc.json'))).toBe('{"a":1}');

    expect(await store.put('repos/r1/blobs/b1', Readable.from([Buffer.from('hello '), Buffer.from('world')]))).toEqual({ bytes: 11 });
    expect(await text(await store.get('repos/r1/blobs/b1'))).toBe('hello world');

    await store.put('repos/r1/manifests/abc.json', Buffer.from('{"replaced":true}'));
    expect(await store.head('repos/r1/manifests/abc.json')).toEqual({ bytes: 17 });
    expect(await text(await store.get('repos/r1/manifests/abc.json'))).toBe('{"replaced":true}');
  });

  it('stores empty bodies', async () => {
    expect(await store.put('repos/r1/blobs/empty-buffer', Buffer.alloc(0))).toEqual({ bytes: 0 });
    expect(await store.put('repos/r1/blobs/empty-stream', Readable.from([]))).toEqual({ bytes: 0 });
    expect(await store.head('repos/r1/blobs/empty-buffer')).toEqual({ bytes: 0 });
    expect(await store.head('repos/r1/blobs/empty-stream')).toEqual({ bytes: 0 });
    expect(await text(await store.get('repos/r1/blobs/empty-stream'))).toBe('');
  });

  it('answers null to head and get of an absent key', async () => {
    expect(await store.head('repos/r1/absent.tar.gz')).toBeNull();
    expect(await store.get('repos/r1/absent.tar.gz')).toBeNull();
    // A "folder" is no object either.
    await store.put('repos/r1/blobs/b1', Buffer.from('x'));
    expect(await store.head('repos/r1/blobs')).toBeNull();
    expect(await store.get('repos/r1/blobs')).toBeNull();
    expect(await store.head('repos/r1/blobs/b1')).toEqual({ bytes: 1 });
  });

  it('lists every object under a prefix across pages, and deletes more than 1000 keys at once', async () => {
    const blobs = Array.from({ length: 1005 }, (_, index) => `repos/r1/blobs/${String(index).padStart(4, '0')}`);
    const others = ['repos/r1/abc.tar.gz', 'repos/r1/manifests/abc.json', 'repos/r10/blobs/0001', 'repos/r2/blobs/0001'];
    const started = Date.now();
    await eachLimited([...blobs, ...others], 16, (key) => subject.direct.put(key, Buffer.from(key)));

    const objects = [];
    for await (const object of store.list('repos/r1/blobs/')) objects.push(object);
    expect(objects.map((object) => object.key).sort()).toEqual(blobs);
    for (const object of objects) {
      expect(object.bytes).toBe(Buffer.byteLength(object.key));
      expect(object.lastModified).toBeInstanceOf(Date);
      // Second precision on S3: a second of slack either side.
      expect(object.lastModified.getTime()).toBeGreaterThanOrEqual(started - 2_000);
      expect(object.lastModified.getTime()).toBeLessThanOrEqual(Date.now() + 2_000);
    }
    if (kind === 's3') expect(subject.requests.filter((line) => line.startsWith('GET') && line.includes('list-type=2'))).toHaveLength(2);

    expect((await listed(store, 'repos/r1/')).sort()).toEqual([...blobs, 'repos/r1/abc.tar.gz', 'repos/r1/manifests/abc.json'].sort());
    // A partial last segment matches within its folder.
    expect((await listed(store, 'repos/r1/blobs/100')).sort()).toEqual(['repos/r1/blobs/1000', 'repos/r1/blobs/1001', 'repos/r1/blobs/1002', 'repos/r1/blobs/1003', 'repos/r1/blobs/1004']);
    expect((await listed(store, 'repos/r')).length).toBe(blobs.length + others.length);
    expect(await listed(store, 'repos/r3/')).toEqual([]);

    subject.requests.length = 0;
    await store.delete(blobs);
    if (kind === 's3') expect(subject.requests.filter((line) => line.startsWith('POST') && /[?&]delete(=|&|$)/.test(line))).toHaveLength(2);
    expect(await listed(store, 'repos/r1/blobs/')).toEqual([]);
    expect((await listed(store, '')).sort()).toEqual([...others].sort());
  });

  it('deletes some keys, ignoring absent ones', async () => {
    await eachLimited(['repos/r1/a', 'repos/r1/b', 'repos/r1/c'], 3, (key) => store.put(key, Buffer.from(key)));
    await store.delete(['repos/r1/a', 'repos/r1/absent', 'repos/r9/absent/too', 'repos/r1/c']);
    expect(await listed(store, 'repos/')).toEqual(['repos/r1/b']);
    await store.delete([]);
    await store.delete(['repos/r1/a']);
    expect(await listed(store, 'repos/')).toEqual(['repos/r1/b']);
  });

  it('refuses invalid keys', async () => {
    for (const key of ['../x', '/abs', 'a//b', 'a/../../x', './a', 'a/', '', 'a b', 'repos/r1/blobs/..']) {
      await expect(store.put(key, Buffer.from('x')), key).rejects.toThrow(ArchiveStoreError);
      await expect(store.put(key, Readable.from([Buffer.from('x')])), key).rejects.toThrow(ArchiveStoreError);
      await expect(store.head(key), key).rejects.toThrow(ArchiveStoreError);
      await expect(store.get(key), key).rejects.toThrow(ArchiveStoreError);
      await expect(store.delete(['repos/r1/ok', key]), key).rejects.toThrow(ArchiveStoreError);
    }
    await expect(store.put('../x', Buffer.from('x'))).rejects.toThrow(/invalid archive key "\.\.\/x"/);
    // The S3 store refuses them before sending anything; the local one wrote nothing outside its folder.
    expect(subject.requests).toEqual([]);
    if (subject.outside) expect((await readdir(subject.outside)).sort()).toEqual(['archives']);
    expect(await listed(store, '')).toEqual([]);
  });

  it('leaves no object when the body fails midway, and keeps the one it was replacing', async () => {
    // Before the first part is complete, and with a multipart upload under way (5 MiB parts).
    for (const failAfter of [100 * 1024, 9 * MiB]) {
      const key = `repos/r1/failed-${failAfter}.tar.gz`;
      await expect(store.put(key, generated(20 * MiB, { failAfter }).stream)).rejects.toThrow(/the source broke off/);
      expect(await store.head(key)).toBeNull();
      expect(await store.get(key)).toBeNull();
    }
    expect(await listed(store, '')).toEqual([]);

    await store.put('repos/r1/snapshot.tar.gz', Buffer.from('the old one'));
    await expect(store.put('repos/r1/snapshot.tar.gz', generated(20 * MiB, { failAfter: 9 * MiB }).stream)).rejects.toThrow(/the source broke off/);
    expect(await text(await store.get('repos/r1/snapshot.tar.gz'))).toBe('the old one');
    expect(await listed(store, '')).toEqual(['repos/r1/snapshot.tar.gz']);

    if (kind === 's3') {
      // The multipart uploads were aborted, not left to pile up.
      const aborted = subject.requests.filter((line) => line.startsWith('DELETE') && /[?&]uploadId=/.test(line));
      expect(aborted).toHaveLength(2);
    }
    if (subject.outside) {
      // Nor any temporary file in the folder.
      const files = await readdir(path.join(subject.outside, 'archives'), { recursive: true });
      expect(files.filter((file) => file.endsWith('.partial'))).toEqual([]);
    }
  });

  it('leaves no object when the put is aborted, and settles only once it cleaned up', async () => {
    const controller = new AbortController();
    const source = generated(20 * MiB);
    let seen = 0;
    source.stream.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen >= 10 * MiB && !controller.signal.aborted) controller.abort();
    });
    await expect(store.put('repos/r1/aborted.tar.gz', source.stream, { signal: controller.signal })).rejects.toThrow(/abort/i);
    expect(source.stream.destroyed).toBe(true);
    // Already done when put() rejected: S3Proxy shows a multipart upload under way as objects.
    if (kind === 's3') expect(subject.requests.filter((line) => line.startsWith('DELETE') && /[?&]uploadId=/.test(line))).toHaveLength(1);
    expect(await listed(store, '')).toEqual([]);
    expect(await store.head('repos/r1/aborted.tar.gz')).toBeNull();

    // A signal aborted beforehand stops the put before anything is stored.
    await expect(store.put('repos/r1/never', Buffer.from('x'), { signal: AbortSignal.abort() })).rejects.toThrow(/abort/i);
    const unread = Readable.from([Buffer.from('x')]);
    await expect(store.put('repos/r1/never', unread, { signal: AbortSignal.abort() })).rejects.toThrow(/abort/i);
    expect(unread.destroyed).toBe(true);
    expect(await listed(store, '')).toEqual([]);
  });

  it('names objects by URL', () => {
    const url = store.urlOf('repos/r1/abc.tar.gz');
    expect(url).toBe(subject.url('repos/r1/abc.tar.gz'));
    expect(url).toMatch(kind === 's3' ? /^s3:\/\/test-[a-z0-9-]+\/repos\/r1\/abc\.tar\.gz$/ : /^file:\/\/\/.+\/archives\/repos\/r1\/abc\.tar\.gz$/);
  });
});

describe('S3 archive store errors', () => {
  let env: S3TestEnv;
  beforeAll(async () => {
    env = await s3TestEnv();
  });

  /** Every operation rejects with an ArchiveStoreError whose message is one line naming the bucket and the cause. */
  async function expectEveryCallFails(store: S3ArchiveStore, bucket: string, cause: RegExp, operations = ['put', 'put stream', 'put multipart', 'head', 'get', 'list', 'delete']): Promise<string[]> {
    const calls: Record<string, () => Promise<unknown>> = {
      put: () => store.put('repos/r1/a', Buffer.from('x')),
      'put stream': () => store.put('repos/r1/a', streams[streams.push(Readable.from([Buffer.from('x')])) - 1]!),
      'put multipart': () => store.put('repos/r1/a', streams[streams.push(generated(12 * MiB).stream) - 1]!),
      head: () => store.head('repos/r1/a'),
      get: () => store.get('repos/r1/a'),
      list: () => listed(store, 'repos/'),
      delete: () => store.delete(['repos/r1/a']),
    };
    const messages: string[] = [];
    const streams: Readable[] = [];
    for (const operation of operations) {
      const error = await calls[operation]!().then(
        () => null,
        (caught: unknown) => caught,
      );
      expect(error, operation).toBeInstanceOf(ArchiveStoreError);
      const { message } = error as ArchiveStoreError;
      expect(message, operation).toContain(`S3 bucket ${bucket}:`);
      expect(message, operation).toMatch(cause);
      expect(message, operation).not.toMatch(/[\r\n]/);
      expect(message, operation).not.toContain(env.AWS_SECRET_ACCESS_KEY);
      messages.push(message);
    }
    // A body the store could not send is ended, so that whatever writes into it does not wait forever.
    for (const stream of streams) expect(stream.destroyed).toBe(true);
    return messages;
  }

  it('reports a missing bucket', async () => {
    const bucket = `${env.S3_BUCKET}-missing`;
    // S3Proxy answers DeleteObjects in a missing bucket with 200 (S3 says NoSuchBucket): delete is left out.
    const messages = await expectEveryCallFails(s3Store(env, { bucket }), bucket, /the bucket does not exist$/, ['put', 'put stream', 'put multipart', 'head', 'get', 'list']);
    expect(messages[0]).toBe(`S3 bucket ${bucket}: could not upload repos/r1/a: the bucket does not exist`);
  });

  it('reports a wrong secret key, and never shows it', async () => {
    const secretAccessKey = `wrong${randomBytes(16).toString('hex')}`;
    const store = s3Store(env, { secretAccessKey });
    const messages = await expectEveryCallFails(store, env.S3_BUCKET, /the AWS credentials were refused|access denied/);
    for (const message of messages) expect(message).not.toContain(secretAccessKey);
    expect(messages[0]).toBe(`S3 bucket ${env.S3_BUCKET}: could not upload repos/r1/a: the AWS credentials were refused`);
  });

  it('reports an unknown access key id', async () => {
    const messages = await expectEveryCallFails(s3Store(env, { accessKeyId: 'AKIAUNKNOWNKEY000000' }), env.S3_BUCKET, /the AWS credentials were refused|access denied/);
    expect(messages[0]).toBe(`S3 bucket ${env.S3_BUCKET}: could not upload repos/r1/a: the AWS credentials were refused`);
  });

  it('reports a refused connection', async () => {
    // A port nothing listens on.
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const messages = await expectEveryCallFails(s3Store(env, { endpoint }), env.S3_BUCKET, /connection refused/);
    expect(messages[0]).toBe(`S3 bucket ${env.S3_BUCKET}: could not upload repos/r1/a: connection refused (is S3_ENDPOINT right and the server up?)`);
  });

  it('takes the credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when none are given', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', env.AWS_ACCESS_KEY_ID);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', env.AWS_SECRET_ACCESS_KEY);
    try {
      const store = new S3ArchiveStore({ bucket: env.S3_BUCKET, endpoint: env.S3_ENDPOINT, region: env.S3_REGION, forcePathStyle: true });
      await store.put('repos/env/a', Buffer.from('from env'));
      expect(await text(await store.get('repos/env/a'))).toBe('from env');
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('gets the S3Proxy address from the global set-up', () => {
    const s3 = inject('s3');
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(env).toMatchObject({ S3_ENDPOINT: s3.endpoint, S3_REGION: 'us-east-1', S3_FORCE_PATH_STYLE: '1', AWS_ACCESS_KEY_ID: s3.accessKeyId });
  });
});
