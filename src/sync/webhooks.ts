import { randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Repository, WebhookDelivery, WebhookOutcome } from '../generated/prisma/client.js';
import { parseGithubDelivery } from '../providers/github.js';
import { parseGitlabDelivery } from '../providers/gitlab.js';
import {
  githubSignatureValid,
  gitlabTokenValid,
  header,
  MalformedDelivery,
  type Headers,
  type ParsedDelivery,
  type WebhookAction,
  type WebhookProvider,
} from '../providers/webhooks.js';
import type { Prisma } from '../storage/database.js';
import type { SecretBox } from '../storage/secrets.js';
import type { SyncEngine } from './engine.js';
import { redactSecrets } from './redact.js';
import { recordRefs } from './refs.js';
import { readRemote } from './remote.js';
import type { GitAuth } from './git.js';

/** What the route answers: status and JSON body. */
export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface WebhookDependencies {
  prisma: Prisma;
  engine: SyncEngine;
  secretBox: SecretBox;
  config: Pick<Config, 'githubWebhookSecret' | 'gitlabWebhookSecret' | 'gitTimeoutMs' | 'gitIdleTimeoutMs'>;
  logger: Logger;
  authFor(repository: Repository): Promise<GitAuth | undefined>;
  /** Re-checks the repository's host right before this process connects to it. */
  assertHostAllowed(url: string): Promise<void>;
}

/** A registration's secret: 32 random bytes, shown once. */
export function generateWebhookSecret(): string {
  return randomBytes(32).toString('base64url');
}

type Registration = Pick<Repository, 'id' | 'tenantId' | 'webhookSecret'>;

/**
 * Webhook deliveries (SPEC §4): verified against every registration the
 * payload names, stored (one row per verified registration, unique by
 * delivery id, so a redelivery is a duplicate) before the answer, then
 * processed in the background. Deliveries stored but not processed (the
 * process stopped) are processed at the next start.
 */
export class WebhookService {
  private readonly queue = new PQueue({ concurrency: 8 });

  constructor(private readonly deps: WebhookDependencies) {}

  async accept(provider: WebhookProvider, headers: Headers, body: Buffer): Promise<WebhookAnswer> {
    const proof = provider === 'GITHUB' ? header(headers, 'x-hub-signature-256') : header(headers, 'x-gitlab-token');
    if (!proof) {
      return { status: 401, body: { error: provider === 'GITHUB' ? 'missing X-Hub-Signature-256 header' : 'missing X-Gitlab-Token header' } };
    }
    let delivery: ParsedDelivery;
    try {
      delivery = provider === 'GITHUB' ? parseGithubDelivery(headers, body) : parseGitlabDelivery(headers, body);
    } catch (error) {
      if (error instanceof MalformedDelivery) return { status: 400, body: { error: error.message } };
      throw error;
    }
    const verifies = (secret: string) => (provider === 'GITHUB' ? githubSignatureValid(secret, body, proof) : gitlabTokenValid(secret, proof));
    const providerWide = provider === 'GITHUB' ? this.deps.config.githubWebhookSecret : this.deps.config.gitlabWebhookSecret;
    const providerWideValid = providerWide !== undefined && verifies(providerWide);

    if (!delivery.identity) {
      // A GitHub App's ping names no repository: only the provider-wide secret can vouch for it.
      if (!providerWideValid) return { status: 401, body: { error: 'signature does not verify' } };
      return { status: 200, body: { ok: true, event: delivery.event } };
    }
    const candidates = await this.deps.prisma.repository.findMany({
      where: { host: delivery.identity.host, name: { equals: delivery.identity.name, mode: 'insensitive' } },
      select: { id: true, tenantId: true, webhookSecret: true },
    });
    const verified = candidates.filter((registration) => providerWideValid || this.secretVerifies(registration, verifies));
    if (verified.length === 0) return { status: 401, body: { error: 'signature does not verify for any registration of this repository' } };

    const created = await this.deps.prisma.webhookDelivery.createManyAndReturn({
      data: verified.map((registration) => ({
        tenantId: registration.tenantId,
        repositoryId: registration.id,
        provider,
        event: delivery.event,
        deliveryId: delivery.deliveryId,
        action: delivery.action as object,
      })),
      skipDuplicates: true,
    });
    if (created.length === 0) return { status: 200, body: { duplicate: true } };
    for (const row of created) this.schedule(row);
    const { action } = delivery;
    if (action.kind === 'ping') return { status: 200, body: { ok: true, event: delivery.event } };
    if (action.kind === 'ignored') return { status: 200, body: { ignored: action.reason } };
    return { status: 202, body: { accepted: created.length } };
  }

  /** Deliveries stored but never processed (a process stopped after answering): processed now. */
  async processPending(): Promise<number> {
    const pending = await this.deps.prisma.webhookDelivery.findMany({ where: { processedAt: null }, orderBy: { receivedAt: 'asc' } });
    for (const row of pending) this.schedule(row);
    return pending.length;
  }

  /** Until every delivery handed to this process is processed. */
  async idle(): Promise<void> {
    await this.queue.onIdle();
  }

  private secretVerifies(registration: Registration, verifies: (secret: string) => boolean): boolean {
    if (!registration.webhookSecret) return false;
    try {
      return verifies(this.deps.secretBox.decrypt(registration.webhookSecret));
    } catch (error) {
      this.deps.logger.error({ repositoryId: registration.id, err: (error as Error).message }, 'webhook secret cannot be decrypted (ENCRYPTION_KEY changed?)');
      return false;
    }
  }

