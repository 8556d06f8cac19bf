import type { Provider } from '../generated/prisma/client.js';
import { withoutSecrets } from '../sync/redact.js';

/**
 * What the sync service asks a hosting platform: GitHub's and GitLab's REST
 * APIs (githubApi.ts, gitlabApi.ts), or a plain git host through git's own
 * protocol (plainGit.ts: the ref listing answers the default branch and a
 * branch's head; the rest is `unsupported`).
 */
export interface GitPlatform {
  readonly provider: Provider;
  /** Who a token belongs to and what it may do: a token is checked with this before it is stored. */
  tokenOwner(options?: CallOptions): Promise<TokenOwner>;
  /** A repository as the platform describes it; `name` is "owner/name" (GitLab: the full path). */
  repositoryInfo(name: string, options?: CallOptions): Promise<RepositoryInfo>;
  /**
   * The commit a branch points at. `etag` is what the last answer carried: when the branch has
   * not moved the platform answers 304 (which costs GitHub's rate limit nothing) and so does this.
   */
  branchHead(name: string, branch: string, etag: string | null, options?: CallOptions): Promise<BranchHead>;
  /**
   * What changed from `base` to `head`, file by file, as the platform's compare API lists it.
   * `complete` is false when the platform cut the list (GitHub lists at most 300 files; GitLab
   * says compare_timeout) or, on GitHub, `head` does not descend from `base` (GitHub compares
   * from the merge base; GitLab is asked for the straight difference): then the list is not the
   * whole difference from `base`.
   */
  compare(name: string, base: string, head: string, options?: CallOptions): Promise<Comparison>;
  /** A file's content at a commit (a symlink's content is its target). */
  fileContent(name: string, path: string, ref: string, options?: CallOptions): Promise<FileContent>;
  /**
   * The difference from `base` to `head` as a git patch (GitHub's `application/vnd.github.diff`
   * media type: every file, not only 300, but binary files only named). GitHub compares from
   * the merge base: for a head that does not descend from `base` the patch is not the
   * difference from `base` (a DELTA notices by the tree it makes).
   */
  compareDiff?(name: string, base: string, head: string, options?: CallOptions): Promise<string>;
  /** One commit as the platform's git database describes it (GitHub's Git Commits API). */
  commitDescription?(name: string, sha: string, options?: CallOptions): Promise<CommitDescription>;
  /**
   * The entries of one tree object (GitHub's Git Trees API, not recursive): how a DELTA learns
   * the exact modes the compare API leaves out. GitLab's compare gives the modes, so it has none.
   */
  treeEntries?(name: string, treeSha: string, options?: CallOptions): Promise<TreeEntry[]>;
  /** Creates the repository's webhook (JSON deliveries of the events the service maps, signed with `secret`); returns its id. */
  createWebhook(name: string, hook: { url: string; secret: string }, options?: CallOptions): Promise<string>;
  /** Deletes a webhook this service created; one already gone is no error. */
  deleteWebhook(name: string, hookId: string, options?: CallOptions): Promise<void>;
}

/**
 * Whether a token's scopes let it manage a repository's hooks: GitHub classic
 * tokens with `repo`, `admin:repo_hook` or `write:repo_hook`, GitLab tokens
 * with `api`. A token that lists no scopes (GitHub fine-grained, GitLab OAuth)
 * is tried; the platform's refusal then leaves the manual set-up.
 */
export function mayManageHooks(provider: Provider, scopes: readonly string[]): boolean {
  if (scopes.length === 0) return true;
  const enough = provider === 'GITLAB' ? ['api'] : ['repo', 'admin:repo_hook', 'write:repo_hook'];
  return scopes.some((scope) => enough.includes(scope));
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Told the size of each answer's body as it arrives (what a DELTA reports as bytes received). */
  onReceived?: (bytes: number) => void;
}

