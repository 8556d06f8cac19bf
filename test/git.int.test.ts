import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Git, parseUpdatedFiles } from '../src/sync/git.js';
import { git } from './support/gitFixtures.js';

// filesChanged of a run comes from the checkout's own progress line when git prints one, which
// spares a `git diff` per run; this pins that the line appears under the service's git environment
// and counts what `git diff --name-only` counts.
describe('counting changed files from git checkout', { timeout: 30_000 }, () => {
  const service = new Git({ timeoutMs: 30_000, idleTimeoutMs: 30_000 });
  let dir: string;
  let first: string;
  let second: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'repolens-checkout-count-'));
    await git(['init', '-q', '--initial-branch=main', dir]);
    for (const name of ['a.txt', 'b.txt', 'c/d.txt', 'e.txt']) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), `${name}\n`);
    }
    await git(['add', '-A'], { cwd: dir });
    await git(['commit', '-qm', 'one'], { cwd: dir });
    first = await git(['rev-parse', 'HEAD'], { cwd: dir });
    await git(['rm', '-q', 'a.txt'], { cwd: dir });
    await git(['mv', 'e.txt', 'c/renamed.txt'], { cwd: dir });
    await writeFile(path.join(dir, 'b.txt'), 'changed\n');
    await writeFile(path.join(dir, 'new.txt'), 'new\n');
    await git(['add', '-A'], { cwd: dir });
    await git(['commit', '-qm', 'two'], { cwd: dir });
    second = await git(['rev-parse', 'HEAD'], { cwd: dir });
    await git(['checkout', '-q', first], { cwd: dir });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('the checkout prints "Updating files" with the count git diff --name-only --no-renames gives', async () => {
    const expected = (await git(['diff', '--no-renames', '--name-only', first, second], { cwd: dir })).split('\n').length;
    expect(expected).toBe(5); // a deleted, b modified, e renamed (2 paths), new added
    const { stderr } = await service.run(['checkout', '--force', '--progress', '-B', 'main', second], { cwd: dir });
    expect(parseUpdatedFiles(stderr)).toBe(expected);
    // Nothing to update: no line, and the caller falls back to git diff.
    const again = await service.run(['checkout', '--force', '--progress', '-B', 'main', second], { cwd: dir });
    expect(parseUpdatedFiles(again.stderr)).toBeNull();
  });

  it('parses only a finished count', () => {
    expect(parseUpdatedFiles('Updating files:  50% (1/2)\rUpdating files: 100% (2/2)\rUpdating files: 100% (2/2), done.\n')).toBe(2);
    expect(parseUpdatedFiles('Updating files:  50% (1/2)\r')).toBeNull();
    expect(parseUpdatedFiles('')).toBeNull();
  });
});
