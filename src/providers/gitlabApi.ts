import { Branches, PersonalAccessTokens, ProjectHooks, Projects, Repositories, RepositoryFiles, Users } from '@gitbeaker/core';
import { createRequesterFn, type FormattedResponse, type ResponseBodyTypes } from '@gitbeaker/requester-utils';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { countingFetch, isTimeout, PlatformError, withoutCallSecrets, withTimeout, type BranchHead, type CallOptions, type CommitDescription, type Comparison, type FileChange, type FileContent, type GitPlatform, type RepositoryInfo, type TokenOwner } from './platform.js';

export interface GitlabApiOptions {
  /** GITLAB_URL: https://gitlab.com or a self-hosted instance (the API is under /api/v4). */
  baseUrl: string;
  /** OAuth, personal, project or group access token (sent as Authorization: Bearer). */
  token?: string;
  timeoutMs: number;
  maxRateLimitWaitS: number;
  logger: Logger;
}

/** An answer that is not 2xx: status, GitLab's message, the headers (rate limits). */
class GitlabHttpError extends Error {
  constructor(
    readonly status: number,
    readonly description: string,
    readonly headers: Record<string, string>,
  ) {
    super(description);
  }
}

/**
 * GitLab's REST API (v4) through gitbeaker's resources, with a request
 * handler of our own underneath: gitbeaker's default retries a 429 ten times
 * within a second, whereas GitLab says when to come back (`Retry-After`,
 * `RateLimit-Reset`). Here a rate-limited request waits that long (up to
 * `maxRateLimitWaitS`, then it fails), each attempt has its own time limit,
 * and the caller's signal cancels it all.
 */
export class GitlabApi implements GitPlatform {
  readonly provider = 'GITLAB' as const;

  constructor(private readonly options: GitlabApiOptions) {}

  async tokenOwner(options: CallOptions = {}): Promise<TokenOwner> {
    const user = (await this.call('reading the token owner', options, (config) => new Users(config).showCurrentUser())) as { username?: unknown };
    if (typeof user.username !== 'string') throw new PlatformError('GitLab answered GET /user without a username', 'invalid-answer');
    // Scopes are known for personal/project/group access tokens (GitLab 15.5+); an OAuth token has none to show.
    const scopes = await this.call('reading the token scopes', options, (config) => new PersonalAccessTokens(config).show())
      .then((token) => ((token as { scopes?: unknown }).scopes as unknown[] | undefined)?.filter((scope): scope is string => typeof scope === 'string') ?? [])
      .catch((error: unknown) => {
        if (error instanceof PlatformError && (error.failure === 'not-found' || error.failure === 'auth')) return [];
        throw error;
      });
    return { login: user.username, scopes };
  }

  async repositoryInfo(name: string, options: CallOptions = {}): Promise<RepositoryInfo> {
    const project = (await this.call(`reading ${name}`, options, (config) => new Projects(config).show(name, { statistics: true }))) as {
      default_branch?: unknown;
      visibility?: unknown;
      statistics?: { repository_size?: unknown };
    };
    if (typeof project.default_branch !== 'string') throw new PlatformError(`GitLab described ${name} without a default branch (an empty project?)`, 'invalid-answer');
    const size = Number(project.statistics?.repository_size ?? 0);
    return { defaultBranch: project.default_branch, private: project.visibility !== 'public', sizeBytes: Number.isFinite(size) ? size : 0 };
  }

