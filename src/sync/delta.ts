import { createHash } from 'node:crypto';
import { readFile, rm, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { PlatformError, type CommitDescription, type CommitPerson, type FileChange, type GitPlatform, type TreeEntry } from '../providers/platform.js';
import type { Git } from './git.js';

/**
 * DELTA (SPEC §1): the objects of a new head come from the platform's REST
 * API instead of a git fetch. The head's tree is built from the old one plus
 * the change: GitHub's compare patch applied to it (fromPatch), or the
 * compare API's list of changed files with the contents the copy lacks, each
 * checked against its blob id (fromFiles). The head commit object is then
 * written again from the API's description. Tree and commit are checked
 * against the ids upstream gave (the commit's SHA covers the tree, its
 * parents and every byte of its text), so the copy ends with the very objects
 * a fetch would have brought, and the working tree is then moved by git's
 * own checkout (which writes modes and symlinks as git has them, and never
 * writes through a symlink or outside the tree).
 *
 * Anything the API cannot answer exactly (a list cut at the platform's limit,
 * a head that does not descend from the copy, an unsafe path, content that
 * does not hash to its id, a signed commit, a file over the contents API's
 * size limit) is a DeltaUnavailable, and the run fetches with git instead.
 */
export class DeltaUnavailable extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'DeltaUnavailable';
  }
}

export interface DeltaRequest {
  platform: GitPlatform;
  /** The repository as the platform names it ("owner/name", GitLab's full path). */
  name: string;
  /** Repository root (the work tree; objects go into its .git). */
  cwd: string;
  /** The commit the copy is at: the comparison's base. */
  base: string;
  /** The head the CHECK saw. */
  head: string;
  signal: AbortSignal;
  /** Files downloaded so far, of how many (progress). */
  onProgress?: (done: number, total: number) => void;
  /** Told the bytes of the API's answers so far, as they arrive (a size limit may abort `signal`). */
  onReceived?: (bytes: number) => void;
}

export interface DeltaObjects {
  /** Paths the comparison listed as changed. */
  filesChanged: number;
  /** Bytes of the API's answers (patch, commit, compare, contents, trees). */
  bytesReceived: number;
}

const zeroSha = '0'.repeat(40);
const emptyTree = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

/**
 * Writes the head's objects (blobs, trees, the commit) into the copy's object
 * store from the platform's API. Nothing else changes: the caller moves the
 * branch and the work tree. Unreferenced objects left by a DELTA that gave up
 * are harmless (a later fetch or clone ignores them).
 */
export async function writeDeltaObjects(git: Git, request: DeltaRequest): Promise<DeltaObjects> {
  let bytesReceived = 0;
  const call = {
    signal: request.signal,
    onReceived: (bytes: number) => {
      bytesReceived += bytes;
      request.onReceived?.(bytesReceived);
    },
  };
  const index = path.join(request.cwd, '.git', `repolens-delta-${process.pid}.index`);
  try {
    const filesChanged = (await fromPatch(git, request, index, call)) ?? (await fromFiles(git, request, index, call));
    return { filesChanged, bytesReceived };
  } finally {
    await rm(index, { force: true });
  }
}

type Call = { signal: AbortSignal; onReceived: (bytes: number) => void };

/**
 * The patch route (GitHub): the whole difference as one git patch (the
 * compare API's diff media type, a few hundred bytes for a small change)
 * applied by `git apply --cached` to a scratch index of the old tree, and the
 * head commit's description from the Git Commits API. Null when the platform
 * has no such API or the patch holds binary files (the file route then
 * downloads contents). Returns how many files changed.
 */
