import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { WorkingCopies } from '../storage/workingCopies.js';
import type { GitPlatform } from '../providers/platform.js';
import { DeltaUnavailable, shallowCommits, writeDeltaObjects } from './delta.js';
import { fetchPack } from './packFetch.js';
import { speaksProtocolV2 } from './remote.js';
import { formatBytes, GitError, parseReceivedBytes, parseUpdatedFiles, type Git, type GitAuth, type GitProgress } from './git.js';

export interface StrategyInput {
  repositoryId: string;
  url: string;
  /** Branch to sync; null: the remote default branch (a clone without a CHECK). */
  branch: string | null;
  /** Head the CHECK saw (null when it did not list the remote); a strategy may end at a newer one. */
  remoteSha: string | null;
  /** Head of the copy before this run, when known. */
  fromSha: string | null;
  /** Commit the working copy's HEAD names (null when unreadable): what a fetch says it has. */
  localHead: string | null;
  /** The copy was left mid-update: untracked leftovers are removed too. */
  repair: boolean;
  auth?: GitAuth;
  signal: AbortSignal;
  onTransferProgress: (progress: GitProgress) => void;
  /** Called once the transfer is done and the copy is about to change. */
  onApply: () => Promise<void>;
}

export interface StrategyResult {
  head: string;
  branch: string;
  filesChanged: number;
  bytesReceived: number;
}

/** What a DELTA needs beside the strategy input: the platform's API and its name for the repository. */
export interface DeltaSource {
  platform: GitPlatform;
  name: string;
}

export interface Strategies {
  full(input: StrategyInput): Promise<StrategyResult>;
  incremental(input: StrategyInput): Promise<StrategyResult>;
  /** DELTA: throws DeltaUnavailable, having changed nothing the copy uses, when the API cannot give the head exactly. */
  delta(input: StrategyInput, source: DeltaSource): Promise<StrategyResult>;
}

export interface StrategyOptions {
  /** REPOLENS_MAX_REPO_BYTES: a transfer that takes the repository past this many bytes is stopped (undefined: no limit). */
  maxRepoBytes?: number | undefined;
}

/** A sync stopped at REPOLENS_MAX_REPO_BYTES: not a problem of the copy (no re-clone), and its message is the run's error. */
export class RepositoryTooLarge extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RepositoryTooLarge';
  }
}

/** REPOLENS_MAX_REPO_BYTES applied to one transfer (sizeLimit). */
interface SizeLimit {
  /** The strategy input whose transfers stop at the limit: its signal is aborted then. */
  input: StrategyInput;
  /** Bytes the transfer has received so far; past the limit, it is stopped. */
  received(bytes: number): void;
  /** Measures the copy again: what a transfer wrote without saying how much. */
  measure(): Promise<void>;
  /** The transfer's total, once it is done (git says how much it got only every second): past the limit, throws the refusal. */
  finished(bytes: number): void;
  /** What a failed transfer throws: the refusal when the limit stopped it, else its own error. */
  failure(error: unknown): unknown;
}

/** Free bytes below which a failed write is put down to a full disk. */
const diskFullBytes = 1024 * 1024;

/**
 * A git that ran out of disk often says only "unable to write file" or
 * "invalid index-pack output": when the filesystem holding `folder` is (all
 * but) full as git fails, the error says so, in the words the OS uses.
 */
async function diskFullExplained(error: unknown, folder: string): Promise<unknown> {
  if (!(error instanceof GitError) || error.failure === 'disk-full') return error;
  const free = await statfs(path.dirname(folder)).then(
    (stats) => stats.bavail * stats.bsize,
    () => null,
  );
  if (free === null || free >= diskFullBytes) return error;
  return new GitError('disk-full', `${error.message} (No space left on device: ${formatBytes(free)} free on the disk that holds the working copies)`);
}

