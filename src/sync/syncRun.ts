import type { Logger } from 'pino';
import { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import type { Repository, SyncRun, SyncStrategy } from '../generated/prisma/client.js';
import type { Prisma } from '../storage/database.js';
import type { CopyHealth, WorkingCopies } from '../storage/workingCopies.js';
import type { Indexer } from '../indexing/indexer.js';
import { PlainGitPlatform } from '../providers/plainGit.js';
import { PlatformError, type GitPlatform } from '../providers/platform.js';
import type { ArchiveOutcome, Archiver } from './archiver.js';
import type { SyncEvents } from './events.js';
import { GitError, type Git, type GitAuth } from './git.js';
import { recordRefs, refsChange, refsCtes, type RefsChange } from './refs.js';
import type { ClaimedRun, IndexedCommits } from './runQueue.js';
import { RunRecorder, type PhaseLogEntry } from './runRecorder.js';
import type { DeltaSource, StrategyInput, StrategyResult, Strategies } from './strategies.js';
import { DeltaUnavailable } from './delta.js';
import { redactSecrets } from './redact.js';
import { maxConsecutiveFailures, nextCheckAt } from './schedule.js';

export interface RunDependencies {
  prisma: Prisma;
  git: Git;
  copies: WorkingCopies;
  strategies: Strategies;
  archiver: Archiver;
  indexer: Indexer;
  events: SyncEvents;
  logger: Logger;
  resolveAuth(repository: Repository): Promise<GitAuth | undefined>;
  /** Re-checks the repository's host right before git connects (DNS may have changed). */
  assertHostAllowed(url: string): Promise<void>;
  /** The platform API (GitHub, GitLab) that can answer a scheduled CHECK for this repository with its credential, if any. */
  platformFor(repository: Repository, auth: GitAuth | undefined): GitPlatform | null;
  /** Whether AUTO tries DELTA for this repository (the platform's numbers say it is cheaper). */
  autoDelta(repository: Repository): boolean;
}

export type RunOutcome = 'SUCCEEDED' | 'SKIPPED' | 'FAILED' | 'CANCELLED';

/** A run waiting behind the one that ended. */
export type QueuedRun = Pick<SyncRun, 'id' | 'repositoryId' | 'priority'>;

export interface RunResult {
  outcome: RunOutcome;
  /** The run queued behind this one, as the run's final statement saw it; undefined when it did not look. */
  queued?: QueuedRun | null;
}

/** A failure whose message is meant for the user as it is. */
class RunFailure extends Error {}

/**
 * One sync run, following the pipeline of SPEC §1:
 * (RESTORE) → CHECK → CLONE | FETCH → APPLY → INDEX → ARCHIVE → DONE (or SKIPPED / FAILED).
 */
export async function executeRun(deps: RunDependencies, { run: claimed, repository, indexed }: ClaimedRun, signal: AbortSignal): Promise<RunResult> {
  const recorder = new RunRecorder(
    deps.prisma,
    deps.events,
    repository.id,
    claimed.id,
    repository.status,
    claimed.phaseLog as unknown as PhaseLogEntry[],
  );
  const log = deps.logger.child({ repositoryId: repository.id, runId: claimed.id });
  try {
    return await sync(deps, repository, claimed, recorder, signal, indexed);
  } catch (error) {
    if (signal.aborted) throw error;
    const message = redactSecrets(error instanceof Error ? error.message : String(error));
    log.warn({ err: message }, 'sync run failed');
    await recordFailure(deps.prisma, recorder, repository, message);
    return { outcome: 'FAILED' };
  }
}

async function sync(
  deps: RunDependencies,
  repository: Repository,
  run: SyncRun,
  recorder: RunRecorder,
  signal: AbortSignal,
  indexed: IndexedCommits | null,
): Promise<RunResult> {
  const { prisma, copies } = deps;
  // The claim wrote the CHECKING phase.
  recorder.publishLast();
  await deps.assertHostAllowed(repository.url);
  const auth = await deps.resolveAuth(repository);
  let health = await copies.health(repository.id);
  if (!health.healthy && health.reason === 'no repository' && repository.lastCommitSha && repository.syncStrategy !== 'FULL') {
    health = await restoreCopy(deps, repository, recorder, signal, health);
  }
  const strategy = chooseStrategy(repository.syncStrategy, health);

  // A scheduled check of a healthy copy asks the platform's API, conditionally, before git.
  if (run.trigger === 'SCHEDULED' && !run.force && health.healthy && repository.lastCommitSha && health.head === repository.lastCommitSha) {
    const platform = deps.platformFor(repository, auth);
    const unchanged = platform ? await unchangedUpstream(deps, platform, repository, signal) : null;
    if (unchanged) {
      const sha = repository.lastCommitSha;
      const indexWarning = await indexCommit(deps, repository, sha, recorder, signal, indexed);
      const archived = await archiveCommit(deps, repository, sha, recorder, signal);
      const queued = await finishSkipped(prisma, recorder, repository, sha, null, archived, indexWarning, unchanged.checkEtag);
      return { outcome: 'SKIPPED', queued };
    }
  }

  // Without a usable copy there is nothing to compare: the clone reads the
  // remote itself, and a separate ref listing would only cost a round trip.
  let branch: string | null = repository.followsDefaultBranch ? null : repository.branch;
  let remoteSha: string | null = null;
  // Written with the run's next phase (one statement), or on their own before a failure.
  let refs: RefsChange | null = null;
  if (health.healthy || strategy !== 'FULL') {
    // Every host speaks git: the CHECK is the plain-git platform's ref listing (branches, tags, default branch).
    const remote = await new PlainGitPlatform(repository.url, { timeoutMs: deps.git.exchangeTimeoutMs, ...(auth ? { auth } : {}) }).remote({ signal });
    refs = refsChange(repository, remote);
    branch = repository.followsDefaultBranch && remote.defaultBranch ? remote.defaultBranch : repository.branch;
    remoteSha = remote.branches.get(branch) ?? null;
    if (!remoteSha) {
      await recordRefs(prisma, repository, remote);
      throw new RunFailure(`branch "${branch}" does not exist upstream; the last synced copy is kept`);
    }
    const upToDate = health.healthy && health.head === remoteSha && repository.lastCommitSha === remoteSha;
    if (upToDate && !run.force) {
      await followBranch(prisma, repository, branch);
      // An unchanged commit is indexed and archived when it never was (a run killed while
      // indexing, a graph configured later, a policy changed, an attempt that failed).
      const indexWarning = await indexCommit(deps, repository, remoteSha, recorder, signal, indexed);
      const archived = await archiveCommit(deps, repository, remoteSha, recorder, signal);
      return { outcome: 'SKIPPED', queued: await finishSkipped(prisma, recorder, repository, remoteSha, refs, archived, indexWarning) };
    }
  }

  const input: StrategyInput = {
    repositoryId: repository.id,
    url: repository.url,
    branch,
    remoteSha,
    fromSha: repository.lastCommitSha,
    localHead: health.healthy ? health.head : null,
    repair: !health.healthy,
    signal,
    onTransferProgress: (progress) =>
      recorder.progress(strategy === 'FULL' ? 'CLONING' : 'FETCHING', progress.fraction, progress.stage),
    onApply: async () => recorder.announce('APPLYING'),
    ...(auth ? { auth } : {}),
  };
  // DELTA (SPEC §1) needs a healthy copy at the synced commit and the platform's API.
  const delta =
    strategy === 'INCREMENTAL' && health.healthy && remoteSha && repository.lastCommitSha && health.head === repository.lastCommitSha && remoteSha !== health.head
      ? deltaSource(deps, repository, auth)
      : null;
  await beginTransfer(prisma, recorder, repository, delta ? 'DELTA' : strategy, refs);

  let usedStrategy: SyncStrategy = strategy;
  let result = delta ? await tryDelta(deps, input, delta, recorder) : null;
  if (result) {
    usedStrategy = 'DELTA';
  } else if (strategy === 'FULL') {
    result = await deps.strategies.full(input);
  } else {
    try {
      result = await deps.strategies.incremental(input);
    } catch (error) {
      if (!isLocalCopyProblem(error) || signal.aborted) throw error;
      // The copy itself is broken: a fresh clone replaces it (SPEC §1 self-healing).
      deps.logger.warn({ repositoryId: repository.id, err: (error as Error).message }, 'incremental sync failed on the local copy; re-cloning');
      usedStrategy = 'FULL';
      await recorder.phase('CLONING', { message: 'local copy unusable; re-cloning', run: { strategy: 'FULL' } });
      result = await deps.strategies.full({ ...input, onApply: async () => undefined });
    }
  }

  await followBranch(prisma, repository, result.branch);
  const indexWarning = await indexCommit(deps, repository, result.head, recorder, signal, indexed);
  const archived = await archiveCommit(deps, repository, result.head, recorder, signal);
  const finishedAt = new Date();
  const changed = result.head !== repository.lastCommitSha;
  const done = recorder.prepare('DONE', { status: 'SYNCED', commitSha: result.head });
  const next = nextCheckAt({
    now: finishedAt,
    lastChangedAt: changed ? finishedAt : changedAt(repository),
    consecutiveFailures: 0,
    lastWebhookAt: repository.lastWebhookAt,
  });
  const [row] = await prisma.$queryRaw<EndedRow[]>`
    WITH run AS (
      UPDATE "SyncRun" SET
        status = 'SUCCEEDED', "activeSlot" = NULL, strategy = ${usedStrategy}::"SyncStrategy", "toSha" = ${result.head},
        "filesChanged" = ${result.filesChanged}, "bytesReceived" = ${result.bytesReceived}, "finishedAt" = ${finishedAt},
        phase = ${done.data.phase}::"SyncPhase", "phaseLog" = ${JSON.stringify(done.data.phaseLog)}::jsonb, warning = ${warnings(indexWarning, archived)}
      WHERE id = ${run.id}::uuid
    )
    UPDATE "Repository" SET
      status = 'SYNCED', "lastCommitSha" = ${result.head}, "lastSyncedAt" = ${finishedAt}, "lastError" = NULL,
      "consecutiveFailures" = 0, "lastChangedAt" = ${changed ? finishedAt : repository.lastChangedAt}, "nextCheckAt" = ${next},
      ${archiveColumns(archived, true)}, "localUsedAt" = ${finishedAt}, "updatedAt" = ${finishedAt}
    WHERE id = ${repository.id}::uuid
    RETURNING ${queuedBehind(repository.id)}`;
  done.publish();
  return { outcome: 'SUCCEEDED', queued: queuedRun(repository.id, row) };
}

/**
 * RESTORE (SPEC §1): no local copy, but an archive ⇒ the newest snapshot
 * becomes the copy, and the run goes on incrementally from it. An unusable
 * snapshot is reported and the run clones instead.
 */
async function restoreCopy(
  deps: RunDependencies,
  repository: Repository,
  recorder: RunRecorder,
  signal: AbortSignal,
  health: CopyHealth,
): Promise<CopyHealth> {
  const snapshot = await deps.archiver.newestSnapshot(repository.id);
  if (!snapshot) return health;
  await recorder.phase('RESTORING', { status: 'SYNCING', message: 'restoring the working copy from the newest snapshot' });
  try {
    await deps.archiver.restore(snapshot, signal);
    deps.logger.info({ repositoryId: repository.id, commitSha: snapshot.commitSha }, 'working copy restored from its snapshot');
    // Just used: the least recently used copies are evicted first, not this one.
    await deps.prisma.repository.update({ where: { id: repository.id }, data: { localUsedAt: new Date() } });
    return await deps.copies.health(repository.id);
  } catch (error) {
    if (signal.aborted) throw error;
    const message = redactSecrets(error instanceof Error ? error.message : String(error));
    deps.logger.warn({ repositoryId: repository.id, err: message }, 'snapshot unusable; cloning instead');
    recorder.prepare('RESTORING', { message: `snapshot unusable (${message}); cloning instead` }).publish();
    return health;
  }
}

/**
 * INDEXING: metadata and code graph brought to the commit, when they are not
 * there yet. Never fails the run: the copy is synced whatever happens to the
 * index, and the next run picks up where this one stopped.
 */
async function indexCommit(
  deps: RunDependencies,
  repository: Repository,
  commitSha: string,
  recorder: RunRecorder,
  signal: AbortSignal,
  indexed: IndexedCommits | null,
): Promise<string | null> {
  let started = false;
  let warning: string | null;
  let summary: string;
  try {
    // The phase is announced only when there is something to index (what the claim read, else one metadata read, decides).
    const outcome = await deps.indexer.index(repository.id, deps.copies.pathOf(repository.id), commitSha, {
      signal,
      known: indexed,
      onStart: () => {
        started = true;
        recorder.announce('INDEXING');
      },
    });
    if (!started && !outcome.warning) return null;
    warning = outcome.warning;
    summary = `metadata ${outcome.metadata}, graph ${outcome.graph}, ${outcome.filesRead} files read${warning ? ` (${warning})` : ''}`;
  } catch (error) {
    if (signal.aborted) throw error;
    warning = `indexing failed: ${redactSecrets(error instanceof Error ? error.message : String(error))}`;
    summary = warning;
    deps.logger.warn({ repositoryId: repository.id, commitSha, err: warning }, 'indexing failed; the next sync tries again');
  }
  // What it did, to subscribers (like transfer progress: not a phase of its own); a problem also goes into the phase log.
  if (started) recorder.progress('INDEXING', 1, summary);
  if (warning) recorder.prepare('INDEXING', { message: warning }).publish();
  return warning;
}

/** The run's warning column: what went wrong without failing it. */
function warnings(indexWarning: string | null, archived: ArchiveOutcome | null): string | null {
  const all = [indexWarning, archived?.warning ?? null].filter((warning): warning is string => warning !== null);
  return all.length ? all.join('; ') : null;
}

/** ARCHIVING, when the repository's policy asks for it: never fails the run (a failure is its warning). */
async function archiveCommit(
  deps: RunDependencies,
  repository: Repository,
  commitSha: string,
  recorder: RunRecorder,
  signal: AbortSignal,
): Promise<ArchiveOutcome | null> {
  if (!(await deps.archiver.due(repository, commitSha))) return null;
  recorder.announce('ARCHIVING');
  const outcome = await deps.archiver.archive(repository, commitSha, signal);
  if (outcome.warning) recorder.prepare('ARCHIVING', { message: outcome.warning }).publish();
  return outcome;
}

/**
 * The archive columns of a run's final statement: a failed archive keeps the
 * newest good archiveUrl; the copy's size is the one packing measured, or
 * unknown (measured when eviction needs it) after a change nobody measured.
 */
function archiveColumns(archived: ArchiveOutcome | null, copyChanged: boolean): PrismaNamespace.Sql {
  const bytes = archived?.localBytes ?? null;
  return PrismaNamespace.sql`"s3ArchiveUrl" = COALESCE(${archived?.archiveUrl ?? null}, "s3ArchiveUrl"),
      "localBytes" = ${copyChanged && bytes === null ? PrismaNamespace.sql`NULL` : PrismaNamespace.sql`COALESCE(${bytes}::double precision, "localBytes")`}`;
}

interface EndedRow {
  queued: { id: string; priority: number } | null;
}

/** The CHECK's refs as the first common table expressions of a run's statement (none when unchanged). */
function refsFirst(repositoryId: string, refs: RefsChange | null, now: Date): PrismaNamespace.Sql {
  return refs ? PrismaNamespace.sql`${refsCtes(repositoryId, refs, now)},` : PrismaNamespace.empty;
}

/** For the RETURNING clause of a run's final statement: the run queued behind it, if any (one round trip fewer per run). */
function queuedBehind(repositoryId: string): PrismaNamespace.Sql {
  return PrismaNamespace.sql`(
    SELECT jsonb_build_object('id', queued.id, 'priority', queued.priority) FROM "SyncRun" AS queued
    WHERE queued."repositoryId" = ${repositoryId}::uuid AND queued."activeSlot" = 'QUEUED'
  ) AS queued`;
}

function queuedRun(repositoryId: string, row: EndedRow | undefined): QueuedRun | null | undefined {
  if (!row) return undefined;
  return row.queued ? { id: row.queued.id, priority: row.queued.priority, repositoryId } : null;
}

/**
 * CLONING / FETCHING: the repository turns SYNCING, the run records its
 * phase and strategy, and the CHECK's refs are stored, in one statement.
 */
async function beginTransfer(
  prisma: Prisma,
  recorder: RunRecorder,
  repository: Repository,
  strategy: 'FULL' | 'INCREMENTAL' | 'DELTA',
  refs: RefsChange | null,
): Promise<void> {
  const now = new Date();
  const step = recorder.prepare(strategy === 'FULL' ? 'CLONING' : 'FETCHING', { status: 'SYNCING' });
  await prisma.$executeRaw`
    WITH ${refsFirst(repository.id, refs, now)}
    run AS (
      UPDATE "SyncRun" SET
        phase = ${step.data.phase}::"SyncPhase", "phaseLog" = ${JSON.stringify(step.data.phaseLog)}::jsonb, strategy = ${strategy}::"SyncStrategy"
      WHERE id = ${recorder.runId}::uuid
    )
    UPDATE "Repository" SET
      status = 'SYNCING', "refsDigest" = COALESCE(${refs?.digest ?? null}, "refsDigest"), "updatedAt" = ${now}
    WHERE id = ${repository.id}::uuid`;
  step.publish();
}

/** Records the branch actually synced when it follows a renamed remote default branch. */
async function followBranch(prisma: Prisma, repository: Repository, branch: string): Promise<void> {
  const defaultBranch = repository.followsDefaultBranch ? branch : repository.defaultBranch;
  if (branch === repository.branch && defaultBranch === repository.defaultBranch) return;
  await prisma.repository.update({ where: { id: repository.id }, data: { branch, defaultBranch } });
}

/**
 * DELTA, or null when git must fetch instead (SPEC §1: past the API's limits,
 * or on any inconsistency; the copy is unchanged then). A DELTA that failed on
 * the local copy also leaves it to the fetch, which re-clones a broken copy.
 */
async function tryDelta(deps: RunDependencies, input: StrategyInput, source: DeltaSource, recorder: RunRecorder): Promise<StrategyResult | null> {
  try {
    return await deps.strategies.delta(input, source);
  } catch (error) {
    if (input.signal.aborted || !(error instanceof DeltaUnavailable || isLocalCopyProblem(error))) throw error;
    const reason = redactSecrets((error as Error).message);
    deps.logger.info({ repositoryId: input.repositoryId, reason }, 'DELTA not possible; fetching with git');
    const message = error instanceof DeltaUnavailable ? `DELTA not possible (${reason}); fetching with git` : `DELTA failed on the local copy (${reason}); fetching with git`;
    await recorder.phase('FETCHING', { message, run: { strategy: 'INCREMENTAL' } });
    return null;
  }
}

/**
 * The platform a DELTA reads from, when this run should try one: the
 * repository asks for DELTA, or AUTO finds the platform's numbers in its
 * favour (deps.autoDelta). Null without a platform API and credential.
 */
function deltaSource(deps: RunDependencies, repository: Repository, auth: GitAuth | undefined): DeltaSource | null {
  if (repository.syncStrategy !== 'DELTA' && !(repository.syncStrategy === 'AUTO' && deps.autoDelta(repository))) return null;
  const platform = deps.platformFor(repository, auth);
  return platform ? { platform, name: repository.name } : null;
}

function chooseStrategy(configured: SyncStrategy, health: CopyHealth): 'FULL' | 'INCREMENTAL' {
  if (!health.healthy) {
    // A copy that exists but is unusable is re-cloned; a half-updated one is repaired in place.
    return health.reason === 'an update was interrupted' && configured !== 'FULL' ? 'INCREMENTAL' : 'FULL';
  }
  return configured === 'FULL' ? 'FULL' : 'INCREMENTAL';
}

function isLocalCopyProblem(error: unknown): boolean {
  return error instanceof GitError && (error.failure === 'corrupt' || error.failure === 'failed');
}

async function finishSkipped(
  prisma: Prisma,
  recorder: RunRecorder,
  repository: Repository,
  sha: string,
  refs: RefsChange | null,
  archived: ArchiveOutcome | null,
  indexWarning: string | null,
  checkEtag: string | null = null,
): Promise<QueuedRun | null | undefined> {
  const now = new Date();
  const status = repository.status === 'FAILED' || repository.status === 'OUTDATED' || repository.status === 'SYNCING' ? 'SYNCED' : repository.status;
  const skipped = recorder.prepare('SKIPPED', { status, commitSha: sha, message: 'already at the upstream head' });
  const next = nextCheckAt({ now, lastChangedAt: changedAt(repository), consecutiveFailures: 0, lastWebhookAt: repository.lastWebhookAt });
  // One statement: a check pass over thousands of unchanged repositories writes one row pair each.
  const [row] = await prisma.$queryRaw<EndedRow[]>`
    WITH ${refsFirst(repository.id, refs, now)}
    run AS (
      UPDATE "SyncRun" SET
        status = 'SKIPPED', "activeSlot" = NULL, "toSha" = ${sha}, "filesChanged" = 0, "bytesReceived" = 0, "finishedAt" = ${now},
        phase = ${skipped.data.phase}::"SyncPhase", "phaseLog" = ${JSON.stringify(skipped.data.phaseLog)}::jsonb,
        warning = ${warnings(indexWarning, archived)}
      WHERE id = ${recorder.runId}::uuid
    )
    UPDATE "Repository" SET
      status = ${status}::"RepositoryStatus", "lastError" = NULL, "consecutiveFailures" = 0, "nextCheckAt" = ${next},
      ${archiveColumns(archived, false)},
      "refsDigest" = COALESCE(${refs?.digest ?? null}, "refsDigest"), "checkEtag" = COALESCE(${checkEtag}, "checkEtag"), "updatedAt" = ${now}
    WHERE id = ${repository.id}::uuid
    RETURNING ${queuedBehind(repository.id)}`;
  skipped.publish();
  return queuedRun(repository.id, row);
}

async function recordFailure(prisma: Prisma, recorder: RunRecorder, repository: Repository, message: string): Promise<void> {
  const now = new Date();
  const failures = repository.consecutiveFailures + 1;
  const next = nextCheckAt({ now, lastChangedAt: changedAt(repository), consecutiveFailures: failures, lastWebhookAt: repository.lastWebhookAt });
  const lastError = next
    ? message
    : `${message} (scheduled checks stopped after ${maxConsecutiveFailures} consecutive failures; a manual sync or a webhook resumes them)`;
  const failed = recorder.prepare('FAILED', { status: 'FAILED', message });
  await prisma.$transaction([
    prisma.repository.update({
      where: { id: repository.id },
      data: { status: 'FAILED', lastError, consecutiveFailures: failures, nextCheckAt: next },
    }),
    prisma.syncRun.update({
      where: { id: recorder.runId },
      data: { status: 'FAILED', activeSlot: null, error: message, finishedAt: now, ...failed.data },
    }),
  ]);
  failed.publish();
}

/**
 * The platform's answer for the tracked branch, when it says nothing changed:
 * a 304 to the stored ETag, or the SHA the copy is at. `checkEtag` holds
 * "<sha> <etag>", and the ETag is sent only while that SHA is still the
 * synced one (an ETag kept from an older commit would make a branch moved
 * back to it look unchanged). Null when the branch moved, or the API could
 * not answer: the git listing decides then, so a rate limit past its wait,
 * an outage or a missing branch never fails a check that git can make.
 */
async function unchangedUpstream(
  deps: RunDependencies,
  platform: GitPlatform,
  repository: Repository,
  signal: AbortSignal,
): Promise<{ checkEtag: string | null } | null> {
  const sha = repository.lastCommitSha!;
  const [etagSha, ...rest] = (repository.checkEtag ?? '').split(' ');
  const etag = etagSha === sha && rest.length ? rest.join(' ') : null;
  try {
    const head = await platform.branchHead(repository.name, repository.branch, etag, { signal });
    if (!head.changed) return { checkEtag: null };
    if (head.sha !== sha) return null;
    return { checkEtag: head.etag && head.etag !== etag ? `${sha} ${head.etag}` : null };
  } catch (error) {
    if (signal.aborted || !(error instanceof PlatformError)) throw error;
    deps.logger.info({ repositoryId: repository.id, err: error.message }, 'platform check failed; listing the remote with git instead');
    return null;
  }
}

function changedAt(repository: Repository): Date {
  return repository.lastChangedAt ?? repository.createdAt;
}
