import { GitError, type GitAuth } from '../sync/git.js';
import { readRemote, type RemoteState } from '../sync/remote.js';
import { PlatformError, type BranchHead, type CallOptions, type Comparison, type FileContent, type GitPlatform, type RepositoryInfo, type TokenOwner } from './platform.js';

export interface PlainGitOptions {
  /** The credential for this repository's URL, if any (sent per request, never stored in a URL or config). */
  auth?: GitAuth;
  /** Limit of one ref listing. */
  timeoutMs: number;
}

/**
 * A plain git host (any smart-HTTP server): the platform operations git's own
 * protocol can answer, from one ref listing (`git ls-remote`, asked in
 * process by sync/remote.ts) per instance: the default branch and a branch's
 * head. A plain host has no REST API, so there is nothing to compare, no file
 * to read without the objects, and no webhook to create: those fail as
 * `unsupported`, and the service fetches with git and leaves the webhook to
 * be set up by hand. One instance serves one repository URL; `name` is not
 * needed by git and is ignored.
 */
export class PlainGitPlatform implements GitPlatform {
  readonly provider = 'GIT' as const;
  private listing: Promise<RemoteState> | null = null;

  constructor(
    readonly url: string,
    private readonly options: PlainGitOptions,
  ) {}

  /**
   * The repository's branches, tags and default branch (the first call lists them; later
   * calls reuse that answer). Fails with git's own error kinds (GitError: auth, not-found,
   * timeout, unreachable), which callers turn into their messages.
   */
  remote(options: CallOptions = {}): Promise<RemoteState> {
    if (!this.listing) {
      this.listing = readRemote(this.url, { timeoutMs: this.options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}), ...(this.options.auth ? { auth: this.options.auth } : {}) });
      // A failed listing is not kept: the next call asks again.
      this.listing.catch(() => (this.listing = null));
    }
    return this.listing;
  }

  async tokenOwner(): Promise<TokenOwner> {
    throw unsupported('naming the owner of a token');
  }

  async repositoryInfo(_name: string, options: CallOptions = {}): Promise<RepositoryInfo> {
    const remote = await this.listed(options);
    const defaultBranch = remote.defaultBranch ?? [...remote.branches.keys()][0];
    if (!defaultBranch) throw new PlatformError(`${this.url} has no branches`, 'invalid-answer');
    // git says neither: a repository that needed no credential to list is taken as public; the size is unknown (0).
    return { defaultBranch, private: this.options.auth !== undefined, sizeBytes: 0 };
  }

  /** The branch's head from the listing; git has no conditional requests, so every answer is "changed" with no ETag. */
  async branchHead(_name: string, branch: string, _etag: string | null, options: CallOptions = {}): Promise<BranchHead> {
    const sha = (await this.listed(options)).branches.get(branch);
    if (!sha) throw new PlatformError(`branch "${branch}" does not exist in ${this.url}`, 'not-found', 404);
    return { changed: true, sha, etag: null };
  }

  async compare(): Promise<Comparison> {
    throw unsupported('comparing two commits');
  }

  async fileContent(): Promise<FileContent> {
    throw unsupported('reading a file without its objects');
  }

  async createWebhook(): Promise<string> {
    throw unsupported('creating a webhook');
  }

  async deleteWebhook(): Promise<void> {
    throw unsupported('deleting a webhook');
  }

  /** The listing, its git failures as PlatformErrors (what the interface promises). */
  private async listed(options: CallOptions): Promise<RemoteState> {
    try {
      return await this.remote(options);
    } catch (error) {
      if (!(error instanceof GitError)) throw error;
      const failure = error.failure === 'auth' ? 'auth' : error.failure === 'not-found' ? 'not-found' : 'unavailable';
      throw new PlatformError(`git, listing ${this.url}: ${error.message}`, failure);
    }
  }
}

function unsupported(what: string): PlatformError {
  return new PlatformError(`${what}: a plain git host has no REST API for it`, 'unsupported');
}
