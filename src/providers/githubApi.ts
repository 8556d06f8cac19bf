import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/core';
import type { Logger } from 'pino';
import { countingFetch, isTimeout, PlatformError, withoutCallSecrets, withTimeout, type BranchHead, type CallOptions, type CommitDescription, type Comparison, type FileChange, type FileContent, type GitPlatform, type RepositoryInfo, type TokenOwner, type TreeEntry } from './platform.js';

/** GitHub lists at most this many files in a comparison. */
const compareFileLimit = 300;

const ThrottledOctokit = Octokit.plugin(throttling);

export interface GithubApiOptions {
  /** GITHUB_API_URL: https://api.github.com, or GitHub Enterprise's https://<host>/api/v3. */
  baseUrl: string;
  /** Access token; without one, requests are anonymous (60 an hour on github.com). */
  token?: string;
  /** Each attempt's limit (a rate-limit wait between attempts is bounded by maxRateLimitWaitS instead). */
  timeoutMs: number;
  /** A rate limit that resets within this many seconds is waited for; a longer one fails the call. */
  maxRateLimitWaitS: number;
  logger: Logger;
}

/**
 * GitHub's REST API through Octokit (@octokit/core: `request` is all the service uses). Rate limits are waited for, not failed
 * (@octokit/plugin-throttling: a 403/429 with `x-ratelimit-remaining: 0`
 * waits until `x-ratelimit-reset`, a secondary limit for `retry-after`),
 * unless the wait is longer than `maxRateLimitWaitS`. Branch heads are asked
 * for conditionally: with the `application/vnd.github.sha` media type the
 * answer is the bare SHA, and an unchanged branch is a 304, which does not
 * count against the rate limit.
 */
export class GithubApi implements GitPlatform {
  readonly provider = 'GITHUB' as const;
  private readonly octokit: InstanceType<typeof ThrottledOctokit>;
  private readonly fetch: typeof fetch;

  constructor(private readonly options: GithubApiOptions) {
    const { logger, maxRateLimitWaitS } = options;
    // Each attempt has its own time limit; a rate-limit wait between attempts does not count against it.
    this.fetch = (url, init) => fetch(url, { ...init, signal: withTimeout(init?.signal, options.timeoutMs) });
    const onLimit = (kind: string) => (retryAfter: number, request: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
      const wait = retryAfter <= maxRateLimitWaitS && retryCount < 3;
      logger.warn({ method: request.method, url: request.url, retryAfterS: retryAfter, retrying: wait }, `GitHub ${kind} rate limit reached`);
      return wait;
    };
    this.octokit = new ThrottledOctokit({
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      ...(options.token ? { auth: options.token } : {}),
      userAgent: 'repolens-sync',
      // Octokit's own messages (deprecations, retries) go to our log, below warnings.
      log: { debug: () => undefined, info: () => undefined, warn: (message: string) => logger.debug({ message }, 'octokit'), error: (message: string) => logger.debug({ message }, 'octokit') },
      throttle: { onRateLimit: onLimit('primary'), onSecondaryRateLimit: onLimit('secondary') },
      request: { fetch: this.fetch },
    });
  }

  async tokenOwner(options: CallOptions = {}): Promise<TokenOwner> {
    const response = await this.call('reading the token owner', options, (request) => this.octokit.request('GET /user', { request }));
    const login = (response.data as { login?: unknown }).login;
    if (typeof login !== 'string') throw new PlatformError('GitHub answered GET /user without a login', 'invalid-answer');
    const scopes = String(response.headers['x-oauth-scopes'] ?? '')
      .split(',')
      .map((scope) => scope.trim())
      .filter(Boolean);
    return { login, scopes };
  }

