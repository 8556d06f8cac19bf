import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { redactSecrets, registerSecret } from './redact.js';

/** Basic-auth credentials for one git operation; never stored on disk. */
export interface GitAuth {
  username: string;
  password: string;
}

export interface GitProgress {
  stage: string;
  /** 0..1 */
  fraction: number;
  /** Bytes received so far, where git says (its "Receiving objects" lines, from half a second into the transfer). */
  bytes?: number;
}

export interface GitCallOptions {
  cwd?: string;
  /** Remote URL the credentials are scoped to; required with `auth`. */
  url?: string;
  auth?: GitAuth;
  signal?: AbortSignal;
  onProgress?: (progress: GitProgress) => void;
  /** Fed to git's standard input (a pack being received); data flowing in counts as activity. */
  stdin?: Readable;
  /** Receives git's standard output as it comes, with backpressure (the result's stdout is then empty). */
  stdout?: Writable;
  /** Variables for this command only (GIT_INDEX_FILE for a scratch index). */
  env?: Record<string, string>;
}

/** disk-full: no space left where git writes (a re-clone would not help). */
export type GitFailure = 'timeout' | 'aborted' | 'auth' | 'not-found' | 'unreachable' | 'corrupt' | 'disk-full' | 'failed';

/** Process groups of the git commands running now (each git runs in its own group). */
const runningGroups = new Set<number>();

/**
 * SIGKILLs every git this process is running, helpers included: for an exit
 * that cannot wait (a second SIGTERM), so that nothing keeps writing into
 * DATA_DIR after the process is gone. Returns how many were running.
 */
export function killRunningGit(): number {
  const groups = [...runningGroups];
  for (const group of groups) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return groups.length;
}

export class GitError extends Error {
  constructor(
    readonly failure: GitFailure,
    message: string,
  ) {
    super(redactSecrets(message));
  }
}

export interface GitLimits {
  /** Whole-operation limit: the process is killed past it. */
  timeoutMs: number;
  /** Killed when git prints nothing (no progress) for this long. */
  idleTimeoutMs: number;
}

const helperScript = '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" "$REPOLENS_GIT_USERNAME" "$REPOLENS_GIT_PASSWORD"; }; f';

// Only what git needs to find itself, TLS roots and proxies: nothing from the
// caller's environment (EDITOR, GIT_DIR, pagers…) may steer a git call.
const inheritedEnvironment = [
  'PATH',
  'HOME',
  'TMPDIR',
  'LANG',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
];

function buildEnvironment(options: GitCallOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of inheritedEnvironment) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  const config: [string, string][] = [
    ['protocol.allow', 'never'],
    ['protocol.https.allow', 'always'],
    ['protocol.http.allow', 'always'],
    ['credential.helper', ''],
    // A redirect would reach a host the URL check never saw (SSRF): refused.
    ['http.followRedirects', 'false'],
    ['core.hooksPath', '/dev/null'],
    ['gc.auto', '0'],
    // Not even the process that would find nothing to do.
    ['maintenance.auto', 'false'],
  ];
  if (options.auth) {
    if (!options.url) throw new Error('git credentials need the remote URL they are scoped to');
    config.push([`credential.${new URL(options.url).origin}.helper`, helperScript]);
    env.REPOLENS_GIT_USERNAME = options.auth.username;
    env.REPOLENS_GIT_PASSWORD = options.auth.password;
  }
  Object.assign(env, options.env ?? {}, {
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: '/bin/false',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_PROTOCOL: 'version=2',
    // Progress lines even for quick steps: "Updating files: 100% (n/n)" is how a checkout says how many files it changed.
    GIT_PROGRESS_DELAY: '0',
    GIT_CONFIG_COUNT: String(config.length),
    LC_ALL: 'C',
  });
  config.forEach(([key, value], index) => {
    env[`GIT_CONFIG_KEY_${index}`] = key;
    env[`GIT_CONFIG_VALUE_${index}`] = value;
  });
  return env;
}

