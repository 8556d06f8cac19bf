import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseNumstat, rebuildCommit, unsafePath } from '../src/sync/delta.js';
import type { CommitDescription } from '../src/providers/platform.js';

// The pure parts of DELTA: which paths a compare answer may name, and the
// commit object written again from an API's description of it.

describe('unsafePath', () => {
  it.each([
    ['../etc/passwd'],
    ['a/../../b'],
    ['/etc/passwd'],
    [''],
    ['a//b'],
    ['a/./b'],
    ['a/'],
    ['.git/config'],
    ['sub/.GIT/hooks/post-checkout'],
    ['a\0b'],
    ['dir\\..\\evil'],
  ])('refuses %j', (file) => {
    expect(unsafePath(file)).toBe(true);
  });

  it.each([['README.md'], ['src/a.ts'], ['.github/workflows/ci.yml'], ['.gitignore'], ['dir/..hidden'], ['space name/ünïcode.txt'], ['a\nb']])('accepts %j', (file) => {
    expect(unsafePath(file)).toBe(false);
  });
});

const tree = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';
const parent = 'a'.repeat(40);

/** The SHA git gives a commit object with this text. */
function commitSha(text: string): string {
  return createHash('sha1').update(`commit ${Buffer.byteLength(text)}\0`).update(text).digest('hex');
}

function objectText(authorZone: string, committerZone: string, message: string): string {
  return `tree ${tree}\nparent ${parent}\nauthor Ada <ada@example.test> 1700000000 ${authorZone}\ncommitter Bob <bob@example.test> 1700000100 ${committerZone}\n\n${message}`;
}

function described(sha: string, authorDate: string, committerDate: string, message: string): CommitDescription {
  return {
    sha,
    treeSha: tree,
    parents: [parent],
    author: { name: 'Ada', email: 'ada@example.test', date: authorDate },
    committer: { name: 'Bob', email: 'bob@example.test', date: committerDate },
    message,
    signed: false,
  };
}

describe('rebuildCommit', () => {
  it('finds the offsets GitHub leaves out (UTC dates), the same or different for author and committer', () => {
    for (const [authorZone, committerZone] of [
      ['+0000', '+0000'],
      ['+0530', '+0530'],
      ['-0800', '+0545'],
      ['+1400', '-1200'],
    ] as const) {
      const text = objectText(authorZone, committerZone, 'subject\n\nbody\n');
      const commit = described(commitSha(text), '2023-11-14T22:13:20Z', '2023-11-14T22:15:00Z', 'subject\n\nbody');
      expect(rebuildCommit(commit, tree)?.toString()).toBe(text);
    }
  });

  it("uses GitLab's offsets as given, with milliseconds", () => {
    const text = objectText('+0200', '-0330', 'message\n');
    const commit = described(commitSha(text), '2023-11-15T00:13:20.000+02:00', '2023-11-14T18:45:00.000-03:30', 'message\n');
    expect(rebuildCommit(commit, tree)?.toString()).toBe(text);
  });

  it('keeps a message without a final newline', () => {
    const text = objectText('+0100', '+0100', 'no newline at the end');
    expect(rebuildCommit(described(commitSha(text), '2023-11-14T22:13:20Z', '2023-11-14T22:15:00Z', 'no newline at the end'), tree)?.toString()).toBe(text);
  });

  it('gives null when nothing matches: another tree, another name, a malformed date', () => {
    const text = objectText('+0000', '+0000', 'm\n');
    const commit = described(commitSha(text), '2023-11-14T22:13:20Z', '2023-11-14T22:15:00Z', 'm');
    expect(rebuildCommit(commit, 'b'.repeat(40))).toBeNull();
    expect(rebuildCommit({ ...commit, author: { ...commit.author, name: 'Eve' } }, tree)).toBeNull();
    expect(rebuildCommit({ ...commit, author: { ...commit.author, date: 'yesterday' } }, tree)).toBeNull();
  });
});

describe('parseNumstat', () => {
  it('reads git apply --numstat -z: one record per file (a rename by its new path), a tab in a name, binary files', () => {
    const stdout = ['1\t1\tsrc/a.ts', '0\t0\tnew\tname.md', '-\t-\timage.png', ''].join('\0');
    expect(parseNumstat(stdout)).toEqual({ paths: ['src/a.ts', 'new\tname.md', 'image.png'], binary: true });
    expect(parseNumstat('3\t0\tplain.txt\0')).toEqual({ paths: ['plain.txt'], binary: false });
    expect(parseNumstat('')).toEqual({ paths: [], binary: false });
  });
});
