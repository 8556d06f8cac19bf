import { randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Repository, WebhookOutcome } from '../generated/prisma/client.js';
import { parseGithubDelivery } from '../providers/github.js';
import { parseGitlabDelivery } from '../providers/gitlab.js';
import {
  githubSignatureValid,
  gitlabTokenValid,
  header,
  MalformedDelivery,
  type Headers,
  type ParsedDelivery,
  type RepositoryIdentity,
  type WebhookAction,
  type WebhookProvider,
} from '../providers/webhooks.js';
import type { Database, Prisma } from '../storage/database.js';
import type { SecretBox } from '../storage/secrets.js';
import { Batcher } from './batcher.js';
import type { SyncEngine } from './engine.js';
import type { GitAuth } from './git.js';
import { redactSecrets } from './redact.js';
import { recordRefs } from './refs.js';
import { PlainGitPlatform } from '../providers/plainGit.js';

/** What the route answers: status and JSON body. */
export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface WebhookDependencies {
  prisma: Prisma;
  /** Database.statement: the intake's insert goes straight to the driver. */
  statement: Database['statement'];
  engine: SyncEngine;
  secretBox: SecretBox;
  config: Pick<Config, 'githubWebhookSecret' | 'gitlabWebhookSecret'>;
  /** Limit of a ref listing (Git.exchangeTimeoutMs, as the CHECK uses). */
  listingTimeoutMs: number;
  logger: Logger;
  authFor(repository: Repository): Promise<GitAuth | undefined>;
  /** Re-checks the repository's host right before this process connects to it. */
  assertHostAllowed(url: string): Promise<void>;
}

/** A registration's secret: 32 random bytes, shown once. */
export function generateWebhookSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Repository.identityKey: how a payload's repository identity finds its registrations. */
export function identityKey(host: string, name: string): string {
  return `${host}/${name}`.toLowerCase();
}

interface Registration {
  id: string;
  tenantId: string;
  /** The registration's own secret, decrypted when the registration was read (null: none usable). */
  secret: string | null;
}

interface NewDelivery {
  tenantId: string;
  repositoryId: string;
  provider: WebhookProvider;
  event: string;
  deliveryId: string;
  action: WebhookAction;
}

interface PendingDelivery {
  id: string;
  repositoryId: string;
  action: WebhookAction;
}

/**
 * How long a registration read serves later deliveries of the same repository
 * as it is; up to `registrationStaleMs` it still serves them while a new read
 * is made for the ones after. This process's own changes (add, rotate, remove)
 * clear it at once; a secret rotated by another process stops verifying here
 * once a delivery has triggered that new read.
 */
const registrationFreshMs = 1000;
const registrationStaleMs = 60_000;
const staleRefreshDelayMs = 25;
/**
 * Under a burst, processing lets deliveries gather before the next batch until
 * none has arrived for this long, and at most for `burstGatherMaxMs`: while
 * deliveries keep coming, answering them goes first.
 */
const burstGatherMs = 20;
const burstGatherMaxMs = 1000;
/** Repositories of a batch processed at once. */
const processingLanes = 4;
/** After the database failed a processing batch, when it is tried again. */
const retryMs = 5000;

/**
 * Webhook deliveries (SPEC §4): verified against every registration the
 * payload names, stored (one row per verified registration, unique by
 * delivery id, so a redelivery is a duplicate) before the answer, then
 * processed in the background, in batches: a burst of pushes to a repository
 * becomes one trigger, a ref moved many times one write. Deliveries stored but
 * not processed (the process stopped) are processed at the next start.
 */
export class WebhookService {
  private readonly registrations: Batcher<string, Registration[]>;
  private readonly inserts: Batcher<NewDelivery, string | null>;
  private pending: PendingDelivery[] = [];
  private lastEnqueuedAt = 0;
  private draining: Promise<void> | null = null;

  constructor(private readonly deps: WebhookDependencies) {
    this.registrations = new Batcher((keys) => this.findRegistrations(keys), { eager: 1000, max: 1000 });
    // The first 16 deliveries of a burst go to the database while the rest are still being read.
    this.inserts = new Batcher((rows) => this.insertDeliveries(rows), { eager: 16, max: 1000 });
  }

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
    const key = keyOf(delivery.identity);
    const check = (candidates: Registration[]) => candidates.filter(({ secret }) => providerWideValid || (secret !== null && verifies(secret)));
    const known = await this.recentRegistrations(key);
    let verified = check(known.registrations);
    // Nothing verified against what was read a moment ago: a registration may be new, or its secret
    // rotated by another instance, so the database decides before the 401.
    if (verified.length === 0 && !known.fresh) verified = check(await this.freshRegistrations(key));
    if (verified.length === 0) return { status: 401, body: { error: 'signature does not verify for any registration of this repository' } };