function classify(message: string): GitFailure {
  if (/No space left on device|Out of diskspace|Disk quota exceeded/i.test(message)) return 'disk-full';
  if (/authentication failed|could not read username|terminal prompts disabled|403|401/i.test(message)) return 'auth';
  if (/repository .* not found|not found|404|couldn't find remote ref|does not appear to be a git repository/i.test(message)) return 'not-found';
  if (/could not resolve host|connection refused|failed to connect|timed out|unable to access|early eof|RPC failed|remote end hung up|5\d\d/i.test(message)) return 'unreachable';
  if (/not a git repository|bad object|corrupt|loose object .* is corrupt|unable to read|fatal: bad revision/i.test(message)) return 'corrupt';
  return 'failed';
}

export interface GitRunResult {
  stdout: string;
  stderr: string;
}

export class Git {
  constructor(private readonly limits: GitLimits) {}

  /** Limits of a transfer this process makes itself (a pack over smart HTTP). */
  get transferLimits(): GitLimits {
    return { ...this.limits };
  }

  /** Limit of one exchange with a remote that is not a transfer (a ref listing). */
  get exchangeTimeoutMs(): number {
    return Math.min(this.limits.timeoutMs, this.limits.idleTimeoutMs);
  }

  /**
   * Runs one git command; the only place this process spawns git. git runs
   * in its own process group so that a timeout or cancellation kills its
   * helpers too (git-remote-https would otherwise hang on in a dead socket).
   */
  run(args: string[], options: GitCallOptions = {}): Promise<GitRunResult> {
    const release = options.auth ? registerSecret(options.auth.password) : () => undefined;
    const command = args[0] ?? 'git';
    return new Promise<GitRunResult>((resolve, reject) => {
      const child = spawn('git', args, {
        cwd: options.cwd ?? process.cwd(),
        env: buildEnvironment(options),
        stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        detached: true,
      });
      if (child.pid) runningGroups.add(child.pid);
      const stdout: Buffer[] = [];
      let stderr = '';
      let failure: GitError | null = null;
      const kill = (error: GitError) => {
        failure ??= error;
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      const overall = setTimeout(() => kill(new GitError('timeout', `git ${command} timed out after ${this.limits.timeoutMs} ms`)), this.limits.timeoutMs);
      let idle: NodeJS.Timeout | undefined;
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(
          () => kill(new GitError('timeout', `git ${command} stalled: no output for ${this.limits.idleTimeoutMs} ms`)),
          this.limits.idleTimeoutMs,
        );
      };
      touch();
      const onAbort = () => kill(new GitError('aborted', `git ${command} was cancelled`));
      if (options.signal?.aborted) onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.stdin && child.stdin) {
        options.stdin.on('data', touch);
        // git may stop reading early (a bad pack): its exit status tells, not the broken pipe.
        child.stdin.on('error', () => undefined);
        options.stdin.pipe(child.stdin);
      }
      if (options.stdout) {
        child.stdout!.on('data', touch);
        // A consumer that fails stops git; the consumer's error is the one reported.
        options.stdout.once('error', (error) => kill(new GitError('failed', `git ${command}: ${error.message}`)));
        child.stdout!.pipe(options.stdout);
      } else {
        child.stdout!.on('data', (chunk: Buffer) => {
          stdout.push(chunk);
          touch();
        });
      }
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        stderr = (stderr + text).slice(-16_384);
        touch();
        if (options.onProgress) reportProgress(text, options.onProgress);
      });
      const finish = () => {
        if (child.pid) runningGroups.delete(child.pid);
        options.stdin?.off('data', touch);
        clearTimeout(overall);
        clearTimeout(idle);
        options.signal?.removeEventListener('abort', onAbort);
        release();
      };
      child.once('error', (error) => {
        finish();
        reject(new GitError('failed', `could not run git: ${error.message}`));
      });
      child.once('close', (code) => {
        finish();
        if (failure) return reject(failure);
        if (code === 0) return resolve({ stdout: Buffer.concat(stdout).toString('utf8'), stderr });
        const detail = lastLines(stderr) || `exit code ${code}`;
        reject(new GitError(classify(detail), `git ${command} failed: ${detail}`));
      });
    });
  }
}

function lastLines(text: string): string {
  return text
    .split(/\r|\n/)
    .map((line) => line.trim())
    .filter((line) => line && !/^(remote: )?(Counting|Compressing|Receiving|Resolving|Enumerating|Updating files)/.test(line))
    .slice(-3)
    .join(' / ')
    .slice(0, 500);
}

const progressLine = /(Counting|Compressing|Receiving|Resolving|Updating files)[^:]*:\s+(\d{1,3})%(?: \(\d+\/\d+\), ([\d.]+) (bytes|KiB|MiB|GiB)\b)?/g;

export function reportProgress(text: string, onProgress: (progress: GitProgress) => void): void {
  for (const match of text.matchAll(progressLine)) {
    const progress: GitProgress = { stage: match[1]!.toLowerCase(), fraction: Number(match[2]) / 100 };
    if (match[3] && match[4]) progress.bytes = toBytes(match[3], match[4]);
    onProgress(progress);
  }
}

/**
 * "Updating files: 100% (n/n), done." → n, the work-tree entries a checkout or clone wrote or
 * removed; null when git printed no such line (nothing to update, or another git version).
 */
export function parseUpdatedFiles(stderr: string): number | null {
  const last = [...stderr.matchAll(/Updating files:\s+100% \((\d+)\/\1\), done\./g)].at(-1);
  return last ? Number(last[1]) : null;
}

/** "Receiving objects: 100% (5/5), 1.20 MiB | ..." → bytes, from git's progress output. */
export function parseReceivedBytes(stderr: string): number {
  const matches = [...stderr.matchAll(/Receiving objects:[^\r\n]*?,\s*([\d.]+)\s*(bytes|KiB|MiB|GiB)/g)];
  const last = matches.at(-1);
  return last ? toBytes(last[1]!, last[2]!) : 0;
}

/** The units git's progress lines use, as this service writes them too (formatBytes). */
const units: Record<string, number> = { bytes: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

function toBytes(amount: string, unit: string): number {
  return Math.round(Number(amount) * (units[unit] ?? 1));
}

/** 5242880 → "5.0 MiB": sizes in messages, in git's units. */
export function formatBytes(bytes: number): string {
  const unit = (['TiB', 'GiB', 'MiB', 'KiB'] as const).find((name) => bytes >= units[name]!);
  return unit ? `${(bytes / units[unit]!).toFixed(1)} ${unit}` : `${bytes} bytes`;
}
