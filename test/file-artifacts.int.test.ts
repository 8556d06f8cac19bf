import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalArchiveStore, readObject, S3ArchiveStore, type ArchiveStore } from '../src/storage/archiveStore.js';
import { blobsOf, storeFileArtifacts } from '../src/storage/fileArtifacts.js';
import { Git } from '../src/sync/git.js';
import { git } from './support/gitFixtures.js';
import { s3TestEnv } from './support/s3proxy.js';

const runner = new Git({ timeoutMs: 60_000, idleTimeoutMs: 30_000 });
let work: string;

async function commitAll(repo: string, message: string): Promise<string> {
  await git(['add', '-A'], { cwd: repo });
  await git(['commit', '-q', '-m', message], { cwd: repo });
  return git(['rev-parse', 'HEAD'], { cwd: repo });
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'repolens-artifacts-'));
});

async function makeRepository(name: string): Promise<string> {
  const repo = path.join(work, name);
  await mkdir(path.join(repo, 'nested/deeper'), { recursive: true });
  await git(['init', '-q', '--initial-branch=main', repo]);
  // Content shaped to cut `git cat-file --batch` output at awkward places: empty files,
  // newlines at the ends, a blob past the whole-read limit (streamed), many small ones.
  await writeFile(path.join(repo, 'empty'), '');
  await writeFile(path.join(repo, 'newlines'), '\n\n\n');
  await writeFile(path.join(repo, 'large.bin'), randomBytes(9 * 1024 * 1024 + 13));
  for (let i = 0; i < 300; i++) await writeFile(path.join(repo, 'nested/deeper', `f${i}.txt`), `file ${i}\n`.repeat(i % 7));
  await writeFile(path.join(repo, 'name with spaces and "quotes"'), 'odd name\n');
  await symlink('../../etc/passwd', path.join(repo, 'escape'));
  return repo;
}

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const stores: { name: string; open: () => Promise<ArchiveStore> }[] = [
  { name: 'local', open: async () => new LocalArchiveStore(await mkdtemp(path.join(tmpdir(), 'repolens-artifact-store-'))) },
  {
    name: 's3',
    open: async () => {
      const env = await s3TestEnv();
      return new S3ArchiveStore({
        bucket: env.S3_BUCKET,
        endpoint: env.S3_ENDPOINT,
        region: env.S3_REGION,
        forcePathStyle: true,
        credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
      });
    },
  },
];

describe.each(stores)('per-file artifacts in the $name store', ({ name, open }) => {
  it('stores every blob byte-identical to git, then only what a commit changed', async () => {
    const store = await open();
    const repo = await makeRepository(name);
    const first = await commitAll(repo, 'first');
    const result = await storeFileArtifacts(runner, store, { repositoryId: 'r1', cwd: repo, commitSha: first, stored: null });
    const listing = (await git(['ls-tree', '-r', '-z', first], { cwd: repo })).split('\0').filter(Boolean);
    expect(result.files).toBe(listing.length);
    const blobs = blobsOf(result.manifest);
    expect(result.uploaded).toBe(blobs.size + 1);
    for (const sha of blobs) {
      const expected = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const child = spawn('git', ['cat-file', 'blob', sha], { cwd: repo });
        child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
        child.once('error', reject);
        child.once('close', () => resolve(Buffer.concat(chunks)));
      });
      expect((await readObject(store, `repos/r1/blobs/${sha}`))!.equals(expected), sha).toBe(true);
    }
    expect(result.manifest.files.escape).toMatchObject({ type: 'symlink', mode: '120000' });
    expect((await readObject(store, `repos/r1/blobs/${result.manifest.files.escape!.sha}`))?.toString()).toBe('../../etc/passwd');
    expect(result.manifest.files['name with spaces and "quotes"']).toMatchObject({ type: 'file', size: 9 });
    expect(result.manifest.files['large.bin']!.size).toBe(9 * 1024 * 1024 + 13);

    await writeFile(path.join(repo, 'nested/deeper/f3.txt'), 'changed\n');
    const second = await commitAll(repo, 'second');
    const next = await storeFileArtifacts(runner, store, { repositoryId: 'r1', cwd: repo, commitSha: second, stored: blobs });
    expect(next.uploaded).toBe(2);
    // Without the previous manifest, the store's listing says what is there: the same two.
    await writeFile(path.join(repo, 'nested/deeper/f4.txt'), 'changed too\n');
    const third = await commitAll(repo, 'third');
    expect((await storeFileArtifacts(runner, store, { repositoryId: 'r1', cwd: repo, commitSha: third, stored: null })).uploaded).toBe(2);
  });
});