    const stored = await Promise.all(
      verified.map((registration) =>
        this.inserts.load({
          tenantId: registration.tenantId,
          repositoryId: registration.id,
          provider,
          event: delivery.event,
          deliveryId: delivery.deliveryId,
          action: delivery.action,
        }),
      ),
    );
    const created = verified.flatMap((registration, index) => (stored[index] ? [{ id: stored[index], repositoryId: registration.id }] : []));
    if (created.length === 0) return { status: 200, body: { duplicate: true } };
    this.enqueue(created.map((row) => ({ ...row, action: delivery.action })));
    const { action } = delivery;
    if (action.kind === 'ping') return { status: 200, body: { ok: true, event: delivery.event } };
    if (action.kind === 'ignored') return { status: 200, body: { ignored: action.reason } };
    return { status: 202, body: { accepted: created.length } };
  }

  /** Registrations by identity, as read recently (a burst of deliveries reads them once). */
  private readonly recent = new Map<string, { at: number; registrations: Registration[] }>();

  private async recentRegistrations(key: string): Promise<{ registrations: Registration[]; fresh: boolean }> {
    const cached = this.recent.get(key);
    const age = cached ? Date.now() - cached.at : Number.POSITIVE_INFINITY;
    if (cached && age < registrationFreshMs) return { registrations: cached.registrations, fresh: false };
    if (cached && age < registrationStaleMs) {
      this.refreshSoon(key);
      return { registrations: cached.registrations, fresh: false };
    }
    return { registrations: await this.freshRegistrations(key), fresh: true };
  }

  /** Stale keys are read again together, a moment after the first is hit (one query, not one per repository). */
  private readonly staleKeys = new Set<string>();
  private staleTimer: NodeJS.Timeout | null = null;

  /** Keys waiting to be read again or being read: a key is read once however often it is hit meanwhile. */
  private readonly refreshing = new Set<string>();

  private refreshSoon(key: string): void {
    if (this.refreshing.has(key)) return;
    this.refreshing.add(key);
    this.staleKeys.add(key);
    this.staleTimer ??= setTimeout(() => {
      this.staleTimer = null;
      const keys = [...this.staleKeys];
      this.staleKeys.clear();
      for (const stale of keys) {
        this.freshRegistrations(stale)
          .catch((error: Error) => this.deps.logger.warn({ err: error.message }, 'webhook registrations could not be read again'))
          .finally(() => this.refreshing.delete(stale));
      }
    }, staleRefreshDelayMs);
    this.staleTimer.unref();
  }

  private async freshRegistrations(key: string): Promise<Registration[]> {
    const generation = this.generation;
    const registrations = await this.registrations.load(key);
    // A read that started before this process changed a registration is used once, not kept.
    if (generation !== this.generation) return registrations;
    if (this.recent.size >= 10_000) this.recent.clear();
    this.recent.set(key, { at: Date.now(), registrations });
    return registrations;
  }

  /** Forgets what was read about a repository's registrations (this process added, rotated or removed one). */
  forgetRegistrations(): void {
    this.generation++;
    this.recent.clear();
  }

  private generation = 0;

  /** Deliveries stored but never processed (a process stopped after answering): processed now. */
  async processPending(): Promise<number> {
    const rows = await this.deps.prisma.webhookDelivery.findMany({
      where: { processedAt: null },
      orderBy: { receivedAt: 'asc' },
      select: { id: true, repositoryId: true, action: true },
    });
    this.enqueue(rows.map((row) => ({ id: row.id, repositoryId: row.repositoryId, action: row.action as unknown as WebhookAction })));
    return rows.length;
  }

  /** Until every delivery handed to this process is processed. */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private async findRegistrations(keys: readonly string[]): Promise<Registration[][]> {
    const rows = await this.deps.prisma.repository.findMany({
      where: { identityKey: { in: [...new Set(keys)] } },
      select: { id: true, tenantId: true, webhookSecret: true, identityKey: true },
    });
    // Decrypted once per read, not once per delivery: a burst verifies against what the cache holds.
    const registrations = rows.map((row) => ({ key: row.identityKey, id: row.id, tenantId: row.tenantId, secret: this.decryptSecret(row.id, row.webhookSecret) }));
    return keys.map((key) => registrations.filter((registration) => registration.key === key));
  }

  /** One INSERT for the batch; per row the new delivery's id, or null when the registration had it already. */
  private async insertDeliveries(rows: readonly NewDelivery[]): Promise<(string | null)[]> {
    // Straight on the driver, as a prepared statement: the intake's one statement per batch.
    // receivedAt as Prisma writes DateTime: UTC into a timestamp(3) column.
    const inserted = await this.deps.statement<{ id: string; repositoryId: string; deliveryId: string }>(
      'webhook-delivery-insert',
      `INSERT INTO "WebhookDelivery" (id, "tenantId", "repositoryId", provider, event, "deliveryId", "receivedAt", action)
       SELECT gen_random_uuid(), d."tenantId", d."repositoryId", d.provider::"Provider", d.event, d."deliveryId", $1::timestamp(3), d.action
       FROM jsonb_to_recordset($2::jsonb)
         AS d("tenantId" uuid, "repositoryId" uuid, provider text, event text, "deliveryId" text, action jsonb)
       -- A registration removed since it was looked up takes nothing (rather than failing the batch).
       WHERE EXISTS (SELECT 1 FROM "Repository" WHERE id = d."repositoryId")
       ON CONFLICT ("repositoryId", "deliveryId") DO NOTHING
       RETURNING id, "repositoryId", "deliveryId"`,
      [new Date().toISOString().slice(0, 23), JSON.stringify(rows)],
    );
    const ids = new Map(inserted.map((row) => [`${row.repositoryId} ${row.deliveryId}`, row.id]));
    // The same delivery twice in one batch: the first is new, the second a duplicate.
    return rows.map((row) => {
      const key = `${row.repositoryId} ${row.deliveryId}`;
      const id = ids.get(key) ?? null;
      ids.delete(key);
      return id;
    });
  }

  private decryptSecret(repositoryId: string, encrypted: string | null): string | null {
    if (!encrypted) return null;
    try {
      return this.deps.secretBox.decrypt(encrypted);
    } catch (error) {
      this.deps.logger.error({ repositoryId, err: (error as Error).message }, 'webhook secret cannot be decrypted (ENCRYPTION_KEY changed?)');
      return null;
    }
  }

  /** Until no delivery has been handed over for burstGatherMs, or burstGatherMaxMs have passed. */
  private async gather(): Promise<void> {
    const started = performance.now();
    do await new Promise((resolve) => setTimeout(resolve, burstGatherMs));
    while (performance.now() - this.lastEnqueuedAt < burstGatherMs && performance.now() - started < burstGatherMaxMs);
  }

  private enqueue(deliveries: PendingDelivery[]): void {
    if (deliveries.length === 0) return;
    this.lastEnqueuedAt = performance.now();
    this.pending.push(...deliveries);
    this.draining ??= this.drain().finally(() => (this.draining = null));
  }

  /**
   * Processes what is pending, batch after batch, until nothing is. The first
   * batch goes at once (a lone delivery, or the first push of a storm, waits
   * for nothing: its sync starts while the rest arrive); what arrives
   * meanwhile gathers until deliveries stop coming (at most burstGatherMaxMs):
   * the answers went out already, answering the burst goes first, and a
   * bigger batch costs the database the same few statements.
   */
  private async drain(): Promise<void> {
    // The answers of deliveries stored with this one go out before processing starts.
    await new Promise((resolve) => setImmediate(resolve));
    for (let first = true; this.pending.length; first = false) {
      if (!first) await this.gather();
      const batch = this.pending.splice(0, 2000);
      try {
        await this.processBatch(batch);
      } catch (error) {
        // The database failed us (a repository's own problems are its deliveries' FAILED outcome).
        // Still unprocessed in the database: tried again shortly, and by the next start in any case.
        this.deps.logger.error({ err: error, deliveries: batch.length }, 'webhook processing failed; retrying');
        setTimeout(() => this.enqueue(batch), retryMs).unref();
      }
    }
  }

  /** Applies a batch, repository by repository; processing a delivery twice (after a crash) is harmless. */
  private async processBatch(batch: PendingDelivery[]): Promise<void> {
    const { prisma } = this.deps;
    const byRepository = new Map<string, PendingDelivery[]>();
    for (const delivery of batch) {
      const list = byRepository.get(delivery.repositoryId) ?? [];
      list.push(delivery);
      byRepository.set(delivery.repositoryId, list);
    }
    const repositories = await prisma.repository.findMany({ where: { id: { in: [...byRepository.keys()] } } });
    const now = new Date();
    const touched = repositories.filter((repository) => byRepository.get(repository.id)!.some(({ action }) => refersToCode(action))).map((repository) => repository.id);

    const outcomes: { id: string; outcome: WebhookOutcome; error: string | null }[] = [];
    // A few repositories at a time: the database pool stays free for the deliveries being accepted.
    const lanes = new PQueue({ concurrency: processingLanes });
    await Promise.all(
      repositories.map((repository) => lanes.add(async () => {
        const deliveries = byRepository.get(repository.id)!;
        try {
          outcomes.push(...(await this.applyAll(repository, deliveries)));
        } catch (caught) {
          const error = redactSecrets(caught instanceof Error ? caught.message : String(caught));
          this.deps.logger.warn({ repositoryId: repository.id, err: error }, 'webhook deliveries failed');
          outcomes.push(...deliveries.map(({ id }) => ({ id, outcome: 'FAILED' as const, error })));
        }
      })),
    );
    // Deliveries of repositories removed meanwhile went with them (cascade). One statement records
    // every outcome and when the repositories' hooks last delivered (polling relaxes after that).
    if (outcomes.length === 0) return;
    await prisma.$executeRaw`
      WITH hooked AS (UPDATE "Repository" SET "lastWebhookAt" = ${now} WHERE id = ANY(SELECT jsonb_array_elements_text(${JSON.stringify(touched)}::jsonb)::uuid))
      UPDATE "WebhookDelivery" AS delivery SET outcome = result.outcome::"WebhookOutcome", error = result.error, "processedAt" = ${now}
      FROM jsonb_to_recordset(${JSON.stringify(outcomes)}::jsonb) AS result(id uuid, outcome text, error text)
      WHERE delivery.id = result.id`;
  }

  /**
   * The net effect of one repository's deliveries, in the order they arrived:
   * the last word on the tracked branch (one trigger, or FAILED when it was
   * deleted), each other ref's last state, each pull request's newest state.
   */
  private async applyAll(repository: Repository, deliveries: PendingDelivery[]): Promise<{ id: string; outcome: WebhookOutcome; error: string | null }[]> {
    const tracked = `refs/heads/${repository.branch}`;
    const outcome = new Map<string, { outcome: WebhookOutcome; error: string | null }>();
    const refs = new Map<string, string | null>();
    const pulls = new Map<number, Extract<WebhookAction, { kind: 'pull-request' }>>();
    const refreshedBy: string[] = [];
    // The last word on the tracked branch: its head (null: deleted) and the deliveries it answers.
    const trackedHead: { sha: string | null; deliveries: string[] } = { sha: null, deliveries: [] };

    for (const { id, action } of deliveries) {
      outcome.set(id, { outcome: 'IGNORED', error: null });
      if (action.kind === 'pull-request') {
        const stored = pulls.get(action.number);
        if (!stored || !stored.updatedAt || !action.updatedAt || action.updatedAt >= stored.updatedAt) pulls.set(action.number, action);
      } else if (action.kind === 'ref-created') {
        refreshedBy.push(id);
      } else if (action.kind === 'ref-deleted' || action.kind === 'push') {
        const sha = action.kind === 'push' ? action.after : null;
        // The tracked branch's ref is written by the sync the push queues (its CHECK lists every ref).
        if (action.ref !== tracked || sha === null) refs.set(action.ref, sha);
        else refs.delete(action.ref);
        if (action.ref === tracked) {
          // A deletion ends the pushes before it; pushes after a deletion recreate the branch.
          if (sha === null || trackedHead.sha === null) trackedHead.deliveries = [];
          trackedHead.deliveries.push(id);
          trackedHead.sha = sha;
        }
      }
    }

    if (refreshedBy.length) {
      // GitHub's create event names no commit: the remote's listing says where every ref is now.
      try {
        await this.deps.assertHostAllowed(repository.url);
        const auth = await this.deps.authFor(repository);
        const remote = await new PlainGitPlatform(repository.url, { timeoutMs: this.deps.listingTimeoutMs, ...(auth ? { auth } : {}) }).remote();
        await recordRefs(this.deps.prisma, repository, remote);
      } catch (caught) {
        const error = redactSecrets(caught instanceof Error ? caught.message : String(caught));
        for (const id of refreshedBy) outcome.set(id, { outcome: 'FAILED', error });
      }
    }
    // A listing read just now already holds every ref's state.
    if (!refreshedBy.length || refreshedBy.some((id) => outcome.get(id)?.outcome === 'FAILED')) await this.setRefs(repository.id, refs);
    for (const action of pulls.values()) await this.recordPullRequest(repository.id, action);

    if (trackedHead.sha && trackedHead.sha === repository.lastCommitSha && repository.status === 'SYNCED') {
      // A redelivery, or a second hook, naming the commit the copy is at: nothing to sync.
      trackedHead.deliveries.forEach((id) => outcome.set(id, { outcome: 'IGNORED', error: null }));
    } else if (trackedHead.sha) {
      const { coalesced } = await this.deps.engine.trigger(
        { repositoryId: repository.id, tenantId: repository.tenantId, trigger: 'WEBHOOK', targetSha: trackedHead.sha },
        repository,
      );
      trackedHead.deliveries.forEach((id, index) => outcome.set(id, { outcome: index === 0 && !coalesced ? 'QUEUED' : 'COALESCED', error: null }));
    } else if (trackedHead.deliveries.length) {
      await this.deps.prisma.repository.update({
        where: { id: repository.id },
        data: { status: 'FAILED', lastError: `branch "${repository.branch}" was deleted upstream (webhook); the last synced copy is kept` },
      });
    }
    return [...outcome].map(([id, result]) => ({ id, ...result }));
  }

  /**
   * Refs from deliveries. The stored listing digest is cleared, so the next
   * CHECK rewrites the refs from the remote's own listing whatever happened here.
   */
  private async setRefs(repositoryId: string, refs: Map<string, string | null>): Promise<void> {
    const { prisma } = this.deps;
    let changed = false;
    for (const [ref, sha] of refs) {
      const kind = ref.startsWith('refs/heads/') ? 'BRANCH' : ref.startsWith('refs/tags/') ? 'TAG' : null;
      if (!kind) continue;
      const name = ref.slice(kind === 'BRANCH' ? 'refs/heads/'.length : 'refs/tags/'.length);
      if (sha === null) await prisma.ref.deleteMany({ where: { repositoryId, kind, name } });
      else await prisma.ref.upsert({ where: { repositoryId_kind_name: { repositoryId, kind, name } }, create: { repositoryId, kind, name, sha }, update: { sha } });
      changed = true;
    }
    if (changed) await prisma.repository.update({ where: { id: repositoryId }, data: { refsDigest: null } });
  }

  /** Newest state of a pull/merge request; a delivery older than the stored one changes nothing. */
  private async recordPullRequest(repositoryId: string, action: Extract<WebhookAction, { kind: 'pull-request' }>): Promise<void> {
    const providerUpdatedAt = action.updatedAt ? new Date(action.updatedAt) : null;
    const now = new Date();
    await this.deps.prisma.$executeRaw`
      INSERT INTO "PullRequest" (id, "repositoryId", number, title, state, "headSha", "baseBranch", "providerUpdatedAt", "updatedAt")
      VALUES (gen_random_uuid(), ${repositoryId}::uuid, ${action.number}, ${action.title}, ${action.state}::"PullRequestState",
              ${action.headSha}, ${action.baseBranch}, ${providerUpdatedAt}, ${now})
      ON CONFLICT ("repositoryId", number) DO UPDATE SET
        title = EXCLUDED.title, state = EXCLUDED.state, "headSha" = EXCLUDED."headSha", "baseBranch" = EXCLUDED."baseBranch",
        "providerUpdatedAt" = EXCLUDED."providerUpdatedAt", "updatedAt" = EXCLUDED."updatedAt"
      WHERE "PullRequest"."providerUpdatedAt" IS NULL OR EXCLUDED."providerUpdatedAt" IS NULL
        OR "PullRequest"."providerUpdatedAt" <= EXCLUDED."providerUpdatedAt"`;
  }
}

function keyOf(identity: RepositoryIdentity): string {
  return identityKey(identity.host, identity.name);
}

/** Deliveries about the code (not pings or unused events) show the hook works: polling can relax. */
function refersToCode(action: WebhookAction): boolean {
  return action.kind !== 'ping' && action.kind !== 'ignored';
}
