import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { BadUserInputError, ConflictError, NotFoundError, ProviderError } from '../errors.js';
import { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import type { ArchivePolicy, Provider, Repository, SyncRun, SyncStrategy } from '../generated/prisma/client.js';
import type { Indexer } from '../indexing/indexer.js';
import { mayManageHooks, PlatformError, type GitPlatform, type RepositoryInfo } from '../providers/platform.js';
import type { OAuthService } from '../providers/oauth.js';
import type { Platforms } from '../providers/platforms.js';
import type { Archiver } from './archiver.js';
import { archiveKeys } from '../storage/archiveStore.js';
import type { Prisma } from '../storage/database.js';
import type { SecretBox } from '../storage/secrets.js';
import { isValidBranchName, type WorkingCopies } from '../storage/workingCopies.js';
import type { SyncEngine } from './engine.js';
import { formatBytes, GitError, type Git, type GitAuth } from './git.js';
import { recordRefs } from './refs.js';
import { PlainGitPlatform } from '../providers/plainGit.js';
import { parseRepositoryUrl } from './repositoryUrl.js';
import { generateWebhookSecret, identityKey } from './webhooks.js';

export interface AddRepositoryRequest {
  tenantId: string;
  projectId: string;
  url: string;
  provider?: Provider | null;
  branch?: string | null;
  syncStrategy?: SyncStrategy | null;
  archivePolicy?: ArchivePolicy | null;
  credentialId?: string | null;
}

export interface UpdateRepositoryRequest {
  tenantId: string;
  repositoryId: string;
  syncStrategy?: SyncStrategy | null;
  archivePolicy?: ArchivePolicy | null;
}

export interface WebhookSetup {
  url: string;
  secret: string | null;
  autoConfigured: boolean;
}

// git check-ref-format rules that matter for a branch name given by a user.

/** Adding, syncing and removing repositories: the service behind the mutations. */
export class RepositoryService {
  constructor(
    private readonly prisma: Prisma,
    private readonly engine: SyncEngine,
    private readonly git: Git,
    private readonly copies: WorkingCopies,
    private readonly archiver: Archiver,
    private readonly indexer: Indexer,
    private readonly secretBox: SecretBox,
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly platforms: Platforms,
    private readonly oauth: OAuthService,
  ) {}

  /** Told whenever a webhook registration is added, removed or gets a new secret (webhooks.ts caches them briefly). */
  onRegistrationsChanged: () => void = () => undefined;

  async add(request: AddRepositoryRequest): Promise<{ repository: Repository; webhook: WebhookSetup }> {
    const project = await this.prisma.project.findFirst({ where: { id: request.projectId, tenantId: request.tenantId } });
    if (!project) throw new NotFoundError('project');
    const parsed = await parseRepositoryUrl(request.url, this.urlPolicy());
    const branchInput = request.branch?.trim() || parsed.webUrlBranch || null;
    if (branchInput !== null && !isValidBranchName(branchInput)) {
      throw new BadUserInputError('branch is not a valid git branch name');
    }
    const credential = request.credentialId
      ? await this.prisma.credential.findFirst({ where: { id: request.credentialId, tenantId: request.tenantId } })
      : null;
    if (request.credentialId && !credential) throw new NotFoundError('credential');
    if (credential && credential.host !== parsed.host) {
      throw new BadUserInputError(`the credential is for ${credential.host}, not for ${parsed.host}`);
    }
    const provider = request.provider ?? parsed.provider;
    const auth = credential ? credentialAuth(provider, credential.login, await this.oauth.accessToken(credential)) : undefined;
    // With a credential for a host whose API we know, the platform describes the repository (and may get its hook).
    const platform = auth ? this.platforms.forHost(provider, parsed.host, auth.password) : null;
    const info = platform ? await this.describe(platform, parsed.name) : null;
    if (info) this.refuseOversized(provider, parsed.name, info);

    const remote = await new PlainGitPlatform(parsed.url, { timeoutMs: Math.min(this.git.exchangeTimeoutMs, 60_000), ...(auth ? { auth } : {}) }).remote().catch((error: unknown) => {
      if (error instanceof GitError && (error.failure === 'auth' || error.failure === 'not-found')) {
        throw new BadUserInputError(`${parsed.url} is not a git repository this service can read (${error.failure === 'auth' ? 'authentication required or refused' : 'not found'})`);
      }
      throw new ProviderError(`could not reach ${parsed.host}: ${(error as Error).message}`);
    });
    const branch = branchInput ?? info?.defaultBranch ?? remote.defaultBranch ?? [...remote.branches.keys()][0];
    if (!branch) throw new BadUserInputError(`${parsed.url} has no branches yet`);
    if (!remote.branches.has(branch)) throw new BadUserInputError(`branch "${branch}" does not exist in ${parsed.url}`);

    // The registration's own webhook secret, for a hook set up by hand: shown once, below.
    const webhookSecret = generateWebhookSecret();
    let repository: Repository;
    try {
      repository = await this.prisma.repository.create({
        data: {
          tenantId: request.tenantId,
          projectId: project.id,
          provider,
          name: parsed.name,
          url: parsed.url,
          host: parsed.host,
          branch,
          followsDefaultBranch: branchInput === null || branch === (info?.defaultBranch ?? remote.defaultBranch),
          defaultBranch: info?.defaultBranch ?? remote.defaultBranch,
          platformSizeBytes: info?.sizeBytes ?? null,
          syncStrategy: request.syncStrategy ?? 'AUTO',
          archivePolicy: request.archivePolicy ?? 'EACH_SYNC',
          credentialId: credential?.id ?? null,
          webhookSecret: this.secretBox.encrypt(webhookSecret),
          identityKey: identityKey(parsed.host, parsed.name),
        },
      });
    } catch (error) {
      if (error instanceof PrismaNamespace.PrismaClientKnownRequestError && error.code === 'P2002') {
        throw new ConflictError(`${parsed.url} (branch ${branch}) is already in this project`);
      }
      throw error;
    }
    await recordRefs(this.prisma, repository, remote);
    const webhookId = platform && credential && mayManageHooks(provider, credential.scopes) ? await this.createWebhook(platform, repository, webhookSecret) : null;
    if (webhookId) repository = await this.prisma.repository.update({ where: { id: repository.id }, data: { webhookId } });
    this.onRegistrationsChanged();
    await this.engine.trigger({ repositoryId: repository.id, tenantId: request.tenantId, trigger: 'INITIAL' }, repository);
    this.logger.info({ repositoryId: repository.id, url: parsed.url, branch, webhookId }, 'repository added');
    const webhook = this.webhookSetup(provider, webhookSecret);
    return { repository, webhook: webhookId ? { ...webhook, secret: null, autoConfigured: true } : webhook };
  }

  /**
   * The platform's description of a repository being added. One the credential cannot see is
   * the user's mistake; an API that is down or rate limited is not a reason to refuse a
   * repository git can read: the ref listing gives the default branch then.
   */
  private async describe(platform: GitPlatform, name: string): Promise<RepositoryInfo | null> {
    try {
      return await platform.repositoryInfo(name);
    } catch (error) {
      if (!(error instanceof PlatformError)) throw error;
      if (error.failure === 'not-found' || error.failure === 'auth') {
        throw new BadUserInputError(`${name} is not a repository the credential can read (${error.message})`);
      }
      this.logger.warn({ name, err: error.message }, 'the platform API could not describe the repository; using the git ref listing');
      return null;
    }
  }

  /**
   * REPOLENS_MAX_REPO_BYTES at add time, when the platform reports the size (GitHub's `size`,
   * GitLab's statistics): a repository its platform already says is too big would only fail
   * every sync. Without a reported size, the sync's transfer is what stops at the limit.
   */
  private refuseOversized(provider: Provider, name: string, info: RepositoryInfo): void {
    const limit = this.config.maxRepoBytes;
    if (limit === undefined || info.sizeBytes <= limit) return;
    const platformName = provider === 'GITLAB' ? 'GitLab' : 'GitHub';
    throw new BadUserInputError(
      `${name} is larger than REPOLENS_MAX_REPO_BYTES (${platformName} reports ${formatBytes(info.sizeBytes)}; the limit is ${formatBytes(limit)})`,
    );
  }

  /**
   * The repository's hook, created through the platform's API with the registration's secret.
   * Only with an explicit PUBLIC_URL (a hook on a public host pointing at this laptop's
   * 127.0.0.1 would only fail); a refusal (no admin rights) leaves the manual set-up.
   */
  private async createWebhook(platform: GitPlatform, repository: Repository, secret: string): Promise<string | null> {
    if (!this.config.publicUrlConfigured) return null;
    try {
      return await platform.createWebhook(repository.name, { url: this.webhookSetup(repository.provider, secret).url, secret });
    } catch (error) {
      if (!(error instanceof PlatformError)) throw error;
      this.logger.info({ repositoryId: repository.id, err: error.message }, 'webhook not created through the API; set it up by hand');
      return null;
    }
  }

  /** Deletes the hook the service created for a repository (with the repository's credential); failures are logged. */
  private async deleteWebhook(repository: Repository): Promise<void> {
    if (!repository.webhookId || !repository.credentialId) return;
    const credential = await this.prisma.credential.findUnique({ where: { id: repository.credentialId } });
    try {
      const platform = credential && credential.host === repository.host ? this.platforms.forHost(repository.provider, repository.host, await this.oauth.accessToken(credential)) : null;
      if (!platform) throw new Error('its credential is gone');
      await platform.deleteWebhook(repository.name, repository.webhookId);
    } catch (error) {
      this.logger.error({ repositoryId: repository.id, webhookId: repository.webhookId, err: (error as Error).message }, 'webhook of a removed repository could not be deleted');
    }
  }

  /** A new webhook secret for a registration; the old one stops verifying at once. Shown once. */
  async rotateWebhookSecret(tenantId: string, repositoryId: string): Promise<{ repository: Repository; webhook: WebhookSetup }> {
    const found = await this.find(tenantId, repositoryId);
    const secret = generateWebhookSecret();
    const repository = await this.prisma.repository.update({ where: { id: found.id }, data: { webhookSecret: this.secretBox.encrypt(secret) } });
    this.onRegistrationsChanged();
    this.logger.info({ repositoryId }, 'webhook secret rotated');
    return { repository, webhook: this.webhookSetup(repository.provider, secret) };
  }

  async requestSync(tenantId: string, repositoryId: string, force: boolean): Promise<{ repository: Repository; run: SyncRun }> {
    const repository = await this.find(tenantId, repositoryId);
    // A manual trigger names no target: it leaves the repository's status as it is.
    const { run } = await this.engine.trigger({ repositoryId, tenantId, trigger: 'MANUAL', force }, repository);
    return { repository, run };
  }

  /**
   * Changes how a repository is synced and archived. A policy that newly asks
   * for archives takes effect at the next run (a check archives an unchanged
   * commit too).
   */
  async update(request: UpdateRepositoryRequest): Promise<Repository> {
    await this.find(request.tenantId, request.repositoryId);
    return this.prisma.repository.update({
      where: { id: request.repositoryId },
      data: {
        ...(request.syncStrategy ? { syncStrategy: request.syncStrategy } : {}),
        ...(request.archivePolicy ? { archivePolicy: request.archivePolicy } : {}),
      },
    });
  }

  /** Stops the repository's runs, deletes its rows, its working copy and its archived objects. */
  async remove(tenantId: string, repositoryId: string): Promise<void> {
    const repository = await this.find(tenantId, repositoryId);
    await this.engine.cancelRepository(repositoryId);
    await this.prisma.repository.deleteMany({ where: { id: repositoryId, tenantId } });
    this.onRegistrationsChanged();
    await this.deleteWebhook(repository);
    await this.copies.exclusive(repositoryId, () => this.copies.remove(repositoryId));
    const objects = await this.archiver.removeRepository(repositoryId).catch((error: unknown) => {
      // The rows are gone; what the store kept is named so an operator can delete it.
      this.logger.error({ repositoryId, prefix: archiveKeys.repository(repositoryId), err: (error as Error).message }, 'archived objects of a removed repository could not be deleted');
      return 0;
    });
    await this.indexer.removeRepository(repositoryId).catch((error: unknown) => {
      this.logger.error({ repositoryId, err: (error as Error).message }, 'code graph of a removed repository could not be deleted');
    });
    this.logger.info({ repositoryId, archivedObjectsDeleted: objects }, 'repository removed');
  }

  /** Credentials for a git call on this repository, decrypted only for that call. */
  async authFor(repository: Pick<Repository, 'provider' | 'credentialId' | 'host'>): Promise<GitAuth | undefined> {
    if (!repository.credentialId) return undefined;
    const credential = await this.oauth.credential(repository.credentialId);
    // A credential only ever goes to the host it was made for.
    if (!credential || credential.host !== repository.host) return undefined;
    return credentialAuth(repository.provider, credential.login, await this.oauth.accessToken(credential));
  }

  urlPolicy() {
    return {
      allowPrivateHosts: this.config.allowPrivateHosts,
      providerHosts: {
        github: [new URL(this.config.githubApiUrl).hostname.replace(/^api\./, '')],
        gitlab: [new URL(this.config.gitlabUrl).hostname],
      },
    };
  }

  private async find(tenantId: string, repositoryId: string): Promise<Repository> {
    const repository = await this.prisma.repository.findFirst({ where: { id: repositoryId, tenantId } });
    if (!repository) throw new NotFoundError('repository');
    return repository;
  }

  private webhookSetup(provider: Provider, secret: string): WebhookSetup {
    // Gitea, Forgejo and other plain git hosts send GitHub-compatible hooks.
    const route = provider === 'GITLAB' ? 'gitlab' : 'github';
    return { url: `${this.config.publicUrl}/webhooks/${route}`, secret, autoConfigured: false };
  }
}

/** The Basic-auth pair each host expects for a token. */
function credentialAuth(provider: Provider, login: string | null, secret: string): GitAuth {
  const username = provider === 'GITHUB' ? 'x-access-token' : provider === 'GITLAB' ? 'oauth2' : login || 'git';
  return { username, password: secret };
}
