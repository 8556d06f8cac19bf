import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import type { Services } from './schema/context.js';
import { createHttpServer, type HttpServer } from './server.js';
import { openDatabase, type Database, type InstanceLease } from './storage/database.js';
import { createSecretBox, loadEncryptionKey } from './storage/secrets.js';
import { WorkingCopies } from './storage/workingCopies.js';
import { SyncEngine } from './sync/engine.js';
import { createEventFanout } from './sync/eventFanout.js';
import { Git } from './sync/git.js';
import { RepositoryService } from './sync/repositories.js';
import { parseRepositoryUrl } from './sync/repositoryUrl.js';
import { Membership } from './sync/membership.js';
import { RunQueue } from './sync/runQueue.js';
import { Scheduler } from './sync/scheduler.js';
import { createStrategies } from './sync/strategies.js';
import { Archiver } from './sync/archiver.js';
import { Evictor } from './sync/eviction.js';
import { RepositoryFiles } from './sync/repositoryFiles.js';
import { LocalArchiveStore, S3ArchiveStore, type ArchiveStore } from './storage/archiveStore.js';
import { WebhookService } from './sync/webhooks.js';
import { CodeGraph } from './indexing/codeGraph.js';
import { Indexer } from './indexing/indexer.js';
import { OAuthService } from './providers/oauth.js';
import { Platforms } from './providers/platforms.js';
import { TokenLimits } from './schema/limits.js';

export interface App {
  config: Config;
  logger: Logger;
  db: Database;
  engine: SyncEngine;
  scheduler: Scheduler;
  evictor: Evictor;
  services: Services;
  http: HttpServer;
  /** Base URL the server listens on. */
  url: string;
  /** This process among the instances sharing the database (SyncRun.claimedBy). */
  instanceId: string;
  /** How sync events reach other instances. */
  eventFanout: 'local' | 'redis' | 'postgresql';
  /** The live instances and which one owns a repository (affinity). */
  membership: Membership;
  close(): Promise<void>;
}

export interface AppOptions {
  logger?: Logger;
  /** An already open database (CLI commands, tests); default: open from config. */
  db?: Database;
}

