import { execFile } from 'node:child_process';
import { appendFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { GitServer } from './gitServer.js';

const NAME = 'RepoLens Fixture';
const EMAIL = 'fixture@repolens.test';
const IDENTITY = `${NAME} <${EMAIL}>`;
const EPOCH = Date.UTC(2024, 0, 1) / 1000;
let clock = 0;

/** Each commit gets its own timestamp so identical trees never collapse into one SHA. */
function nextDate(): string {
  return `${EPOCH + clock++} +0000`;
}

/** Environment isolated from the machine's git config and identity. */
export function gitEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: tmpdir(),
    LANG: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: NAME,
    GIT_AUTHOR_EMAIL: EMAIL,
    GIT_COMMITTER_NAME: NAME,
    GIT_COMMITTER_EMAIL: EMAIL,
    ...extra,
  };
}

export interface GitOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Streamed to git's stdin. */
  input?: Iterable<string> | AsyncIterable<string>;
}

/** Runs git without a shell; resolves with stdout (trailing whitespace trimmed), rejects with stderr. */
export function git(args: string[], options: GitOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'git',
      args,
      { cwd: options.cwd, env: gitEnv(options.env), maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`git ${args.join(' ')} failed: ${stderr || error.message}`));
        else resolve(stdout.trimEnd());
      },
    );
    if (options.input) pipeline(Readable.from(options.input), child.stdin!).catch(() => undefined);
    else child.stdin?.end();
  });
}

export interface UpstreamOptions {
  /** Initial commit; `{}` leaves the repository empty. Defaults to a README. */
  files?: Record<string, string>;
  branch?: string;
}

/** A file's new content, an executable file, a symlink (its target), or null to delete it. */
export type FileChange = string | { executable: string } | { symlink: string } | null;
type FileChanges = Iterable<[path: string, content: FileChange]>;

interface CommitCommand {
  branch: string;
  mark: number;
  message: string;
  /** Commit-ish or `:mark`; none makes a root commit. */
  parent?: string;
  /** Tree to start from instead of the parent's. */
  tree?: string;
  files: FileChanges;
  /** UTC offsets of the author and committer lines (default +0000). */
  zones?: { author?: string; committer?: string };
}

/**
 * A bare repository served by a GitServer. Changes are written straight into it with
 * `git fast-import` (a couple of process spawns instead of a dozen for clone/commit/push).
 */
export class Upstream {
  readonly url: string;
  readonly bareDir: string;
  private queue: Promise<unknown> = Promise.resolve();
  private rewrites = 0;

  constructor(
    server: GitServer,
    readonly name: string,
    /** The default branch (what the bare HEAD points to). */
    public branch: string,
  ) {
    this.url = server.repoUrl(name);
    this.bareDir = join(server.root, `${name}.git`);
  }

  /** Writes (string) or deletes (null) files on top of `branch`; a missing branch starts a new root. */
  commit(files: Record<string, FileChange>, message = 'update files', branch = this.branch, zones?: CommitCommand['zones']): Promise<string> {
    return this.serial(async () => {
      const parent = await this.tryHead(branch);
      return this.import({ branch, mark: 1, message, parent, files: Object.entries(files), ...(zones ? { zones } : {}) });
    });
  }

  head(branch = this.branch): Promise<string> {
    return this.bare(['rev-parse', '--verify', `refs/heads/${branch}^{commit}`]);
  }

  /** Rewrites history: amends the head commit, or resets to `target` and commits something different. */
  forcePush(target: string | 'amend', branch = this.branch): Promise<string> {
    return this.serial(async () => {
      const message = `rewrite ${++this.rewrites}`;
      if (target !== 'amend') {
        const files: FileChanges = [[`REWRITE-${this.rewrites}.md`, `${message}\n`]];
        return this.import({ branch, mark: 1, message, parent: target, files }, true);
      }
      const [tree, parent] = (await this.bare(['log', '-1', '--format=%T %P', await this.head(branch)])).split(' ');
      return this.import({ branch, mark: 1, message, parent: parent || undefined, tree, files: [] }, true);
    });
  }

  async createBranch(name: string, fromSha?: string): Promise<void> {
    await this.bare(['update-ref', `refs/heads/${name}`, fromSha ?? (await this.head())]);
  }

  async deleteBranch(name: string): Promise<void> {
    await this.bare(['update-ref', '-d', `refs/heads/${name}`]);
  }

  async renameDefaultBranch(newName: string): Promise<void> {
    const old = this.branch;
    await this.bare(['update-ref', `refs/heads/${newName}`, await this.head(old)]);
    await this.bare(['symbolic-ref', 'HEAD', `refs/heads/${newName}`]);
    await this.bare(['update-ref', '-d', `refs/heads/${old}`]);
    this.branch = newName;
  }

