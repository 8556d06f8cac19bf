import { afterAll, beforeAll, expect, it } from 'vitest';
import { Git } from '../src/sync/git.js';
import { diffCommits, ObjectReader, type TreeChange } from '../src/sync/gitObjects.js';
import { RandomEdits } from './support/codeGraph.js';
import { createUpstream, git } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

let server: GitServer;

beforeAll(async () => {
  server = await startGitServer();
});

afterAll(async () => {
  await server?.close();
});

/** What `git diff --raw --no-renames -r` says, in diffCommits' terms. */
async function gitDiff(cwd: string, from: string, to: string): Promise<TreeChange[]> {
  const fields = (await git(['diff', '--raw', '-z', '--no-renames', '--no-abbrev', from, to], { cwd })).split('\0');
  const changes: TreeChange[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const [oldMode, newMode, oldSha, newSha, status] = fields[i]!.slice(1).split(' ');
    const none = (sha: string) => (/^0+$/.test(sha) ? null : sha);
    changes.push({
      status: status as TreeChange['status'],
      path: fields[i + 1]!,
      oldSha: none(oldSha!),
      oldMode: oldMode === '000000' ? null : oldMode!,
      newSha: none(newSha!),
      newMode: newMode === '000000' ? null : newMode!,
    });
  }
  return changes;
}

const byPath = (a: TreeChange, b: TreeChange) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.status < b.status ? -1 : 1);

it('diffCommits, from tree objects through one cat-file process, says what git diff says', async () => {
  const upstream = await createUpstream(server, 'git-objects-diff', { files: { 'README.md': '# start\n', 'a/b/c.ts': 'c\n' } });
  const reader = new ObjectReader(new Git({ timeoutMs: 60_000, idleTimeoutMs: 60_000 }), upstream.bareDir);
  try {
    const edits = new RandomEdits(99, { 'README.md': '# start\n', 'a/b/c.ts': 'c\n' });
    let previous = await upstream.head();
    for (let round = 0; round < 25; round++) {
      const changes = edits.next(round);
      // A file where a folder was and back (D/F conflicts), and a file turned into a symlink.
      if (round === 5) Object.assign(changes, { 'a/b/c.ts': null, 'a/b': 'now a file\n' });
      if (round === 9) Object.assign(changes, { 'a/b': null, 'a/b/d.ts': 'a folder again\n' });
      if (round === 13) changes['README.md'] = { symlink: 'a/b/d.ts' };
      const sha = await upstream.commit(changes, `round ${round}`);
      const ours = await diffCommits(reader, previous, sha);
      expect(ours.changes.sort(byPath), `round ${round}`).toEqual((await gitDiff(upstream.bareDir, previous, sha)).sort(byPath));
      expect(ours.tree).toBe(await git(['rev-parse', `${sha}^{tree}`], { cwd: upstream.bareDir }));
      previous = sha;
    }
    // An unknown commit is refused (the caller then indexes from scratch), and the reader goes on serving.
    await expect(diffCommits(reader, 'f'.repeat(40), previous)).rejects.toThrow(/missing/);
    expect((await diffCommits(reader, previous, previous)).changes).toEqual([]);
  } finally {
    await reader.close();
  }
});
