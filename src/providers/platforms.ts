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
    if (provider === 'GITHUB' && hostname(host) === this.githubHost) return this.github(token);
    if (provider === 'GITLAB' && hostname(host) === this.gitlabHost) return this.gitlab(token);
    return null;
  }

  /** GitLab's API (GITLAB_URL/api/v4), with `token` when given. */
  gitlab(token?: string): GitPlatform {
    return new GitlabApi({
      baseUrl: this.config.gitlabUrl,
      ...(token ? { token } : {}),
      timeoutMs: this.config.providerTimeoutMs,
      maxRateLimitWaitS: this.config.providerMaxWaitS,
      logger: this.logger,
    });
  }

  /** GitHub's API (GITHUB_API_URL), with `token` when given. */
  github(token?: string): GitPlatform {
    return new GithubApi({
      baseUrl: this.config.githubApiUrl,
      ...(token ? { token } : {}),
      timeoutMs: this.config.providerTimeoutMs,
      maxRateLimitWaitS: this.config.providerMaxWaitS,
      logger: this.logger,
    });
  }
}

function hostname(host: string): string {
  return host.replace(/:\d+$/, '').toLowerCase();
}