  private schedule(row: WebhookDelivery): void {
    void this.queue.add(() => this.process(row)).catch((error: unknown) => this.deps.logger.error({ err: error, deliveryId: row.id }, 'webhook processing crashed'));
  }

  /** Applies one delivery; idempotent, so processing it twice (two processes after a crash) is harmless. */
  private async process(row: WebhookDelivery): Promise<void> {
    const { prisma } = this.deps;
    let outcome: WebhookOutcome = 'IGNORED';
    let error: string | null = null;
    try {
      const repository = await prisma.repository.findUnique({ where: { id: row.repositoryId } });
      if (!repository) return;
      outcome = await this.apply(repository, row.action as unknown as WebhookAction);
    } catch (caught) {
      outcome = 'FAILED';
      error = redactSecrets(caught instanceof Error ? caught.message : String(caught));
      this.deps.logger.warn({ deliveryId: row.deliveryId, repositoryId: row.repositoryId, err: error }, 'webhook delivery failed');
    }
    await prisma.webhookDelivery.updateMany({ where: { id: row.id }, data: { outcome, error, processedAt: new Date() } });
  }

  private async apply(repository: Repository, action: WebhookAction): Promise<WebhookOutcome> {
    const { prisma, engine } = this.deps;
    if (action.kind === 'ping' || action.kind === 'ignored') return 'IGNORED';
    if (action.kind === 'pull-request') {
      await this.recordPullRequest(repository.id, action);
      return 'IGNORED';
    }
    const now = new Date();
    await prisma.repository.update({ where: { id: repository.id }, data: { lastWebhookAt: now } });
    const tracked = `refs/heads/${repository.branch}`;
    if (action.kind === 'ref-created') {
      // GitHub's create event names no commit: the listing says where the new ref points.
      await this.deps.assertHostAllowed(repository.url);
      const auth = await this.deps.authFor(repository);
      const remote = await readRemote(repository.url, {
        timeoutMs: Math.min(this.deps.config.gitTimeoutMs, this.deps.config.gitIdleTimeoutMs),
        ...(auth ? { auth } : {}),
      });
      await recordRefs(prisma, repository, remote);
      return 'IGNORED';
    }
    const deleted = action.kind === 'ref-deleted' || action.after === null;
    if (action.ref === tracked && deleted) {
      await this.setRef(repository.id, action.ref, null);
      await prisma.repository.update({
        where: { id: repository.id },
        data: { status: 'FAILED', lastError: `branch "${repository.branch}" was deleted upstream (webhook); the last synced copy is kept` },
      });
      return 'IGNORED';
    }
    if (action.kind === 'push' && action.ref === tracked && action.after) {
      await this.setRef(repository.id, action.ref, action.after);
      const { coalesced } = await engine.trigger(
        { repositoryId: repository.id, tenantId: repository.tenantId, trigger: 'WEBHOOK', targetSha: action.after },
        repository,
      );
      return coalesced ? 'COALESCED' : 'QUEUED';
    }
    await this.setRef(repository.id, action.ref, action.kind === 'push' ? action.after : null);
    return 'IGNORED';
  }

  /**
   * One ref from a delivery. The stored listing digest is cleared, so the next
   * CHECK rewrites the refs from the remote's own listing whatever happened here.
   */
  private async setRef(repositoryId: string, ref: string, sha: string | null): Promise<void> {
    const { prisma } = this.deps;
    const kind = ref.startsWith('refs/heads/') ? 'BRANCH' : ref.startsWith('refs/tags/') ? 'TAG' : null;
    if (!kind) return;
    const name = ref.slice(kind === 'BRANCH' ? 'refs/heads/'.length : 'refs/tags/'.length);
    const key = { repositoryId_kind_name: { repositoryId, kind, name } } as const;
    if (sha === null) await prisma.ref.deleteMany({ where: { repositoryId, kind, name } });
    else await prisma.ref.upsert({ where: key, create: { repositoryId, kind, name, sha }, update: { sha } });
    await prisma.repository.update({ where: { id: repositoryId }, data: { refsDigest: null } });
  }

  /** Newest state of a pull/merge request; a delivery older than the stored one changes nothing. */
  private async recordPullRequest(repositoryId: string, action: Extract<WebhookAction, { kind: 'pull-request' }>): Promise<void> {
    const { prisma } = this.deps;
    const providerUpdatedAt = action.updatedAt ? new Date(action.updatedAt) : null;
    const data = { title: action.title, state: action.state, headSha: action.headSha, baseBranch: action.baseBranch, providerUpdatedAt };
    const existing = await prisma.pullRequest.findUnique({ where: { repositoryId_number: { repositoryId, number: action.number } } });
    if (!existing) {
      try {
        await prisma.pullRequest.create({ data: { repositoryId, number: action.number, ...data } });
        return;
      } catch {
        // created meanwhile by another delivery: compare with it below
      }
    }
    await prisma.pullRequest.updateMany({
      where: {
        repositoryId,
        number: action.number,
        ...(providerUpdatedAt ? { OR: [{ providerUpdatedAt: null }, { providerUpdatedAt: { lte: providerUpdatedAt } }] } : {}),
      },
      data,
    });
  }
}