async function fromPatch(git: Git, request: DeltaRequest, index: string, call: Call): Promise<number | null> {
  const { platform, name, cwd, base, head, signal } = request;
  if (!platform.compareDiff || !platform.commitDescription) return null;
  const [diff, commit] = await Promise.all([
    platformStep(() => platform.compareDiff!(name, base, head, call)),
    platformStep(() => platform.commitDescription!(name, head, call)),
  ]);
  rebuildable(commit, head);
  const patch = Buffer.from(diff);
  let paths: string[] = [];
  if (patch.length > 0) {
    // The paths the patch touches, as git itself reads them (quoting, renames).
    const numstat = await git.run(['apply', '--numstat', '-z', '-'], { cwd, signal, stdin: Readable.from([patch]) });
    const listed = parseNumstat(numstat.stdout);
    if (listed.binary) return null;
    paths = listed.paths;
    for (const file of paths) if (unsafePath(file)) throw new DeltaUnavailable(`the compare API named an unsafe path: ${JSON.stringify(file)}`);
  }
  const env = { GIT_INDEX_FILE: index };
  await git.run(['read-tree', base], { cwd, signal, env });
  if (patch.length > 0) await git.run(['apply', '--cached', '--whitespace=nowarn', '-'], { cwd, signal, env, stdin: Readable.from([patch]) });
  const tree = (await git.run(['write-tree'], { cwd, signal, env })).stdout.trim();
  if (commit.treeSha && tree !== commit.treeSha) throw new DeltaUnavailable(`the compare API's patch does not make the head's tree ${commit.treeSha}`);
  await writeCommit(git, cwd, commit, tree, signal);
  request.onProgress?.(1, 1);
  return paths.length;
}

/**
 * `git apply --numstat -z`: one "added TAB deleted TAB path" record per file
 * the patch changes (a rename by its new path; "-" counts for a binary file;
 * a path may hold tabs), and whether any file is binary. The old side of a
 * rename must be in the old tree, which holds no unsafe path.
 */
export function parseNumstat(stdout: string): { paths: string[]; binary: boolean } {
  const records = stdout.split('\0').filter(Boolean);
  const paths = records.map((record) => record.split('\t').slice(2).join('\t'));
  return { paths, binary: records.some((record) => record.startsWith('-\t')) };
}

/**
 * The file route (GitLab, and GitHub patches with binary files): the compare
 * API's list of changed files, the contents of those the copy lacks, and the
 * head's tree built from the old one. Returns how many files changed.
 */
async function fromFiles(git: Git, request: DeltaRequest, index: string, call: Call): Promise<number> {
  const { platform, name, cwd, base, head, signal } = request;
  const comparison = await platformStep(() => platform.compare(name, base, head, call));
  if (!comparison.complete) {
    throw new DeltaUnavailable(`the compare API did not list the whole change from ${base.slice(0, 12)} (past its file limit, or the head does not descend from the copy)`);
  }
  const commit = rebuildable(comparison.headCommit, head);
  for (const change of comparison.changes) {
    for (const file of [change.path, change.previousPath]) {
      if (file !== null && unsafePath(file)) throw new DeltaUnavailable(`the compare API named an unsafe path: ${JSON.stringify(file)}`);
    }
    if (change.blobSha !== null && !/^[0-9a-f]{40}$/.test(change.blobSha)) throw new DeltaUnavailable(`the compare API gave ${JSON.stringify(change.path)} a malformed blob id`);
    if (change.mode !== null && !/^(100644|100755|120000|160000|0)$/.test(change.mode)) throw new DeltaUnavailable(`the compare API gave ${JSON.stringify(change.path)} an unknown mode ${JSON.stringify(change.mode)}`);
  }

  const updates = new Map<string, { mode: string; sha: string } | null>();
  const added = comparison.changes.filter((change) => change.status !== 'removed');
  for (const change of comparison.changes) {
    if (change.previousPath !== null) updates.set(change.previousPath, null);
    if (change.status === 'removed') updates.set(change.path, null);
  }
  const before = await oldEntries(git, cwd, base, comparison.changes, signal);
  // No write through a file or symlink: every folder on a new path's way must still be a folder.
  for (const change of added) {
    const segments = change.path.split('/');
    for (let depth = 1; depth < segments.length; depth++) {
      const folder = segments.slice(0, depth).join('/');
      const now = updates.has(folder) ? updates.get(folder) : before.get(folder);
      if (now && now.mode !== '040000') throw new DeltaUnavailable(`the compare API named a path through a file or symlink: ${JSON.stringify(change.path)}`);
    }
  }
  const present = await presentObjects(git, cwd, added.flatMap((change) => (change.blobSha ? [change.blobSha] : [])), signal);

  // Contents the copy lacks, checked against their ids and written as blobs.
  const missing = added.filter((change) => change.mode !== '160000' && !(change.blobSha && present.has(change.blobSha)));
  const kinds = new Map<string, 'file' | 'symlink'>();
  const blobs = new Map<string, string>();
  let done = 0;
  for (const change of missing) {
    signal.throwIfAborted();
    const content = await platformStep(() => platform.fileContent(name, change.path, head, call));
    const sha = await writeBlob(git, cwd, content.content, signal);
    const expected = change.blobSha ?? content.blobSha;
    if (sha !== expected) throw new DeltaUnavailable(`the content of ${JSON.stringify(change.path)} does not hash to its blob id ${expected}`);
    kinds.set(change.path, content.kind);
    blobs.set(change.path, sha);
    request.onProgress?.(++done, missing.length);
  }
  for (const change of added) {
    const sha = change.blobSha ?? blobs.get(change.path);
    if (!sha) throw new DeltaUnavailable(`the compare API gave no blob id for ${JSON.stringify(change.path)}`);
    updates.set(change.path, { mode: change.mode ?? guessMode(change, before, kinds.get(change.path)), sha });
  }

  let tree = await buildTree(git, cwd, index, base, updates, signal);
  if (commit.treeSha && tree !== commit.treeSha && platform.treeEntries) {
    // The compare API gives no modes (GitHub): the guesses were wrong somewhere, so read the
    // modes of the listed paths from the head's trees, and build again.
    const modes = await modesFromTrees(platform, name, commit.treeSha, added.map((change) => change.path), call);
    for (const change of added) {
      const mode = modes.get(change.path);
      const entry = updates.get(change.path);
      if (mode && entry) entry.mode = mode;
    }
    tree = await buildTree(git, cwd, index, base, updates, signal);
  }
  if (commit.treeSha && tree !== commit.treeSha) throw new DeltaUnavailable(`the files the compare API listed do not make the head's tree ${commit.treeSha}`);
  await writeCommit(git, cwd, commit, tree, signal);
  return comparison.changes.length;
}