/** The composition root: wires the pipeline of SPEC §1 and starts serving. */
export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const db = options.db ?? (await openDatabase(config));
  const applied = await db.migrate();
  if (applied.length) logger.info({ migrations: applied }, 'database migrated');

  const secretBox = createSecretBox(await loadEncryptionKey(config.dataDir, config.encryptionKey));
  const copies = new WorkingCopies(config.dataDir);
  await copies.init();
  const git = new Git({ timeoutMs: config.gitTimeoutMs, idleTimeoutMs: config.gitIdleTimeoutMs });
  // syncStatus subscribers on any instance see every instance's runs (Redis, else PostgreSQL NOTIFY).
  const fanout = await createEventFanout({ redisUrl: config.redisUrl, databaseUrl: db.kind === 'postgresql' ? config.databaseUrl : undefined, logger });
  const events = fanout.events;
  const store = openArchiveStore(config);
  const evictor = new Evictor(db.prisma, copies, store, logger, {
    budgetBytes: config.archive.localBudgetBytes,
    maxIdleMs: config.archive.localMaxIdleMs,
  });
  const runQueue = new RunQueue(db.prisma);
  const metrics = createMetrics(async () => {
    const groups = await db.prisma.repository.groupBy({ by: ['status'], _count: { _all: true } });
    return Object.fromEntries(groups.map((group) => [group.status, group._count._all]));
  });

  const archiver = new Archiver(db.prisma, store, git, copies, logger, metrics, config.archive);
  const graph = config.neo4j ? CodeGraph.open(config.neo4j) : null;
  const indexer = new Indexer(db.prisma, git, graph, logger, metrics, config.index);
  // Constraints and indexes now, so the first sync does not wait for them; Neo4j being down does not stop the service.
  graph?.ready().catch((error: unknown) => logger.error({ err: (error as Error).message }, 'code graph unavailable; indexing retries at each sync'));

  // Names this process in SyncRun.claimedBy; the lease tells other instances it is alive.
  const instanceId = `${process.pid}-${randomUUID()}`;
  const lease = await db.leaseInstance(instanceId);
  // Affinity (SPEC §1 "Several processes"): a repository's runs execute on the live instance that owns it.
  const membership = new Membership(
    db.prisma,
    lease,
    instanceId,
    logger,
    db.kind === 'postgresql' ? { heartbeatMs: config.heartbeatMs, ttlMs: config.instanceTtlMs } : null,
  );

  const platforms = new Platforms(config, logger);
  const oauth = new OAuthService(db.prisma, secretBox, config, platforms, logger);
  let repositories!: RepositoryService;
  const engine = new SyncEngine(
    {
      prisma: db.prisma,
      git,
      copies,
      strategies: createStrategies(git, copies, { maxRepoBytes: config.maxRepoBytes }),
      archiver,
      indexer,
      events,
      logger,
      resolveAuth: (repository) => repositories.authFor(repository),
      assertHostAllowed: async (url) => void (await parseRepositoryUrl(url, repositories.urlPolicy())),
      // Only with the repository's own credential: anonymous API quotas are tiny, and only an authorized 304 is free.
      platformFor: (repository, auth) => (auth ? platforms.forHost(repository.provider, repository.host, auth.password) : null),
      // AUTO's rule for DELTA (README "Sync strategies"): the platform's size for the repository.
      autoDelta: (repository) => repository.platformSizeBytes !== null && repository.platformSizeBytes >= config.deltaAutoMinBytes,
    },
    runQueue,
    metrics,
    {
      concurrency: config.syncConcurrency,
      hostConcurrency: config.hostConcurrency,
      instanceId,
      afterSync: () => evictor.request(),
      owns: (repositoryId) => membership.owns(repositoryId),
    },
  );
  repositories = new RepositoryService(db.prisma, engine, git, copies, archiver, indexer, secretBox, config, logger, platforms, oauth);
  const webhooks = new WebhookService({
    prisma: db.prisma,
    statement: db.statement,
    engine,
    secretBox,
    config,
    listingTimeoutMs: git.exchangeTimeoutMs,
    logger,
    authFor: (repository) => repositories.authFor(repository),
    assertHostAllowed: async (url) => void (await parseRepositoryUrl(url, repositories.urlPolicy())),
  });
  repositories.onRegistrationsChanged = () => webhooks.forgetRegistrations();
  const files = new RepositoryFiles(db.prisma, git, copies, store);
  const limits = new TokenLimits(config.limits);
  const services: Services = { config, engine, events, copies, files, repositories, secretBox, webhooks, graph, platforms, oauth, limits };

  await recover(db, runQueue, lease, logger);
  const scheduler = new Scheduler(db.prisma, engine, logger, config.schedulerIntervalMs);

  const http = createHttpServer({ db, services, metrics, logger });
  await new Promise<void>((resolve, reject) => {
    http.server.once('error', reject);
    http.server.listen(config.port, config.host, () => resolve());
  });
  const address = http.server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  // PORT=0 binds a free port; the webhook URL handed to hosts must name it.
  if (!config.publicUrlConfigured) config.publicUrl = url;
  // Joins the cluster once it serves: an instance that cannot listen never takes repositories.
  await membership.start(url);
  logger.info({ url: `${url}/graphql`, database: db.kind, dataDir: config.dataDir, archives: store.urlOf('') }, 'RepoLens Sync is serving');

  // Runs other instances queue for repositories this one owns.
  engine.listenForNotices();
  const resumed = await engine.resumeQueued();
  if (resumed) logger.info({ runs: resumed }, 'resumed queued sync runs');
  // Accepted (answered 2xx) before a stop but never processed: nothing accepted is lost.
  const pendingDeliveries = await webhooks.processPending();
  if (pendingDeliveries) logger.info({ deliveries: pendingDeliveries }, 'processing webhook deliveries accepted before the restart');
  scheduler.start();
  // Idle copies age out even when no run finishes to start a pass.
  evictor.request();
  // …and copies of repositories removed through another instance go too.
  const sweepStray = () => void evictor.removeStray().catch((error: unknown) => logger.error({ err: error }, 'removing stray working copies failed'));
  sweepStray();
  const evictionTimer = setInterval(() => {
    evictor.request();
    sweepStray();
  }, 60_000).unref();
  // Another instance on the same database may stop uncleanly while this one runs: its runs are taken over. So
  // are this instance's own runs whose end the database missed (engine.requeueAbandoned).
  const sweep =
    db.kind === 'postgresql' && config.orphanSweepMs > 0
      ? setInterval(() => {
          void recover(db, runQueue, lease, logger)
            .then(() => engine.requeueAbandoned())
            .catch((error: unknown) => logger.error({ err: error }, 'orphaned-run sweep failed'));
        }, config.orphanSweepMs).unref()
      : undefined;
  // An instance that left (killed: its lease is gone) hands over its runs now, not at the next sweep; while
  // there are several, every heartbeat also picks up the queued runs of owned repositories that a notice missed.
  membership.onHeartbeat = ({ members, joined, left }) => {
    if (members.length === 1 && !joined.length && !left.length) return;
    void (async () => {
      if (left.length) await recover(db, runQueue, lease, logger);
      await engine.resumeQueued();
    })().catch((error: unknown) => logger.error({ err: error }, 'taking over queued runs failed'));
  };

  let closing: Promise<void> | undefined;
  return {
    config,
    logger,
    db,
    engine,
    scheduler,
    evictor,
    services,
    http,
    url,
    instanceId,
    eventFanout: fanout.kind,
    membership,
    close() {
      closing ??= (async () => {
        clearInterval(sweep);
        clearInterval(evictionTimer);
        await scheduler.stop();
        // Subscribers are told the stream is complete before their sockets close (at most a second's wait).
        events.endSubscriptions();
        for (const deadline = Date.now() + 1_000; limits.openSubscriptions() > 0 && Date.now() < deadline; ) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await http.close();
        await webhooks.idle();
        // Leaving first: the other instances start taking this one's repositories while its runs finish.
        await membership.stop();
        await engine.shutdown(config.shutdownGraceMs);
        await evictor.idle();
        await lease.release();
        await fanout.close();
        await graph?.close();
        if (!options.db) await db.close();
      })();
      return closing;
    },
  };
}

