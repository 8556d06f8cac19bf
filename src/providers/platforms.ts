import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Provider } from '../generated/prisma/client.js';
import { GithubApi } from './githubApi.js';
import { GitlabApi } from './gitlabApi.js';
import type { GitPlatform } from './platform.js';

/**
 * Which platform API serves a host: GitHub's for the host of GITHUB_API_URL
 * (api.github.com serves github.com; GitHub Enterprise serves its own host
 * under /api/v3), GitLab's for the host of GITLAB_URL. Other hosts, and
 * plain git ones, have none: their CHECK is the git ref listing.
 */
export class Platforms {
  /** Host names (no port) whose repositories GITHUB_API_URL and GITLAB_URL describe. */
  readonly githubHost: string;
  readonly gitlabHost: string;

  constructor(
    private readonly config: Pick<Config, 'githubApiUrl' | 'gitlabUrl' | 'providerTimeoutMs' | 'providerMaxWaitS'>,
    private readonly logger: Logger,
  ) {
    this.githubHost = new URL(config.githubApiUrl).hostname.replace(/^api\./, '');
    this.gitlabHost = new URL(config.gitlabUrl).hostname;
  }

  /** The API for `provider` on `host` ("name[:port]"), with `token` when given; null when there is none. */
  forHost(provider: Provider, host: string, token?: string): GitPlatform | null {
    if (provider === 'GITHUB' && hostname(host) === this.githubHost) return this.cached('GITHUB', token);
    if (provider === 'GITLAB' && hostname(host) === this.gitlabHost) return this.cached('GITLAB', token);
    return null;
  }

  /**
   * One client per token, reused: a check pass over thousands of repositories sharing a credential
   * would otherwise build an Octokit (with its throttling state) per check. Keyed by the token's
   * hash; a rotated or refreshed token is a new key, and the oldest clients go past `maxClients`.
   */
  private readonly clients = new Map<string, GitPlatform>();
  private static readonly maxClients = 256;

  private cached(provider: Exclude<Provider, 'GIT'>, token: string | undefined): GitPlatform {
    const key = `${provider} ${token ? createHash('sha256').update(token).digest('base64url') : ''}`;
    let client = this.clients.get(key);
    if (client) {
      // Most recently used last: Map order is the eviction order.
      this.clients.delete(key);
    } else {
      client = this.create(provider, token);
      if (this.clients.size >= Platforms.maxClients) this.clients.delete(this.clients.keys().next().value!);
    }
    this.clients.set(key, client);
    return client;
  }

  /** The provider's API (GITHUB_API_URL, GITLAB_URL/api/v4), with `token` when given. */
  private create(provider: Exclude<Provider, 'GIT'>, token?: string): GitPlatform {
    const options = {
      ...(token ? { token } : {}),
      timeoutMs: this.config.providerTimeoutMs,
      maxRateLimitWaitS: this.config.providerMaxWaitS,
      logger: this.logger,
    };
    return provider === 'GITHUB' ? new GithubApi({ baseUrl: this.config.githubApiUrl, ...options }) : new GitlabApi({ baseUrl: this.config.gitlabUrl, ...options });
  }
}

function hostname(host: string): string {
  return host.replace(/:\d+$/, '').toLowerCase();
}