  async repositoryInfo(name: string, options: CallOptions = {}): Promise<RepositoryInfo> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`reading ${name}`, options, (request) => this.octokit.request('GET /repos/{owner}/{repo}', { owner, repo, request }));
    if (typeof data.default_branch !== 'string') throw new PlatformError(`GitHub described ${name} without a default branch`, 'invalid-answer');
    return { defaultBranch: data.default_branch, private: data.private === true, sizeBytes: (data.size ?? 0) * 1024 };
  }

  async branchHead(name: string, branch: string, etag: string | null, options: CallOptions = {}): Promise<BranchHead> {
    const { owner, repo } = ownerAndRepo(name);
    let response;
    try {
      response = await this.call(`reading the head of ${name}@${branch}`, options, (request) =>
        this.octokit.request('GET /repos/{owner}/{repo}/commits/{ref}', {
          owner,
          repo,
          ref: `heads/${branch}`,
          headers: { accept: 'application/vnd.github.sha', ...(etag ? { 'if-none-match': etag } : {}) },
          request,
        }),
      );
    } catch (error) {
      if (error instanceof PlatformError && error.status === 304) return { changed: false };
      throw error;
    }
    const sha = String(response.data as unknown).trim();
    if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha)) throw new PlatformError(`GitHub answered the head of ${name}@${branch} with something that is not a commit id`, 'invalid-answer');
    const returned = response.headers.etag;
    return { changed: true, sha, etag: typeof returned === 'string' ? returned : null };
  }

  async compare(name: string, base: string, head: string, options: CallOptions = {}): Promise<Comparison> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`comparing ${base.slice(0, 12)}...${head.slice(0, 12)} of ${name}`, options, (request) =>
      this.octokit.request('GET /repos/{owner}/{repo}/compare/{basehead}', { owner, repo, basehead: `${base}...${head}`, request }),
    );
    const files = data.files ?? [];
    const changes = files.flatMap((file): FileChange[] => {
      // "copied" is an added file as far as the copy at head goes; "unchanged" changes nothing.
      const status = file.status === 'copied' ? 'added' : file.status;
      if (status === 'unchanged') return [];
      return [{ status, path: file.filename, previousPath: file.previous_filename ?? null, blobSha: status === 'removed' ? null : file.sha || null, mode: null }];
    });
    // The head is the last of the commits listed (at most 250: past that it may be left out).
    const last = data.commits.find((commit) => commit.sha === head);
    const headCommit: CommitDescription | null = last
      ? {
          sha: last.sha,
          treeSha: last.commit.tree.sha,
          parents: last.parents.map((parent) => parent.sha),
          author: person(last.commit.author),
          committer: person(last.commit.committer),
          message: last.commit.message,
          signed: typeof last.commit.verification?.signature === 'string',
        }
      : null;
    return { changes, complete: (data.status === 'ahead' || data.status === 'identical') && files.length < compareFileLimit, headCommit };
  }

  async compareDiff(name: string, base: string, head: string, options: CallOptions = {}): Promise<string> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`reading the diff ${base.slice(0, 12)}...${head.slice(0, 12)} of ${name}`, options, (request) =>
      this.octokit.request('GET /repos/{owner}/{repo}/compare/{basehead}', {
        owner,
        repo,
        basehead: `${base}...${head}`,
        headers: { accept: 'application/vnd.github.diff' },
        request,
      }),
    );
    if (typeof data !== 'string') throw new PlatformError(`GitHub answered the diff of ${name} with something that is not a patch`, 'invalid-answer');
    return data;
  }

  async commitDescription(name: string, sha: string, options: CallOptions = {}): Promise<CommitDescription> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`reading commit ${sha.slice(0, 12)} of ${name}`, options, (request) =>
      this.octokit.request('GET /repos/{owner}/{repo}/git/commits/{commit_sha}', { owner, repo, commit_sha: sha, request }),
    );
    return {
      sha: data.sha,
      treeSha: data.tree.sha,
      parents: data.parents.map((parent) => parent.sha),
      author: person(data.author),
      committer: person(data.committer),
      message: data.message,
      signed: typeof data.verification?.signature === 'string',
    };
  }

  async treeEntries(name: string, treeSha: string, options: CallOptions = {}): Promise<TreeEntry[]> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`reading tree ${treeSha.slice(0, 12)} of ${name}`, options, (request) =>
      this.octokit.request('GET /repos/{owner}/{repo}/git/trees/{tree_sha}', { owner, repo, tree_sha: treeSha, request }),
    );
    if (data.truncated) throw new PlatformError(`GitHub cut the listing of tree ${treeSha} of ${name}`, 'invalid-answer');
    return data.tree.flatMap((entry): TreeEntry[] =>
      entry.path && entry.mode && entry.sha && (entry.type === 'blob' || entry.type === 'tree' || entry.type === 'commit')
        ? [{ name: entry.path, mode: entry.mode, type: entry.type, sha: entry.sha }]
        : [],
    );
  }

  async fileContent(name: string, path: string, ref: string, options: CallOptions = {}): Promise<FileContent> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`reading ${path} at ${ref.slice(0, 12)} of ${name}`, options, (request) =>
      this.octokit.request('GET /repos/{owner}/{repo}/contents/{path}', { owner, repo, path, ref, request }),
    );
    const entry = data as { type?: string; content?: string; encoding?: string; sha?: string; target?: string };
    if (entry.type === 'symlink' && typeof entry.target === 'string') return { content: Buffer.from(entry.target), blobSha: entry.sha ?? '', kind: 'symlink' };
    // Files over 1 MB come without content in this media type.
    if (entry.type !== 'file' || entry.encoding !== 'base64' || typeof entry.content !== 'string' || !entry.sha) {
      throw new PlatformError(`GitHub gave ${path} of ${name} without its content (type ${entry.type ?? 'unknown'}, encoding ${entry.encoding ?? 'none'})`, 'invalid-answer');
    }
    return { content: Buffer.from(entry.content, 'base64'), blobSha: entry.sha, kind: 'file' };
  }

  async createWebhook(name: string, hook: { url: string; secret: string }, options: CallOptions = {}): Promise<string> {
    const { owner, repo } = ownerAndRepo(name);
    const { data } = await this.call(`creating a webhook on ${name}`, options, (request) =>
      this.octokit.request('POST /repos/{owner}/{repo}/hooks', {
        owner,
        repo,
        name: 'web',
        active: true,
        // What SPEC §4 maps: pushes, branch/tag create and delete, pull requests.
        events: ['push', 'create', 'delete', 'pull_request'],
        config: { url: hook.url, content_type: 'json', secret: hook.secret, insecure_ssl: '0' },
        request,
      }),
    );
    if (typeof data.id !== 'number') throw new PlatformError(`GitHub created a webhook on ${name} without an id`, 'invalid-answer');
    return String(data.id);
  }

  async deleteWebhook(name: string, hookId: string, options: CallOptions = {}): Promise<void> {
    const { owner, repo } = ownerAndRepo(name);
    try {
      await this.call(`deleting webhook ${hookId} of ${name}`, options, (request) =>
        this.octokit.request('DELETE /repos/{owner}/{repo}/hooks/{hook_id}', { owner, repo, hook_id: Number(hookId), request }),
      );
    } catch (error) {
      if (error instanceof PlatformError && error.status === 404) return;
      throw error;
    }
  }

  /** One call with the caller's signal, its failure turned into a PlatformError without secrets (time limits are per attempt, in `fetch`). */
  private async call<T>(what: string, options: CallOptions, send: (request: { signal?: AbortSignal; fetch?: typeof fetch }) => Promise<T>): Promise<T> {
    try {
      return await send({ ...(options.signal ? { signal: options.signal } : {}), ...(options.onReceived ? { fetch: countingFetch(this.fetch, options.onReceived) } : {}) });
    } catch (error) {
      throw withoutCallSecrets(platformError(`GitHub API, ${what}`, error), [this.options.token]);
    }
  }
}

