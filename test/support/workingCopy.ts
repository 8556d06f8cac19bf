import path from 'node:path';
import { expect } from 'vitest';
import { git } from './gitFixtures.js';
import { exists } from './wait.js';

/**
 * The working copy is a valid clone whose checked-out HEAD is `sha`, whose tree is clean
 * and which no sync left marked mid-update. Only reads: it works on a full disk too.
 */
export async function expectIntactCopy(copy: string, sha: string): Promise<void> {
  expect(await git(['rev-parse', 'HEAD'], { cwd: copy })).toBe(sha);
  // --no-optional-locks: status must not write the index (the disk may be full).
  expect(await git(['--no-optional-locks', 'status', '--porcelain', '--untracked-files=all'], { cwd: copy })).toBe('');
  // Throws (rejects) on any missing or corrupt object.
  await git(['fsck', '--full', '--no-progress'], { cwd: copy });
  expect(await exists(path.join(copy, '.git', 'repolens-syncing'))).toBe(false);
}