export function createStrategies(git: Git, copies: WorkingCopies, options: StrategyOptions = {}): Strategies {
  const remoteOptions = (input: StrategyInput) => ({
    url: input.url,
    signal: input.signal,
    onProgress: input.onTransferProgress,
    ...(input.auth ? { auth: input.auth } : {}),
  });

  async function countChanges(cwd: string, fromSha: string | null, head: string, signal: AbortSignal): Promise<number> {
    if (fromSha && fromSha !== head) {
      const diff = await git
        .run(['diff', '--no-renames', '--name-only', '-z', fromSha, head, '--'], { cwd, signal })
        .catch(() => null);
      if (diff) return diff.stdout.split('\0').filter(Boolean).length;
    }
    if (fromSha === head) return 0;
    const { stdout } = await git.run(['ls-files', '-z'], { cwd, signal });
    return stdout.split('\0').filter(Boolean).length;
  }

  return {
    /** Fresh clone beside the current copy, swapped in only when complete. */
    async full(original) {
      const limit = await sizeLimit(original, null, 'received');
      const input = limit.input;
      const temporary = copies.newTemporaryPath(input.repositoryId);
      try {
        const branchArgs = input.branch ? ['--branch', input.branch] : [];
        const { stderr } = await git.run(
          ['clone', '--progress', '--no-tags', '--single-branch', ...branchArgs, '--', input.url, temporary],
          remoteOptions(input),
        );
        limit.finished(parseReceivedBytes(stderr));
        // Read from the clone's files: two git processes fewer per clone.
        const cloned = await copies.headOf(temporary);
        const head = cloned?.sha ?? (await git.run(['rev-parse', 'HEAD'], { cwd: temporary, signal: input.signal })).stdout.trim();
        const branch =
          input.branch ??
          cloned?.branch ??
          (await git.run(['symbolic-ref', '--short', 'HEAD'], { cwd: temporary, signal: input.signal })).stdout.trim();
        // A first clone changed every file it wrote; a re-clone is compared with the previous head.
        const filesChanged =
          (input.fromSha === null ? parseUpdatedFiles(stderr) : null) ?? (await countChanges(temporary, input.fromSha, head, input.signal));
        await input.onApply();
        await copies.swapIn(input.repositoryId, temporary);
        return { head, branch, filesChanged, bytesReceived: parseReceivedBytes(stderr) };
      } catch (error) {
        // Before the discard frees the space the clone took.
        const explained = await diskFullExplained(error, copies.pathOf(input.repositoryId));
        await copies.discard(temporary);
        throw limit.failure(explained);
      }
    },

    /**
     * Fetch the head's objects (packFetch.ts over protocol v2, else git
     * fetch), then move the branch and working tree to it. The syncing marker
     * stays until the tree is complete, so a kill in between leaves a copy that
     * the next run repairs.
     */
    async incremental(original) {
      const { branch, remoteSha } = original;
      if (!branch || !remoteSha) throw new Error('an incremental sync needs the head the CHECK saw');
      const cwd = copies.pathOf(original.repositoryId);
      if (original.repair) await copies.removeStaleLocks(original.repositoryId);
      const limit = await sizeLimit(original, cwd, 'the fetch received');
      const input = limit.input;
      let head = remoteSha;
      let bytesReceived: number | null = null;
      try {
        if (speaksProtocolV2(input.url)) {
          const haves = [...new Set([input.localHead, input.fromSha])].filter((sha): sha is string => sha !== null);
          try {
            ({ bytesReceived } = await fetchPack(git, input.url, {
              cwd,
              want: remoteSha,
              haves,
              shallows: await shallowCommits(cwd),
              signal: input.signal,
              onProgress: input.onTransferProgress,
              // Counted before each piece reaches the copy: a refused pack is never complete in it.
              onReceived: limit.received,
              ...(input.auth ? { auth: input.auth } : {}),
            }));
            await copies.setTrackingRef(input.repositoryId, branch, remoteSha);
          } catch (error) {
            // A server that refuses (or garbles) this fetch still gets git's own below.
            if (!(error instanceof GitError) || error.failure !== 'failed' || input.signal.aborted) throw error;
          }
        }
        if (bytesReceived === null) {
          ({ head, bytesReceived } = await unlocked(input, () => gitFetch(input, cwd, branch, remoteSha)));
          // A fetch of fewer objects than fetch.unpackLimit is stored loose, and git prints no byte count for it.
          await limit.measure();
        }
        limit.finished(bytesReceived);
      } catch (error) {
        throw limit.failure(await diskFullExplained(error, cwd));
      }
      await input.onApply();
      const filesChanged = await checkOut(input, cwd, branch, head).catch(async (error: unknown) => {
        throw await diskFullExplained(error, cwd);
      });
      return { head, branch, filesChanged, bytesReceived };
    },

    /**
     * The head's objects from the platform's API (delta.ts), then the same
     * checkout as an incremental sync. Only a healthy copy at the last synced
     * commit qualifies: the comparison starts from it.
     */
    async delta(original, source) {
      const { branch, remoteSha, fromSha } = original;
      if (!branch || !remoteSha || !fromSha) throw new Error('a DELTA needs the synced commit and the head the CHECK saw');
      const cwd = copies.pathOf(original.repositoryId);
      const limit = await sizeLimit(original, cwd, "the platform's API sent");
      const input = limit.input;
      const objects = await writeDeltaObjects(git, {
        ...source,
        cwd,
        base: fromSha,
        head: remoteSha,
        signal: input.signal,
        onProgress: (done, total) => input.onTransferProgress({ stage: 'Downloading files', fraction: total ? done / total : 1 }),
        onReceived: limit.received,
      }).catch((error: unknown) => {
        // git refusing what the API described (a path its checks reject) is one more inconsistency.
        if (error instanceof GitError && !input.signal.aborted) throw new DeltaUnavailable(error.message);
        // Not a DeltaUnavailable when the limit stopped it: a git fetch would only pass the limit too.
        throw limit.failure(error);
      });
      limit.finished(objects.bytesReceived);
      await copies.setTrackingRef(input.repositoryId, branch, remoteSha);
      await input.onApply();
      await checkOut(input, cwd, branch, remoteSha).catch(async (error: unknown) => {
        throw await diskFullExplained(error, cwd);
      });
      return { head: remoteSha, branch, filesChanged: objects.filesChanged, bytesReceived: objects.bytesReceived };
    },
  };

  /**
   * REPOLENS_MAX_REPO_BYTES for one transfer: the bytes of the objects the copy
   * at `cwd` holds (none for a clone) plus those received (`receiving` names
   * them in the refusal). Passing the limit
   * aborts the transfer's signal, so git is killed or the request cut at once,
   * and the strategy fails with the refusal rather than the cancellation it
   * caused. Without a limit the input is used as it is and nothing is measured.
   */
  async function sizeLimit(input: StrategyInput, cwd: string | null, receiving: string): Promise<SizeLimit> {
    const limit = options.maxRepoBytes;
    if (limit === undefined) return { input, received: () => undefined, measure: async () => undefined, finished: () => undefined, failure: (error) => error };
    const held = cwd === null ? 0 : await objectBytes(cwd, input.signal);
    const refusal = (bytes: number) => {
      const copy = cwd === null ? null : `the working copy holds ${formatBytes(held)}`;
      const transfer = bytes > 0 && held < limit ? `${receiving} more than ${formatBytes(limit - held)}` : null;
      const what = [copy, transfer].filter(Boolean).join(' and ');
      return new RepositoryTooLarge(`repository is larger than REPOLENS_MAX_REPO_BYTES (${what}; the limit is ${formatBytes(limit)})`);
    };
    if (held > limit) throw refusal(0);
    const stop = new AbortController();
    const received = (bytes: number) => {
      if (held + bytes > limit && !stop.signal.aborted) stop.abort(refusal(bytes));
    };
    return {
      input: {
        ...input,
        signal: AbortSignal.any([input.signal, stop.signal]),
        onTransferProgress: (progress) => {
          if (progress.bytes !== undefined) received(progress.bytes);
          input.onTransferProgress(progress);
        },
      },
      received,
      async measure() {
        if (cwd !== null) received((await objectBytes(cwd, input.signal)) - held);
      },
      finished(bytes) {
        received(bytes);
        if (stop.signal.aborted) throw stop.signal.reason;
      },
      // A cancelled run stays cancelled, whatever the limit did meanwhile.
      failure: (error) => (stop.signal.aborted && !input.signal.aborted ? stop.signal.reason : error),
    };
  }

  /** Bytes of the copy's objects, loose and packed (`git count-objects -v` counts KiB): what a fetch adds to. */
  async function objectBytes(cwd: string, signal: AbortSignal): Promise<number> {
    const { stdout } = await git.run(['count-objects', '-v'], { cwd, signal });
    const kib = (field: string) => Number(new RegExp(`^${field}: (\\d+)$`, 'm').exec(stdout)?.[1] ?? 0);
    return (kib('size') + kib('size-pack')) * 1024;
  }

  /**
   * Moves the branch and the work tree to `head`, whose objects are in the
   * copy; returns how many files changed. The syncing marker stays until the
   * tree is complete, so a kill in between leaves a copy the next run repairs.
   */
  async function checkOut(input: StrategyInput, cwd: string, branch: string, head: string): Promise<number> {
    await copies.markSyncing(input.repositoryId);
    const checkout = await unlocked(input, () => git.run(['checkout', '--force', '--progress', '-B', branch, head], { cwd, signal: input.signal })).catch(
      async (error: unknown) => {
        // A checkout that failed part-way (a full disk) leaves files of both commits, while HEAD still names the old
        // one: the tree goes back to it (the partial files first, which frees the space), so the copy is the last
        // good one again. Killed or cut short, the syncing marker stays and the next run repairs the copy.
        if (!input.signal.aborted) await restoreWorkTree(input.repositoryId, cwd).catch(() => undefined);
        throw error;
      },
    );
    if (input.repair) await git.run(['clean', '-ffdq'], { cwd, signal: input.signal });
    // The checkout's count is the upstream change, unless it also repaired local damage.
    const filesChanged =
      (input.repair || input.fromSha === head ? null : parseUpdatedFiles(checkout.stderr)) ?? (await countChanges(cwd, input.fromSha, head, input.signal));
    await copies.clearSyncing(input.repositoryId);
    return filesChanged;
  }

  /** The work tree and index back at the commit HEAD names, nothing untracked; the syncing marker goes. */
  async function restoreWorkTree(repositoryId: string, cwd: string): Promise<void> {
    await copies.removeStaleLocks(repositoryId);
    await git.run(['clean', '-ffdq'], { cwd });
    await git.run(['reset', '--hard', '--quiet', 'HEAD'], { cwd });
    await copies.clearSyncing(repositoryId);
  }

  /**
   * Runs a git step in the copy; when it fails there and lock files left by a killed git are
   * found, removes them (no other git works in this copy: one run per repository) and runs it
   * again. Looking for locks only after a failure spares every sync a walk through .git.
   */
  async function unlocked<T>(input: StrategyInput, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      if (!(error instanceof GitError) || !['failed', 'corrupt'].includes(error.failure) || input.signal.aborted) throw error;
      if ((await copies.removeStaleLocks(input.repositoryId)).length === 0) throw error;
      return step();
    }
  }

  /**
   * `git fetch` into the remote-tracking ref (servers that only speak protocol v0, or refused
   * the fetch from this process): the head by id, else the branch by name.
   */
  async function gitFetch(input: StrategyInput, cwd: string, branch: string, remoteSha: string): Promise<{ head: string; bytesReceived: number }> {
    const tracking = `refs/remotes/origin/${branch}`;
    const fetch = (source: string) =>
      git.run(['fetch', '--progress', '--no-tags', '--no-write-fetch-head', input.url, `+${source}:${tracking}`], {
        ...remoteOptions(input),
        cwd,
      });
    try {
      // The CHECK named the head: asking for it by id spares the second ref listing.
      const { stderr } = await fetch(remoteSha);
      return { head: remoteSha, bytesReceived: parseReceivedBytes(stderr) };
    } catch (error) {
      // Servers speaking only protocol v0 may refuse an unadvertised object id.
      if (!(error instanceof GitError) || error.failure !== 'failed' || input.signal.aborted) throw error;
      const { stderr } = await fetch(`refs/heads/${branch}`);
      const head = (await git.run(['rev-parse', '--verify', `${tracking}^{commit}`], { cwd, signal: input.signal })).stdout.trim();
      return { head, bytesReceived: parseReceivedBytes(stderr) };
    }
  }
}