/** The API's description of the head commit, when its object can be written again from it. */
function rebuildable(commit: CommitDescription | null, head: string): CommitDescription {
  if (!commit || commit.sha !== head) throw new DeltaUnavailable(`the API did not describe the head commit ${head}`);
  if (commit.signed) throw new DeltaUnavailable('the head commit is signed: its object cannot be rebuilt from the API');
  return commit;
}

/**
 * Writes the head commit object, rebuilt on `tree` (whose correctness its SHA
 * then proves). Parents the copy lacks (a push of several commits) make the
 * head a shallow boundary, so that git never walks into history it does not
 * have, and fetches say so to the server.
 */
async function writeCommit(git: Git, cwd: string, commit: CommitDescription, tree: string, signal: AbortSignal): Promise<void> {
  const text = rebuildCommit(commit, tree);
  if (!text) throw new DeltaUnavailable(`commit ${commit.sha} cannot be rebuilt from the API's description (or its files do not make its tree)`);
  const written = (await git.run(['hash-object', '-t', 'commit', '-w', '--stdin'], { cwd, signal, stdin: Readable.from([text]) })).stdout.trim();
  if (written !== commit.sha) throw new DeltaUnavailable(`git wrote commit ${written}, not ${commit.sha}`);
  const parents = await presentObjects(git, cwd, commit.parents, signal);
  if (commit.parents.some((parent) => !parents.has(parent))) await addShallow(cwd, commit.sha);
}

/** Commits the copy's history stops at (its .git/shallow), for fetches to tell the server. */
export async function shallowCommits(cwd: string): Promise<string[]> {
  const text = await readFile(path.join(cwd, '.git', 'shallow'), 'utf8').catch(() => '');
  return text.split('\n').filter((line) => /^[0-9a-f]{40,64}$/.test(line));
}

async function addShallow(cwd: string, sha: string): Promise<void> {
  const known = await shallowCommits(cwd);
  if (known.includes(sha)) return;
  const file = path.join(cwd, '.git', 'shallow');
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, [...known, sha].map((line) => `${line}\n`).join(''));
  await rename(temporary, file);
}

/**
 * A path the copy must refuse: empty, absolute, with an empty, "." or ".."
 * segment, a ".git" segment (any case), a NUL or a backslash (a separator on
 * Windows, refused by git's own path checks).
 */
