import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One line of `git diff --raw -M`: modes, blob ids, status letter, paths. */
export interface RawChange {
  oldMode: string;
  newMode: string;
  oldSha: string;
  newSha: string;
  /** A added, D deleted, M modified, R renamed, T type changed (C copied is off: -M only). */
  status: 'A' | 'D' | 'M' | 'R' | 'T';
  path: string;
  previousPath: string | null;
}

/** What the fakes' compare endpoints list: git's own diff between two commits of a bare repository (renames found). */
export async function rawDiff(bareDir: string, base: string, head: string): Promise<RawChange[]> {
  const { stdout } = await run('git', ['-C', bareDir, 'diff', '--raw', '-z', '-M', '--no-abbrev', base, head, '--'], { maxBuffer: 64 * 1024 * 1024 });
  const fields = stdout.split('\0');
  const changes: RawChange[] = [];
  for (let index = 0; index < fields.length - 1; ) {
    const [oldMode, newMode, oldSha, newSha, statusField] = fields[index++]!.slice(1).split(' ');
    const status = statusField![0] as RawChange['status'];
    const first = fields[index++]!;
    const second = status === 'R' ? fields[index++]! : null;
    changes.push({ oldMode: oldMode!, newMode: newMode!, oldSha: oldSha!, newSha: newSha!, status, path: second ?? first, previousPath: second ? first : null });
  }
  return changes;
}

/** `git diff -M base...head` as GitHub's diff media type gives it (binary files only named). */
export async function textDiff(bareDir: string, base: string, head: string): Promise<Buffer> {
  const { stdout } = await run('git', ['-C', bareDir, 'diff', '-M', `${base}...${head}`, '--'], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
  return stdout;
}

/** A commit id, or null when `ref` names none (or looks like an option). */
export async function commitOf(bareDir: string, ref: string): Promise<string | null> {
  if (!ref || ref.startsWith('-')) return null;
  return run('git', ['-C', bareDir, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`]).then(({ stdout }) => stdout.trim() || null, () => null);
}

/** The tree entry at `path` in `commit`: mode, type, blob id; null when there is none. */
export async function treeEntry(bareDir: string, commit: string, path: string): Promise<{ mode: string; type: string; sha: string } | null> {
  const { stdout } = await run('git', ['-C', bareDir, 'ls-tree', '-z', commit, '--', path]);
  const line = stdout.split('\0')[0];
  if (!line) return null;
  const [meta] = line.split('\t');
  const [mode, type, sha] = meta!.split(' ');
  return { mode: mode!, type: type!, sha: sha! };
}

/** The entries of one tree object: mode, type, id, size (blobs), name. Null when it is not a tree. */
export async function treeListing(bareDir: string, sha: string): Promise<{ mode: string; type: string; sha: string; size: number | null; name: string }[] | null> {
  const type = await run('git', ['-C', bareDir, 'cat-file', '-t', sha]).then(({ stdout }) => stdout.trim(), () => null);
  if (type !== 'tree') return null;
  const { stdout } = await run('git', ['-C', bareDir, 'ls-tree', '-z', '--long', sha], { maxBuffer: 64 * 1024 * 1024 });
  return stdout
    .split('\0')
    .filter(Boolean)
    .map((record) => {
      const tab = record.indexOf('\t');
      const [mode, kind, id, size] = record.slice(0, tab).split(/ +/);
      return { mode: mode!, type: kind!, sha: id!, size: size === '-' ? null : Number(size), name: record.slice(tab + 1) };
    });
}

export async function blob(bareDir: string, sha: string): Promise<Buffer> {
  const { stdout } = await run('git', ['-C', bareDir, 'cat-file', 'blob', sha], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
  return stdout;
}

/** `git log -1` of a commit as the fakes describe commits. */
export async function commitInfo(bareDir: string, sha: string) {
  const { stdout } = await run('git', ['-C', bareDir, 'log', '-1', '--format=%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B', sha]);
  const [hash, tree, parents, authorName, authorEmail, authorDate, committerName, committerEmail, committerDate, message] = stdout.split('\0');
  return {
    sha: hash!,
    tree: tree!,
    parents: parents ? parents.split(' ').filter(Boolean) : [],
    author: { name: authorName!, email: authorEmail!, date: authorDate! },
    committer: { name: committerName!, email: committerEmail!, date: committerDate! },
    message: (message ?? '').replace(/\n+$/, ''),
  };
}

export async function revCount(bareDir: string, range: string): Promise<number> {
  return Number((await run('git', ['-C', bareDir, 'rev-list', '--count', range])).stdout.trim());
}

export async function mergeBase(bareDir: string, a: string, b: string): Promise<string | null> {
  return run('git', ['-C', bareDir, 'merge-base', a, b]).then(({ stdout }) => stdout.trim() || null, () => null);
}

export async function revList(bareDir: string, range: string): Promise<string[]> {
  return (await run('git', ['-C', bareDir, 'rev-list', '--reverse', range])).stdout.split('\n').filter(Boolean);
}
