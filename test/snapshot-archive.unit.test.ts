import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGzip, gzipSync } from 'node:zlib';
import { Header, type HeaderData } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractSnapshot, packWorkingCopy, UnsafeArchiveError, type PackSummary } from '../src/storage/snapshotArchive.js';
import { git } from './support/gitFixtures.js';

const MiB = 1024 * 1024;
const identity = ['-c', 'user.name=Snapshot Test', '-c', 'user.email=snapshot@repolens.test'];

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'repolens-snapshot-'));
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** A fresh folder under scratch. */
function folder(name: string): Promise<string> {
  return mkdtemp(path.join(scratch, `${name}-`));
}

/** Every path under dir (relative), lstat'ed, the folder itself included as ''. */
async function walk(dir: string): Promise<Map<string, Stats>> {
  const found = new Map([['', await lstat(dir)]]);
  for (const name of await readdir(dir, { recursive: true })) found.set(name, await lstat(path.join(dir, name)));
  return found;
}

async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for (const info of (await walk(dir)).values()) if (info.isFile()) total += info.size;
  return total;
}

describe('packWorkingCopy / extractSnapshot round trip of a git working copy', () => {
  let repo: string;
  let head: string;
  let summary: PackSummary;
  let produced: Buffer;
  let restored: string;
  let extracted: { entries: number; bytes: number };

  beforeAll(async () => {
    repo = await folder('repo');
    await git(['init', '-q', '--initial-branch=main', repo]);
    await writeFile(path.join(repo, 'README.md'), '# snapshot\n');
    await writeFile(path.join(repo, 'run.sh'), '#!/bin/sh\necho ok\n', { mode: 0o755 });
    await mkdir(path.join(repo, 'src/nested/deep'), { recursive: true });
    await writeFile(path.join(repo, 'src/nested/deep/file.txt'), 'deep\n');
    await writeFile(path.join(repo, 'src/shared.txt'), 'shared content\n');
    await link(path.join(repo, 'src/shared.txt'), path.join(repo, 'src/shared-hardlink.txt'));
    // Longer than ustar's 100-byte name field: stored through a pax header.
    const long = path.join('src', 'a'.repeat(60), 'b'.repeat(60), 'long-name.txt');
    await mkdir(path.dirname(path.join(repo, long)), { recursive: true });
    await writeFile(path.join(repo, long), 'long\n');
    await symlink('/etc/passwd', path.join(repo, 'passwd-link'));
    await symlink('nested/deep/file.txt', path.join(repo, 'src/relative-link'));
    await git([...identity, 'add', '-A'], { cwd: repo });
    await git([...identity, 'commit', '-qm', 'snapshot me'], { cwd: repo });
    await promisify(execFile)('mkfifo', [path.join(repo, 'untracked.fifo')]);
    head = await git(['rev-parse', 'HEAD'], { cwd: repo });

    const { stream, done } = packWorkingCopy(repo);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    summary = await done;
    produced = Buffer.concat(chunks);

    restored = await folder('restored');
    extracted = await extractSnapshot(Readable.from([produced]), restored, { maxBytes: 100 * MiB, maxEntries: 10_000 });
  });

  it('summarises what it packed: every entry but the FIFO, file bytes, and the checksum of the stream', async () => {
    const source = await walk(repo);
    const stored = [...source.values()].filter((info) => info.isFile() || info.isDirectory() || info.isSymbolicLink());
    expect(stored.length).toBe(source.size - 1); // the FIFO is skipped
    expect(summary.entries).toBe(stored.length);
    expect(summary.bytes).toBe(stored.reduce((sum, info) => sum + (info.isFile() ? info.size : 0), 0));
    expect(summary.compressedBytes).toBe(produced.length);
    expect(summary.sha256).toBe(createHash('sha256').update(produced).digest('hex'));
    expect(extracted).toEqual({ entries: summary.entries, bytes: summary.bytes });
  });

  it('restores a repository git recognises: same HEAD, clean status, fsck passes', async () => {
    expect(await git(['-C', restored, 'rev-parse', 'HEAD'])).toBe(head);
    expect(await git(['-C', restored, 'status', '--porcelain'])).toBe('');
    await git(['-C', restored, 'fsck', '--full', '--strict']);
  });

  it('keeps symlinks as symlinks with their targets, and the executable bit', async () => {
    expect((await lstat(path.join(restored, 'passwd-link'))).isSymbolicLink()).toBe(true);
    expect(await readlink(path.join(restored, 'passwd-link'))).toBe('/etc/passwd');
    expect(await readlink(path.join(restored, 'src/relative-link'))).toBe('nested/deep/file.txt');
    expect((await stat(path.join(restored, 'run.sh'))).mode & 0o111).toBe(0o111);
    expect((await stat(path.join(restored, 'README.md'))).mode & 0o111).toBe(0);
  });

  it('stores hard-linked files as two files and skips the FIFO', async () => {
    const copy = await lstat(path.join(restored, 'src/shared-hardlink.txt'));
    expect(copy.isFile()).toBe(true);
    expect(copy.nlink).toBe(1);
    expect(await readFile(path.join(restored, 'src/shared-hardlink.txt'), 'utf8')).toBe('shared content\n');
    await expect(lstat(path.join(restored, 'untracked.fifo'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('packWorkingCopy file names', () => {
  it('archives names that look like tar options, or hold newlines, as names', async () => {
    const dir = await folder('option-names');
    const names = ['--to-command=touch PWNED', '-C', '--checkpoint-action=exec=touch PWNED2', 'line\nbreak', ' leading space'];
    for (const name of names) await writeFile(path.join(dir, name), `${name}\n`);
    const { stream, done } = packWorkingCopy(dir);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect((await done).entries).toBe(names.length + 1);
    const restored = await folder('option-names-restored');
    await extractSnapshot(Readable.from([Buffer.concat(chunks)]), restored, { maxBytes: MiB, maxEntries: 100 });
    for (const name of names) expect(await readFile(path.join(restored, name), 'utf8')).toBe(`${name}\n`);
    for (const where of [dir, restored, process.cwd()]) {
      await expect(lstat(path.join(where, 'PWNED'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(lstat(path.join(where, 'PWNED2'))).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });
});

describe('packWorkingCopy failures', () => {
  it('rejects done and errors the stream when the folder cannot be read', async () => {
    const { stream, done } = packWorkingCopy(path.join(scratch, 'does-not-exist'));
    const consumed = (async () => {
      for await (const chunk of stream) void chunk;
    })();
    await expect(done).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(consumed).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects done when aborted mid-stream', async () => {
    const dir = await folder('abort-pack');
    await writeFile(path.join(dir, 'random.bin'), randomBytes(8 * MiB));
    const controller = new AbortController();
    const { stream, done } = packWorkingCopy(dir, { signal: controller.signal });
    stream.once('data', () => controller.abort());
    stream.resume();
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
    expect(stream.destroyed).toBe(true);
  });
});

// ---- hand-made archives ----

type Entry = HeaderData & { content?: Buffer | string };

/** One 512-byte ustar header, made with node-tar's Header (which just encodes what it is given). */
function header(entry: HeaderData): Buffer {
  const made = new Header({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), size: 0, type: 'File', ...entry });
  made.encode();
  return made.block!;
}

function tarball(entries: Entry[], { endMarker = true } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const { content, ...entry } of entries) {
    const body = Buffer.from(content ?? '');
    blocks.push(header({ ...entry, size: entry.size ?? body.length }), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  if (endMarker) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const gz = (entries: Entry[]) => gzipSync(tarball(entries));

/** A pax extended header record: "<length> <key>=<value>\n", the length counting itself. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let length = rest.length + 1;
  while (String(length).length + rest.length !== length) length += 1;
  return `${length}${rest}`;
}

/**
 * Extracts into base/nest/dest with an `outside` folder next to it; resolves with what happened and
 * what exists around dest afterwards.
 */
async function tryExtract(
  archive: Buffer | Readable | ((outside: string) => Buffer),
  limits = { maxBytes: 10 * MiB, maxEntries: 100 },
) {
  const base = await folder('extract');
  const outside = path.join(base, 'outside');
  const dest = path.join(base, 'nest', 'dest');
  await mkdir(outside);
  await mkdir(dest, { recursive: true });
  const body = typeof archive === 'function' ? archive(outside) : archive;
  const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
  const started = Date.now();
  const error = await extractSnapshot(source, dest, limits).then(
    () => undefined,
    (reason: unknown) => reason as Error,
  );
  const around = [...(await walk(base)).keys()].filter((p) => p !== 'nest/dest' && !p.startsWith('nest/dest/'));
  return { error, dest, outside, around, ms: Date.now() - started };
}

/** Nothing but the scaffolding exists outside dest. */
const SCAFFOLD = ['', 'outside', 'nest'];

describe('extractSnapshot refuses unsafe archives', () => {
  const refusals: [string, Buffer | ((outside: string) => Buffer), RegExp][] = [
    ['a ../ path', gz([{ path: '../evil', content: 'x' }]), /"\.\.\/evil".*'\.\.'/],
    ['a .. in the middle', gz([{ path: 'a/../../evil', content: 'x' }]), /"a\/\.\.\/\.\.\/evil".*'\.\.'/],
    [
      'a ../ path given by a pax header',
      gz([
        { path: 'PaxHeader/innocent', type: 'ExtendedHeader', content: paxRecord('path', '../evil') },
        { path: 'innocent', content: 'x' },
      ]),
      /"\.\.\/evil".*'\.\.'/,
    ],
    ['an absolute path', (outside) => gz([{ path: `${outside}/abs-pwned`, content: 'x' }]), /abs-pwned".*absolute/],
    ['a drive letter', gz([{ path: 'C:/evil', content: 'x' }]), /"C:\/evil".*drive letter/],
    [
      'a file through a symlink to outside',
      (outside) =>
        gz([
          { path: 'link', type: 'SymbolicLink', linkpath: outside },
          { path: 'link/pwned', content: 'x' },
        ]),
      /"link\/pwned".*under symlink "link"/,
    ],
    [
      'a file through a symlink to .',
      gz([
        { path: 'link', type: 'SymbolicLink', linkpath: '.' },
        { path: 'link/x', content: 'x' },
      ]),
      /"link\/x".*under symlink "link"/,
    ],
    [
      'a file through a symlink to a folder inside dest',
      gz([
        { path: 'real/', type: 'Directory' },
        { path: 'alias', type: 'SymbolicLink', linkpath: 'real' },
        { path: './alias//x', content: 'x' },
      ]),
      /"\.\/alias\/\/x".*under symlink "alias"/,
    ],
    [
      'a folder entry replacing a symlink',
      gz([
        { path: 'link', type: 'SymbolicLink', linkpath: '/' },
        { path: 'link/', type: 'Directory' },
      ]),
      /"link\/".*at or under symlink "link"/,
    ],
    [
      'a hard link',
      gz([
        { path: 'a.txt', content: 'a' },
        { path: 'b.txt', type: 'Link', linkpath: 'a.txt' },
      ]),
      /"b\.txt".*Link entries are not allowed/,
    ],
    ['a character device', gz([{ path: 'null', type: 'CharacterDevice' }]), /"null".*CharacterDevice/],
    ['a block device', gz([{ path: 'sda', type: 'BlockDevice' }]), /"sda".*BlockDevice/],
    ['a FIFO', gz([{ path: 'pipe', type: 'FIFO' }]), /"pipe".*FIFO/],
    ['a type node-tar skips on its own', gz([{ path: 'sparse', type: 'SparseFile', content: 'x' }]), /"sparse".*SparseFile/],
    [
      'more entries than allowed',
      gz(Array.from({ length: 101 }, (_, i) => ({ path: `f${i}`, content: 'x' }))),
      /"f100".*more than 100 entries/,
    ],
  ];

  it.each(refusals)('%s', async (_name, archive, message) => {
    const { error, around, outside } = await tryExtract(archive);
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    expect(error?.message).toMatch(message);
    expect(around.sort()).toEqual(SCAFFOLD.sort());
    expect(await readdir(outside)).toEqual([]);
  });

  it('writes nothing of a refused entry nor after it', async () => {
    const { error, dest } = await tryExtract(
      gz([
        { path: 'before.txt', content: 'kept' },
        { path: '../evil', content: 'x' },
        { path: 'after.txt', content: 'never' },
      ]),
    );
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    expect(await readdir(dest)).toEqual(['before.txt']);
  });

  it('stops a gzip bomb at its header: 200 MiB of zeros against a 10 MiB limit', async () => {
    async function* bomb() {
      yield header({ path: 'zeros', size: 200 * MiB });
      const zeros = Buffer.alloc(MiB);
      for (let i = 0; i < 200; i++) yield zeros;
      yield Buffer.alloc(1024);
    }
    const compressed: Buffer[] = [];
    for await (const chunk of Readable.from(bomb()).pipe(createGzip({ level: 9 }))) compressed.push(chunk as Buffer);
    const archive = Buffer.concat(compressed);
    expect(archive.length).toBeLessThan(MiB);

    const { error, dest, around, ms } = await tryExtract(archive, { maxBytes: 10 * MiB, maxEntries: 100 });
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    expect(error?.message).toMatch(/"zeros".*exceeds 10485760 bytes/);
    expect(await sizeOf(dest)).toBeLessThan(20 * MiB);
    expect(around.sort()).toEqual(SCAFFOLD.sort());
    expect(ms).toBeLessThan(5_000);
  });

  it('counts content over all entries against maxBytes', async () => {
    const four = Buffer.alloc(4 * MiB, 1);
    const { error, dest } = await tryExtract(
      gz(['one', 'two', 'three', 'four'].map((name) => ({ path: name, content: four }))),
      { maxBytes: 10 * MiB, maxEntries: 100 },
    );
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    expect(error?.message).toMatch(/"three".*exceeds/);
    expect((await readdir(dest)).sort()).toEqual(['one', 'two']);
  });

  it('refuses data that expands far beyond its entries (here after the end marker)', async () => {
    const archive = gzipSync(Buffer.concat([tarball([{ path: 'a', content: 'a' }]), Buffer.alloc(50 * MiB)]));
    const { error } = await tryExtract(archive, { maxBytes: MiB, maxEntries: 10 });
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    expect(error?.message).toMatch(/expands to more than/);
  });

  it('refuses a pax header too large for node-tar to read', async () => {
    const { error } = await tryExtract(
      gz([
        { path: 'PaxHeader/x', type: 'ExtendedHeader', content: Buffer.alloc(2 * MiB, 'a') },
        { path: 'x', content: 'x' },
      ]),
    );
    expect(error).toBeInstanceOf(UnsafeArchiveError);
    expect(error?.message).toMatch(/ExtendedHeader of 2097152 bytes/);
  });
});

describe('extractSnapshot on damaged input', () => {
  const good = gz([
    { path: 'dir/', type: 'Directory' },
    { path: 'dir/file.txt', content: 'x'.repeat(5000) },
  ]);

  it('accepts the undamaged archive', async () => {
    const { error, dest } = await tryExtract(good);
    expect(error).toBeUndefined();
    expect(await readFile(path.join(dest, 'dir/file.txt'), 'utf8')).toBe('x'.repeat(5000));
  });

  it.each([
    ['not gzip at all', Buffer.from('this is not a gzip stream, not even close'.repeat(20))],
    ['corrupt gzip', Buffer.concat([good.subarray(0, 20), Buffer.alloc(40, 0xff), good.subarray(60)])],
    ['a truncated gzip stream', good.subarray(0, good.length - 12)],
    ['a tar cut inside a file', gzipSync(tarball([{ path: 'f', content: 'y'.repeat(3000) }]).subarray(0, 1536))],
    ['a tar without its end marker', gzipSync(tarball([{ path: 'f', content: 'y' }], { endMarker: false }))],
    ['an empty stream', Buffer.alloc(0)],
  ])('rejects %s with an Error', async (_name, archive) => {
    const { error, around } = await tryExtract(archive);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(UnsafeArchiveError);
    expect(around.sort()).toEqual(SCAFFOLD.sort());
  });

  it('rejects when the source fails', async () => {
    const source = new PassThrough();
    source.write(good.subarray(0, 30));
    setTimeout(() => source.destroy(new Error('connection reset')), 20);
    const { error } = await tryExtract(source);
    expect(error?.message).toBe('connection reset');
  });

  it('rejects when aborted while the source stalls', async () => {
    const dest = await folder('abort-extract');
    const source = new PassThrough();
    source.write(good.subarray(0, 30));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    await expect(
      extractSnapshot(source, dest, { maxBytes: MiB, maxEntries: 10 }, { signal: controller.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(source.destroyed).toBe(true);
  });

  it('drops setuid, setgid and sticky bits but keeps the executable bit', async () => {
    const { error, dest } = await tryExtract(
      gz([
        { path: 'tool', mode: 0o6755, content: '#!/bin/sh\n' },
        { path: 'shared/', type: 'Directory', mode: 0o3775 },
      ]),
    );
    expect(error).toBeUndefined();
    expect((await stat(path.join(dest, 'tool'))).mode & 0o7777).toBe(0o755);
    expect((await stat(path.join(dest, 'shared'))).mode & 0o7000).toBe(0);
  });
});