export function unsafePath(file: string): boolean {
  if (file === '' || file.startsWith('/') || /[\0\\]/.test(file)) return true;
  return file.split('/').some((segment) => segment === '' || segment === '.' || segment === '..' || segment.toLowerCase() === '.git');
}

/** A platform call; its failure is a reason to fetch with git instead. */
async function platformStep<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof PlatformError) throw new DeltaUnavailable(error.message);
    throw error;
  }
}

/** Modes and ids at `base` of the paths a change touches (their old selves) and of the folders on their way. */
async function oldEntries(git: Git, cwd: string, base: string, changes: FileChange[], signal: AbortSignal): Promise<Map<string, { mode: string; sha: string }>> {
  const folders = (file: string) => file.split('/').slice(0, -1).map((_, depth) => file.split('/').slice(0, depth + 1).join('/'));
  const paths = [...new Set(changes.flatMap((change) => [change.path, ...folders(change.path), ...(change.previousPath ? [change.previousPath] : [])]))];
  const entries = new Map<string, { mode: string; sha: string }>();
  if (paths.length === 0) return entries;
  const { stdout } = await git.run(['ls-tree', '-z', '-t', '--full-tree', base, '--', ...paths], { cwd, signal, env: { GIT_LITERAL_PATHSPECS: '1' } });
  for (const record of stdout.split('\0')) {
    const tab = record.indexOf('\t');
    if (tab < 0) continue;
    const [mode, , sha] = record.slice(0, tab).split(' ');
    entries.set(record.slice(tab + 1), { mode: mode!, sha: sha! });
  }
  return entries;
}

/** Which of these objects the copy has (one `cat-file --batch-check`). */
async function presentObjects(git: Git, cwd: string, shas: string[], signal: AbortSignal): Promise<Set<string>> {
  const unique = [...new Set(shas)];
  if (unique.length === 0) return new Set();
  const { stdout } = await git.run(['cat-file', '--batch-check=%(objectname) %(objecttype)'], { cwd, signal, stdin: Readable.from([unique.join('\n') + '\n']) });
  return new Set(
    stdout
      .split('\n')
      .filter((line) => /^[0-9a-f]+ (blob|tree|commit|tag)$/.test(line))
      .map((line) => line.split(' ')[0]!),
  );
}

async function writeBlob(git: Git, cwd: string, content: Buffer, signal: AbortSignal): Promise<string> {
  return (await git.run(['hash-object', '-w', '--no-filters', '--stdin'], { cwd, signal, stdin: Readable.from([content]) })).stdout.trim();
}

/**
 * The mode of a changed path when the platform does not say (GitHub): a
 * symlink's content says so; a file keeps the mode it had (at its old path,
 * for a rename), a mode-only change ("changed") flips the executable bit, and
 * a new file is 100644. Wrong guesses show as a tree that is not the head's,
 * and the head's trees then give the modes.
 */
function guessMode(change: FileChange, before: Map<string, { mode: string }>, kind: 'file' | 'symlink' | undefined): string {
  if (kind === 'symlink') return '120000';
  const old = before.get(change.previousPath ?? change.path)?.mode;
  if (change.status === 'changed') return old === '100644' ? '100755' : old === '120000' && kind === undefined ? '120000' : '100644';
  if (old === '100644' || old === '100755' || ((old === '120000' || old === '160000') && kind === undefined)) return old;
  return '100644';
}

/** The tree of `base` with these entries replaced (null: removed), built in a scratch index. */
async function buildTree(
  git: Git,
  cwd: string,
  index: string,
  base: string,
  updates: Map<string, { mode: string; sha: string } | null>,
  signal: AbortSignal,
): Promise<string> {
  const env = { GIT_INDEX_FILE: index };
  await git.run(['read-tree', base], { cwd, signal, env });
  // Removals first: a file that became a folder (or the reverse) must be gone before its replacement.
  const lines = [
    ...[...updates].filter(([, entry]) => entry === null).map(([file]) => `0 ${zeroSha}\t${file}`),
    ...[...updates].flatMap(([file, entry]) => (entry ? [`${entry.mode} ${entry.sha}\t${file}`] : [])),
  ];
  if (lines.length) await git.run(['update-index', '-z', '--index-info'], { cwd, signal, env, stdin: Readable.from([lines.map((line) => `${line}\0`).join('')]) });
  return (await git.run(['write-tree'], { cwd, signal, env })).stdout.trim();
}

