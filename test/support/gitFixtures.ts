import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { GitServer } from './gitServer.js';

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
    GIT_AUTHOR_NAME: 'RepoLens Fixture',
    GIT_AUTHOR_EMAIL: 'fixture@repolens.test',
    GIT_COMMITTER_NAME: 'RepoLens Fixture',
    GIT_COMMITTER_EMAIL: 'fixture@repolens.test',
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

/** A bare repository served by a GitServer plus a scratch clone that pushes to it over the filesystem. */
export class Upstream {
  readonly url: string;
  readonly bareDir: string;
  private readonly workDir: string;
  private queue: Promise<unknown> = Promise.resolve();
  private commits = 0;

  constructor(
    server: GitServer,
    readonly name: string,
    /** The default branch (what the bare HEAD points to). */
    public branch: string,
  ) {
    this.url = server.repoUrl(name);
    this.bareDir = join(server.root, `${name}.git`);
    this.workDir = join(server.root, '.work', name);
  }

  /** Writes (string) or deletes (null) files, commits and pushes; a missing branch starts a new root. */
  commit(files: Record<string, string | null>, message?: string, branch = this.branch): Promise<string> {
    return this.serial(async () => {
      await this.checkout(branch);
      await this.writeFiles(files);
      await this.work(['add', '-A']);
      await this.commitWork(message ?? `commit ${++this.commits}`);
      await this.work(['push', '-q', 'origin', `HEAD:refs/heads/${branch}`]);
      return this.work(['rev-parse', 'HEAD']);
    });
  }

  head(branch = this.branch): Promise<string> {
    return this.bare(['rev-parse', `refs/heads/${branch}`]);
  }

  /** Rewrites history: amends the head commit, or resets to `target` and commits something different. */
  forcePush(target: string | 'amend', branch = this.branch): Promise<string> {
    return this.serial(async () => {
      await this.checkout(branch);
      const rewrite = `rewrite ${++this.commits}`;
      if (target === 'amend') {
        await this.work(['commit', '-q', '--amend', '--allow-empty', '-m', rewrite], this.commitEnv());
      } else {
        await this.work(['reset', '-q', '--hard', target]);
        await this.writeFiles({ [`REWRITE-${this.commits}.md`]: `${rewrite}\n` });
        await this.work(['add', '-A']);
        await this.commitWork(rewrite);
      }
      await this.work(['push', '-q', '--force', 'origin', `HEAD:refs/heads/${branch}`]);
      return this.work(['rev-parse', 'HEAD']);
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

  /** The scratch clone is made on first use, so generated repositories only pay for it when mutated. */
  private async checkout(branch: string): Promise<void> {
    if (!existsSync(this.workDir)) {
      await mkdir(dirname(this.workDir), { recursive: true });
      await git(['clone', '-q', '--no-checkout', this.bareDir, this.workDir]);
    }
    // Refs may have moved behind the clone's back (createBranch, renameDefaultBranch...).
    await this.work(['fetch', '-q', '--prune', '--force', 'origin']);
    const tracking = `refs/remotes/origin/${branch}`;
    const exists = await this.work(['rev-parse', '-q', '--verify', tracking]).then(
      () => true,
      () => false,
    );
    if (exists) {
      await this.work(['checkout', '-q', '-f', '-B', branch, tracking]);
    } else {
      await this.work(['checkout', '-q', '-f', '--orphan', branch]);
      await this.work(['rm', '-rfq', '--ignore-unmatch', '.']);
    }
  }

  private async writeFiles(files: Record<string, string | null>): Promise<void> {
    for (const [path, content] of Object.entries(files)) {
      const target = join(this.workDir, path);
      if (content === null) {
        await rm(target, { force: true });
      } else {
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, content);
      }
    }
  }

  private commitWork(message: string): Promise<string> {
    return this.work(['commit', '-q', '--allow-empty', '-m', message], this.commitEnv());
  }

  private commitEnv(): NodeJS.ProcessEnv {
    const date = nextDate();
    return { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date };
  }

  private work(args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
    return git(args, { cwd: this.workDir, env });
  }

  private bare(args: string[]): Promise<string> {
    return git(args, { cwd: this.bareDir });
  }
}

async function initBare(server: GitServer, name: string, branch: string): Promise<Upstream> {
  const upstream = new Upstream(server, name, branch);
  await mkdir(dirname(upstream.bareDir), { recursive: true });
  await git(['init', '-q', '--bare', `--initial-branch=${branch}`, upstream.bareDir]);
  await git(['config', 'uploadpack.allowReachableSHA1InWant', 'true'], { cwd: upstream.bareDir });
  await git(['config', 'uploadpack.allowAnySHA1InWant', 'true'], { cwd: upstream.bareDir });
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
 * Builds a repository of `files` text files in nested folders and `commits` commits with
 * `git fast-import`: the first commit adds every file, later ones rewrite a few each.
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
    input: fastImportStream(branch, options.files, options.commits, seedOf(name)),
  });
  return upstream;
}

function* fastImportStream(branch: string, files: number, commits: number, seed: number): Generator<string> {
  const random = mulberry32(seed);
  for (let n = 1; n <= commits; n++) {
    const date = nextDate();
    const message = n === 1 ? 'initial import\n' : `change ${n}: ${sentence(random, 6)}\n`;
    let block =
      `commit refs/heads/${branch}\nmark :${n}\n` +
      `author RepoLens Fixture <fixture@repolens.test> ${date}\n` +
      `committer RepoLens Fixture <fixture@repolens.test> ${date}\n` +
      data(message) +
      (n > 1 ? `from :${n - 1}\n` : '');
    const changed = n === 1 ? files : 1 + Math.floor(random() * 20);
    for (let i = 0; i < changed; i++) {
      const file = n === 1 ? i : Math.floor(random() * files);
      block += `M 100644 inline ${largeRepoPath(file)}\n${data(fileContent(random))}`;
    }
    yield `${block}\n`;
  }
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

function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