/** S3 when S3_BUCKET is set, else $DATA_DIR/archives (SPEC §2). */
function openArchiveStore(config: Config): ArchiveStore {
  return config.s3 ? new S3ArchiveStore(config.s3) : new LocalArchiveStore(path.join(config.dataDir, 'archives'));
}

/**
 * After a crash: runs left RUNNING by a stopped instance (this one before a
 * restart, or another process on the same PostgreSQL database) go back to the
 * queue, and repositories left SYNCING with no run running become OUTDATED with
 * a run queued. Runs of live instances are left alone. Temporary clones of this
 * instance were removed by copies.init. Returns how many runs were re-queued.
 */
async function recover(db: Database, runQueue: RunQueue, lease: InstanceLease, logger: Logger): Promise<number> {
  let requeued = 0;
  for (const owner of await runQueue.runningOwners()) {
    if (owner === null || !(await lease.isAlive(owner))) requeued += await runQueue.requeueOrphans(owner);
  }
  const interrupted = await db.prisma.repository.findMany({
    where: { status: 'SYNCING', syncRuns: { none: { activeSlot: 'RUNNING' } } },
    select: { id: true, tenantId: true },
  });
  for (const repository of interrupted) {
    const { count } = await db.prisma.repository.updateMany({ where: { id: repository.id, status: 'SYNCING' }, data: { status: 'OUTDATED' } });
    if (count && !(await runQueue.nextQueued(repository.id))) {
      await runQueue.enqueue({ repositoryId: repository.id, tenantId: repository.tenantId, trigger: 'SCHEDULED' });
    }
  }
  if (requeued || interrupted.length) {
    logger.warn({ requeuedRuns: requeued, outdatedRepositories: interrupted.length }, 'recovered from an unclean stop');
  }
  return requeued + interrupted.length;
}
