import type { OAuthService } from '../providers/oauth.js';
import type { Platforms } from '../providers/platforms.js';
import type { WebhookService } from '../sync/webhooks.js';
import type { CodeGraph } from '../indexing/codeGraph.js';
import type { Config } from '../config.js';
import type { Prisma } from '../storage/database.js';
import type { SecretBox } from '../storage/secrets.js';
import type { SyncEngine } from '../sync/engine.js';
import type { SyncEvents } from '../sync/events.js';
import type { RepositoryFiles } from '../sync/repositoryFiles.js';
import type { WorkingCopies } from '../storage/workingCopies.js';
import type { RepositoryService } from '../sync/repositories.js';
import type { TokenLimits } from './limits.js';

export interface Services {
  config: Config;
  engine: SyncEngine;
  events: SyncEvents;
  copies: WorkingCopies;
  files: RepositoryFiles;
  repositories: RepositoryService;
  secretBox: SecretBox;
  webhooks: WebhookService;
  /** The code graph; null when NEO4J_URL is not set. */
  graph: CodeGraph | null;
  /** Provider REST APIs (GitHub, GitLab), for the hosts they serve. */
  platforms: Platforms;
  /** OAuth connections and token refresh. */
  oauth: OAuthService;
  /** Per-token mutation rate and subscription cap. */
  limits: TokenLimits;
}

/** Built per operation (HTTP, SSE or WebSocket) once the token is verified. */
export interface GraphQLContext {
  tenantId: string;
  /** The API token of the request (ApiToken.id): per-token limits. */
  tokenId: string;
  prisma: Prisma;
  services: Services;
}