/** A commit's author or committer as the API gives it (GitHub gives dates in UTC: the offset is lost). */
function person(who: { name?: string; email?: string; date?: string } | null | undefined): CommitDescription['author'] {
  return { name: who?.name ?? '', email: who?.email ?? '', date: who?.date ?? '' };
}

function ownerAndRepo(name: string): { owner: string; repo: string } {
  const [owner, repo, ...rest] = name.split('/');
  if (!owner || !repo || rest.length > 0) throw new PlatformError(`"${name}" is not a GitHub owner/name`, 'not-found');
  return { owner, repo };
}

/** Octokit's RequestError (status, response headers) as a PlatformError; messages carry no token. */
function platformError(what: string, error: unknown): PlatformError {
  if (isTimeout(error)) return new PlatformError(`${what}: timed out`, 'unavailable');
  const status = typeof (error as { status?: unknown }).status === 'number' ? (error as { status: number }).status : undefined;
  const headers = ((error as { response?: { headers?: Record<string, string | undefined> } }).response?.headers ?? {}) as Record<string, string | undefined>;
  const apiMessage = (error as { response?: { data?: { message?: unknown } } }).response?.data?.message;
  const detail = typeof apiMessage === 'string' ? apiMessage : status ? `HTTP ${status}` : ((error as Error).message ?? String(error));
  if (status === 304) return new PlatformError(`${what}: not modified`, 'invalid-answer', 304);
  if (status === 401) return new PlatformError(`${what}: the token was refused (${detail})`, 'auth', status);
  if ((status === 403 || status === 429) && (headers['x-ratelimit-remaining'] === '0' || headers['retry-after'] !== undefined)) {
    return new PlatformError(`${what}: rate limited until ${rateLimitReset(headers)} (${detail})`, 'rate-limited', status);
  }
  if (status === 403) return new PlatformError(`${what}: forbidden (${detail})`, 'auth', status);
  // 422: "No commit found for SHA: heads/<branch>", a branch that does not exist.
  if (status === 404 || status === 422) return new PlatformError(`${what}: not found (${detail})`, 'not-found', status);
  return new PlatformError(`${what}: ${detail}`, 'unavailable', status);
}

function rateLimitReset(headers: Record<string, string | undefined>): string {
  const reset = Number(headers['x-ratelimit-reset']);
  if (Number.isFinite(reset) && reset > 0) return new Date(reset * 1000).toISOString();
  const after = Number(headers['retry-after']);
  return Number.isFinite(after) ? new Date(Date.now() + after * 1000).toISOString() : 'later';
}