/** The modes of these paths in the head's tree, from the platform's tree listings (one per folder on their way). */
async function modesFromTrees(
  platform: GitPlatform,
  name: string,
  rootTree: string,
  paths: string[],
  call: { signal: AbortSignal; onReceived: (bytes: number) => void },
): Promise<Map<string, string>> {
  const listings = new Map<string, Promise<TreeEntry[]>>();
  const list = (sha: string) => {
    let listing = listings.get(sha);
    if (!listing) {
      listing = sha === emptyTree ? Promise.resolve([]) : platformStep(() => platform.treeEntries!(name, sha, call));
      listings.set(sha, listing);
    }
    return listing;
  };
  const modes = new Map<string, string>();
  for (const file of paths) {
    const segments = file.split('/');
    let tree: string | null = rootTree;
    for (const [depth, segment] of segments.entries()) {
      const entry: TreeEntry | undefined = tree ? (await list(tree)).find((candidate) => candidate.name === segment) : undefined;
      if (!entry) break;
      if (depth === segments.length - 1) modes.set(file, entry.mode);
      tree = entry.type === 'tree' ? entry.sha : null;
    }
  }
  return modes;
}

/** UTC offsets in use (every quarter hour from -12:00 to +14:00), "+0000" first. */
const offsets = (() => {
  const all: string[] = [];
  for (let minutes = -12 * 60; minutes <= 14 * 60; minutes += 15) {
    const sign = minutes < 0 ? '-' : '+';
    const abs = Math.abs(minutes);
    all.push(`${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}${String(abs % 60).padStart(2, '0')}`);
  }
  return ['+0000', ...all.filter((offset) => offset !== '+0000')];
})();

/**
 * The commit object's text whose SHA is the head's, from the API's
 * description and the tree built here; null when no candidate matches.
 * GitLab's dates keep the offset; GitHub's are in UTC, so the offsets are
 * tried (the author's and the committer's, the same one first), and the
 * message with and without the final newline git normally writes.
 */
export function rebuildCommit(commit: CommitDescription, tree: string): Buffer | null {
  const author = personCandidates(commit.author);
  const committer = personCandidates(commit.committer);
  if (!author || !committer) return null;
  const messages = [...new Set([`${commit.message}\n`, commit.message, `${commit.message.replace(/\n+$/, '')}\n`])];
  const head = `tree ${tree}\n${commit.parents.map((parent) => `parent ${parent}\n`).join('')}`;
  const attempt = (authorLine: string, committerLine: string, message: string): Buffer | null => {
    const text = Buffer.from(`${head}author ${authorLine}\ncommitter ${committerLine}\n\n${message}`);
    const sha = createHash('sha1').update(`commit ${text.length}\0`).update(text).digest('hex');
    return sha === commit.sha ? text : null;
  };
  for (const message of messages) {
    // The same offset for both first (one person, one machine), then every pair.
    for (const [index, authorLine] of author.entries()) {
      const found = attempt(authorLine, committer[Math.min(index, committer.length - 1)]!, message);
      if (found) return found;
    }
    for (const authorLine of author) {
      for (const committerLine of committer) {
        const found = attempt(authorLine, committerLine, message);
        if (found) return found;
      }
    }
  }
  return null;
}

/** "Name <email> <epoch> <offset>" lines a person could have been written as. */
function personCandidates(person: CommitPerson): string[] | null {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)$/.exec(person.date);
  if (!match) return null;
  const seconds = Math.floor(Date.parse(`${match[1]}${match[2] === 'Z' ? 'Z' : match[2]}`) / 1000);
  if (!Number.isFinite(seconds)) return null;
  const given = match[2] === 'Z' ? null : match[2]!.replace(':', '');
  // An explicit "+00:00" is as good as any offset; "Z" (GitHub) says nothing about the author's.
  return (given ? [given] : offsets).map((offset) => `${person.name} <${person.email}> ${seconds} ${offset}`);
}