  /** GitLab documents no conditional requests for branches: every check is a plain GET (one request, no git). */
  async branchHead(name: string, branch: string, _etag: string | null, options: CallOptions = {}): Promise<BranchHead> {
    const found = (await this.call(`reading the head of ${name}@${branch}`, options, (config) => new Branches(config).show(name, branch))) as { commit?: { id?: unknown } };
    const sha = found.commit?.id;
    if (typeof sha !== 'string' || !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha)) {
      throw new PlatformError(`GitLab answered the head of ${name}@${branch} without a commit id`, 'invalid-answer');
    }
    return { changed: true, sha, etag: null };
  }

  async compare(name: string, base: string, head: string, options: CallOptions = {}): Promise<Comparison> {
    // straight=true: base against head directly (git diff base head), so the list is the whole
    // difference even when head does not descend from base (a rewritten history).
    const result = (await this.call(`comparing ${base.slice(0, 12)}..${head.slice(0, 12)} of ${name}`, options, (config) =>
      new Repositories(config).compare(name, base, head, { straight: true }),
    )) as {
      diffs?: { old_path: string; new_path: string; a_mode: string; b_mode: string; new_file: boolean; renamed_file: boolean; deleted_file: boolean }[];
      compare_timeout?: boolean;
      commit?: GitlabCommit | null;
    };
    const changes = (result.diffs ?? []).map((diff): FileChange => {
      const status = diff.new_file ? 'added' : diff.deleted_file ? 'removed' : diff.renamed_file ? 'renamed' : diff.a_mode !== diff.b_mode ? 'changed' : 'modified';
      return { status, path: diff.new_path, previousPath: diff.renamed_file ? diff.old_path : null, blobSha: null, mode: diff.deleted_file ? null : diff.b_mode };
    });
    const commit = result.commit;
    const headCommit: CommitDescription | null =
      commit && commit.id === head
        ? {
            sha: commit.id,
            treeSha: null,
            parents: commit.parent_ids ?? [],
            author: { name: commit.author_name ?? '', email: commit.author_email ?? '', date: commit.authored_date ?? '' },
            committer: { name: commit.committer_name ?? '', email: commit.committer_email ?? '', date: commit.committed_date ?? '' },
            message: commit.message ?? '',
            // Compare does not say; a signed commit's object is then not rebuilt, and the DELTA falls back.
            signed: false,
          }
        : null;
    return { changes, complete: result.compare_timeout !== true, headCommit };
  }

  async fileContent(name: string, path: string, ref: string, options: CallOptions = {}): Promise<FileContent> {
    const file = (await this.call(`reading ${path} at ${ref.slice(0, 12)} of ${name}`, options, (config) => new RepositoryFiles(config).show(name, path, ref))) as {
      content?: unknown;
      encoding?: unknown;
      blob_id?: unknown;
    };
    if (typeof file.content !== 'string' || file.encoding !== 'base64' || typeof file.blob_id !== 'string') {
      throw new PlatformError(`GitLab gave ${path} of ${name} without its content`, 'invalid-answer');
    }
    // GitLab does not say whether the path is a symlink (its content is then the target); the compare's mode does.
    return { content: Buffer.from(file.content, 'base64'), blobSha: file.blob_id, kind: 'file' };
  }

  async createWebhook(name: string, hook: { url: string; secret: string }, options: CallOptions = {}): Promise<string> {
    const created = (await this.call(`creating a webhook on ${name}`, options, (config) =>
      new ProjectHooks(config).add(name, hook.url, {
        // What SPEC §4 maps: pushes, tag pushes, merge requests; GitLab sends the secret as X-Gitlab-Token.
        pushEvents: true,
        tagPushEvents: true,
        mergeRequestsEvents: true,
        token: hook.secret,
        enableSslVerification: true,
      }),
    )) as { id?: unknown };
    if (typeof created.id !== 'number') throw new PlatformError(`GitLab created a webhook on ${name} without an id`, 'invalid-answer');
    return String(created.id);
  }

  async deleteWebhook(name: string, hookId: string, options: CallOptions = {}): Promise<void> {
    try {
      await this.call(`deleting webhook ${hookId} of ${name}`, options, (config) => new ProjectHooks(config).remove(name, Number(hookId)));
    } catch (error) {
      if (error instanceof PlatformError && error.status === 404) return;
      throw error;
    }
  }

  /** One resource call on a requester bound to this call's signal; failures become PlatformErrors without secrets. */
  private async call<T>(what: string, options: CallOptions, send: (config: ResourceConfig) => Promise<T>): Promise<T> {
    const config: ResourceConfig = {
      host: this.options.baseUrl.replace(/\/+$/, ''),
      // Authorization: Bearer serves OAuth tokens and personal/project/group access tokens alike.
      ...(this.options.token ? { oauthToken: this.options.token } : {}),
      // Timeouts are per attempt, in the handler below (gitbeaker's would span the rate-limit waits).
      queryTimeout: 0,
      // Client-side limiters are gitbeaker's default handler's; ours never asks them, so none are built per call.
      rateLimits: {},
      requesterFn: createRequesterFn(async (_service, requestOptions) => requestOptions, (endpoint, requestOptions) => this.request(endpoint, requestOptions as unknown as RequestOptions, options)),
    };
    try {
      return await send(config);
    } catch (error) {
      throw withoutCallSecrets(gitlabError(`GitLab API, ${what}`, error), [this.options.token]);
    }
  }

  private async request(endpoint: string, options: RequestOptions, { signal, onReceived }: CallOptions): Promise<FormattedResponse> {
    const send = onReceived ? countingFetch(fetch, onReceived) : fetch;
    const url = new URL(endpoint, options.prefixUrl.endsWith('/') ? options.prefixUrl : `${options.prefixUrl}/`);
    if (options.searchParams) url.search = options.searchParams;
    for (let attempt = 0; ; attempt++) {
      const response = await send(url, { method: options.method, headers: options.headers, body: options.body ?? null, signal: withTimeout(signal, this.options.timeoutMs) });
      const headers = Object.fromEntries(response.headers.entries());
      if (response.ok) {
        const type = (headers['content-type'] ?? '').split(';')[0]!.trim();
        const body = (response.status === 204 ? null : type === 'application/json' ? ((await response.json()) ?? {}) : await response.text()) as ResponseBodyTypes;
        return { body, headers, status: response.status };
      }
      const text = await response.text();
      const wait = response.status === 429 ? retryAfterS(headers) : null;
      if (wait !== null && wait <= this.options.maxRateLimitWaitS && attempt < 3) {
        this.options.logger.warn({ method: options.method, url: `${url.origin}${url.pathname}`, retryAfterS: wait }, 'GitLab rate limit reached; waiting');
        await sleep(wait * 1000, undefined, signal ? { signal } : {});
        continue;
      }
      throw new GitlabHttpError(response.status, messageOf(text) || `HTTP ${response.status}`, headers);
    }
  }
}