  /** Lightweight tag on `sha` (default: head of the default branch). */
  async tag(name: string, sha?: string): Promise<void> {
    await this.bare(['update-ref', `refs/tags/${name}`, sha ?? (await this.head())]);
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private tryHead(branch: string): Promise<string | undefined> {
    return this.head(branch).catch(() => undefined);
  }

  private import(command: CommitCommand, force = false): Promise<string> {
    const args = ['fast-import', '--quiet', ...(force ? ['--force'] : [])];
    return this.bare(args, [commitCommand(command), `get-mark :${command.mark}\n`]);
  }

  private bare(args: string[], input?: Iterable<string>): Promise<string> {
    return git(args, { cwd: this.bareDir, input });
  }
}

async function initBare(server: GitServer, name: string, branch: string): Promise<Upstream> {
  const upstream = new Upstream(server, name, branch);
  await mkdir(dirname(upstream.bareDir), { recursive: true });
  await git(['init', '-q', '--bare', `--initial-branch=${branch}`, upstream.bareDir]);
  // Appending saves two `git config` spawns per repository.
  await appendFile(
    join(upstream.bareDir, 'config'),
    '[uploadpack]\n\tallowReachableSHA1InWant = true\n\tallowAnySHA1InWant = true\n',
  );
  return upstream;
}

export async function createUpstream(
  server: GitServer,
  name: string,
  options: UpstreamOptions = {},
): Promise<Upstream> {
  const upstream = await initBare(server, name, options.branch ?? 'main');
  const files = options.files ?? { 'README.md': `# ${name}\n` };
  if (Object.keys(files).length > 0) await upstream.commit(files, 'initial commit');
  return upstream;
}

export interface LargeRepositoryOptions {
  files: number;
  commits: number;
  branch?: string;
}

/**
 * Builds a repository of `files` text files in nested folders and `commits` commits:
 * the first commit adds every file, later ones rewrite a few each.
 */
export async function generateLargeRepository(
  server: GitServer,
  name: string,
  options: LargeRepositoryOptions,
): Promise<Upstream> {
  const branch = options.branch ?? 'main';
  const upstream = await initBare(server, name, branch);
  await git(['fast-import', '--quiet'], {
    cwd: upstream.bareDir,
    // glibc otherwise returns and refaults heap pages for every blob delta: ~10x slower.
    env: { MALLOC_TOP_PAD_: String(64 * 1024 * 1024) },
    input: largeHistory(branch, options.files, options.commits, mulberry32(seedOf(name))),
  });
  return upstream;
}

function* largeHistory(branch: string, files: number, commits: number, random: () => number): Generator<string> {
  for (let mark = 1; mark <= commits; mark++) {
    const changed = mark === 1 ? files : 1 + Math.floor(random() * 20);
    const changes = Array.from({ length: changed }, (_, i): [string, string] => [
      largeRepoPath(mark === 1 ? i : Math.floor(random() * files)),
      fileContent(random),
    ]);
    const message = mark === 1 ? 'initial import' : `change ${mark}: ${sentence(random, 6)}`;
    const parent = mark === 1 ? undefined : `:${mark - 1}`;
    yield commitCommand({ branch, mark, message, parent, files: changes });
  }
}

function commitCommand(command: CommitCommand): string {
  const date = nextDate().replace(/ \+0000$/, '');
  let text =
    `commit refs/heads/${command.branch}\nmark :${command.mark}\n` +
    `author ${IDENTITY} ${date} ${command.zones?.author ?? '+0000'}\ncommitter ${IDENTITY} ${date} ${command.zones?.committer ?? '+0000'}\n${data(`${command.message}\n`)}`;
  if (command.parent) text += `from ${command.parent}\n`;
  if (command.tree) text += `M 040000 ${command.tree} ""\n`;
  for (const [path, content] of command.files) {
    if (content === null) text += `D ${quotePath(path)}\n`;
    else if (typeof content === 'string') text += `M 100644 inline ${quotePath(path)}\n${data(content)}`;
    else if ('executable' in content) text += `M 100755 inline ${quotePath(path)}\n${data(content.executable)}`;
    else text += `M 120000 inline ${quotePath(path)}\n${data(content.symlink)}`;
  }
  return `${text}\n`;
}

/** fast-import takes C-style quoted paths; JSON escaping agrees for the characters that need it. */
function quotePath(path: string): string {
  return /^"|[\\\n"]/.test(path) ? JSON.stringify(path) : path;
}

function largeRepoPath(index: number): string {
  return `packages/pkg-${index % 25}/src/module-${Math.floor(index / 25) % 8}/file-${index}.ts`;
}

function data(text: string): string {
  return `data ${Buffer.byteLength(text)}\n${text}\n`;
}

const WORDS = (
  'const let return function async await import export type interface value result ' +
  'repository commit branch fetch sync error config server client request response ' +
  'index item list map set count total buffer stream parse format update delete create'
).split(' ');

function sentence(random: () => number, words: number): string {
  return Array.from({ length: words }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ');
}

/** A few hundred bytes to a few KB of code-like lines. */
function fileContent(random: () => number): string {
  const lines = 5 + Math.floor(random() * 80);
  let text = '';
  for (let i = 0; i < lines; i++) {
    text += `${'  '.repeat(Math.floor(random() * 3))}${sentence(random, 2 + Math.floor(random() * 8))};\n`;
  }
  return text;
}

function seedOf(text: string): number {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return hash >>> 0;
}

/** A small seeded random generator: generated repositories are the same on every run. */
export function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