export interface TokenOwner {
  login: string;
  /** OAuth scopes the token carries (GitHub `X-OAuth-Scopes`); empty when the platform does not say. */
  scopes: string[];
}

export interface RepositoryInfo {
  defaultBranch: string;
  private: boolean;
  /** Size as the platform reports it, in bytes (GitHub reports KiB). */
  sizeBytes: number;
}

export interface FileChange {
  status: 'added' | 'modified' | 'removed' | 'renamed' | 'changed';
  path: string;
  /** The path before a rename. */
  previousPath: string | null;
  /** The blob at `head` (null when removed, or when the platform does not say). */
  blobSha: string | null;
  /** The git mode at `head` (100644, 100755, 120000, 160000) when the platform says (GitLab does, GitHub does not). */
  mode: string | null;
}

export interface Comparison {
  changes: FileChange[];
  complete: boolean;
  /** The head commit as the comparison describes it; null when its list of commits left it out. */
  headCommit: CommitDescription | null;
}

/** A person line of a commit as an API gives it: the date is ISO 8601, with the offset (GitLab) or in UTC (GitHub). */
export interface CommitPerson {
  name: string;
  email: string;
  date: string;
}

/** A commit as a platform's API describes it: enough, with the tree, to write the commit object again. */
export interface CommitDescription {
  sha: string;
  /** GitHub says; GitLab does not. */
  treeSha: string | null;
  parents: string[];
  author: CommitPerson;
  committer: CommitPerson;
  message: string;
  /** The commit is signed: its object holds a signature the API description cannot give back exactly. */
  signed: boolean;
}

export interface TreeEntry {
  name: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  sha: string;
}

export interface FileContent {
  content: Buffer;
  blobSha: string;
  kind: 'file' | 'symlink';
}

export type BranchHead = { changed: false } | { changed: true; sha: string; etag: string | null };

/** `unsupported`: the platform has no such operation (a plain git host has no REST API). */
export type PlatformFailure = 'auth' | 'not-found' | 'rate-limited' | 'unavailable' | 'invalid-answer' | 'unsupported';

/** A platform call that failed: what kind of failure, and a message without any secret. */
export class PlatformError extends Error {
  constructor(
    message: string,
    readonly failure: PlatformFailure,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'PlatformError';
  }
}

/**
 * `error` with the secrets of the call (its token) cut out of its message: the message quotes the
 * API's answer, and an API (or a proxy before it) may repeat the token it refused.
 */
export function withoutCallSecrets(error: PlatformError, secrets: (string | null | undefined)[]): PlatformError {
  const message = withoutSecrets(error.message, secrets);
  return message === error.message ? error : new PlatformError(message, error.failure, error.status);
}

/** `signal` (the caller's, if any) joined with a time limit of its own. */
export function withTimeout(signal: AbortSignal | null | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/** An attempt that ran out of time (fetch rejects with the timeout signal's TimeoutError, possibly wrapped). */
export function isTimeout(error: unknown): boolean {
  for (let cause = error as { name?: string; cause?: unknown } | undefined, depth = 0; cause && depth < 5; cause = cause.cause as typeof cause, depth++) {
    if (cause.name === 'TimeoutError') return true;
  }
  return false;
}

/**
 * `fetch` that tells `onReceived` how many bytes each answer's body took: its
 * Content-Length when compressed, else the body as it arrives. What an API
 * transfer costs.
 */
export function countingFetch(base: typeof fetch, onReceived: (bytes: number) => void): typeof fetch {
  return async (url, init) => {
    const response = await base(url, init);
    if (!response.body || [101, 204, 205, 304].includes(response.status)) return response;
    // A compressed answer: what crossed the wire is its Content-Length, not the decoded body.
    const wire = Number(response.headers.get('content-length'));
    if (response.headers.get('content-encoding') && Number.isSafeInteger(wire) && wire > 0) {
      onReceived(wire);
      return response;
    }
    const counted = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          onReceived(chunk.byteLength);
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}