/** A commit as GitLab's compare describes its head (dates keep the author's offset). */
interface GitlabCommit {
  id: string;
  parent_ids?: string[];
  author_name?: string;
  author_email?: string;
  authored_date?: string;
  committer_name?: string;
  committer_email?: string;
  committed_date?: string;
  message?: string;
}

type ResourceConfig = ConstructorParameters<typeof Users>[0];

interface RequestOptions {
  method: string;
  headers: Record<string, string>;
  body?: string;
  prefixUrl: string;
  searchParams?: string;
}

/** GitLab's `{"message": …}` or `{"error": …}` body, as one line. */
function messageOf(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
    const message = parsed.message ?? parsed.error;
    return typeof message === 'string' ? message : JSON.stringify(message ?? '');
  } catch {
    return text.slice(0, 200);
  }
}

/** Seconds to wait: `Retry-After`, else until `RateLimit-Reset` (epoch seconds). */
function retryAfterS(headers: Record<string, string>): number | null {
  const after = Number(headers['retry-after']);
  if (headers['retry-after'] !== undefined && Number.isFinite(after)) return Math.max(0, Math.ceil(after));
  const reset = Number(headers['ratelimit-reset']);
  if (Number.isFinite(reset) && reset > 0) return Math.max(0, Math.ceil(reset - Date.now() / 1000));
  return null;
}

function gitlabError(what: string, error: unknown): PlatformError {
  if (error instanceof PlatformError) return error;
  if (isTimeout(error)) return new PlatformError(`${what}: timed out`, 'unavailable');
  if (!(error instanceof GitlabHttpError)) return new PlatformError(`${what}: ${(error as Error).message ?? String(error)}`, 'unavailable');
  const { status, description } = error;
  if (status === 401) return new PlatformError(`${what}: the token was refused (${description})`, 'auth', status);
  if (status === 403) return new PlatformError(`${what}: forbidden (${description})`, 'auth', status);
  if (status === 404) return new PlatformError(`${what}: not found (${description})`, 'not-found', status);
  if (status === 429) return new PlatformError(`${what}: rate limited (${description})`, 'rate-limited', status);
  return new PlatformError(`${what}: ${description}`, 'unavailable', status);
}
