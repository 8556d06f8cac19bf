import { PassThrough } from 'node:stream';
import { once } from 'node:events';
import { GitError, reportProgress, type Git, type GitAuth, type GitProgress } from './git.js';
import { registerSecret } from './redact.js';
import {
  delimPkt,
  flushPkt,
  networkFailure,
  openResponse,
  pkt,
  pktLength,
  requestHeaders,
  specialPkt,
  userAgent,
  type Exchange,
} from './smartHttp.js';

export interface FetchPackOptions {
  /** Repository whose object store receives the pack. */
  cwd: string;
  /** The commit to fetch: the head the CHECK saw. */
  want: string;
  /** Commits the copy has (its head): the server leaves out what they reach. */
  haves: string[];
  /** Commits whose parents the copy lacks (.git/shallow): the server must not count their history as had. */
  shallows?: string[];
  auth?: GitAuth;
  signal: AbortSignal;
  onProgress?: (progress: GitProgress) => void;
  /**
   * Told the pack bytes received so far, before they reach the copy: aborting `signal` from
   * here (a size limit) stops the fetch with nothing more written.
   */
  onReceived?: (bytes: number) => void;
}

export interface FetchedPack {
  objects: number;
  /** Pack bytes received (what git's "Receiving objects" line approximates). */
  bytesReceived: number;
}

const action = 'fetching';
/** Below this many objects a pack is exploded into loose objects, as git fetch does (transfer.unpackLimit). */
const unpackLimit = 100;

/**
 * The FETCH of an incremental sync for a repository that speaks protocol v2:
 * one `fetch` command over smart HTTP from this process, its pack streamed
 * into `git unpack-objects` (or `git index-pack --fix-thin` for big ones) in
 * the copy. `git fetch` would first ask for the capabilities again (a second
 * request) and run git-remote-https, a connectivity walk and auto-maintenance:
 * four processes here and two on the git host for what the CHECK already
 * knows. Nothing but objects is written: the checkout that follows moves the
 * branch, and fails (re-cloning the copy) if an object is missing.
 */
export async function fetchPack(git: Git, url: string, options: FetchPackOptions): Promise<FetchedPack> {
  const release = options.auth ? registerSecret(options.auth.password) : () => undefined;
  // The limits of git's own transfers: the whole fetch, and the longest silence of the server.
  const limits = git.transferLimits;
  const overall = AbortSignal.timeout(limits.timeoutMs);
  const stalled = new AbortController();
  let idle: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => stalled.abort(), limits.idleTimeoutMs);
  };
  const exchange: Exchange = {
    action,
    signal: AbortSignal.any([options.signal, overall, stalled.signal]),
    failure: (error) => {
      if (options.signal.aborted) return new GitError('aborted', `${action} was cancelled`);
      if (overall.aborted) return new GitError('timeout', `${action} timed out after ${limits.timeoutMs} ms`);
      if (stalled.signal.aborted) return new GitError('timeout', `${action} stalled: nothing received for ${limits.idleTimeoutMs} ms`);
      return networkFailure(action, error);
    },
  };
  const body = Buffer.concat([
    pkt('command=fetch\n'),
    pkt(`agent=${userAgent}\n`),
    delimPkt,
    pkt('thin-pack\n'),
    pkt('ofs-delta\n'),
    pkt(`want ${options.want}\n`),
    ...(options.shallows ?? []).map((sha) => pkt(`shallow ${sha}\n`)),
    ...options.haves.map((have) => pkt(`have ${have}\n`)),
    pkt('done\n'),
    flushPkt,
  ]);
  const unpacking = new AbortController();
  let unpacker = null as Promise<unknown> | null;
  const pack = new PassThrough();
  try {
    touch();
    const base = url.replace(/\/+$/, '');
    const response = await openResponse(
      `${base}/git-upload-pack`,
      {
        method: 'POST',
        headers: { ...requestHeaders(options.auth), 'Content-Type': 'application/x-git-upload-pack-request', Accept: 'application/x-git-upload-pack-result' },
        body,
      },
      'application/x-git-upload-pack-result',
      exchange,
    );
    let pending: Buffer = Buffer.alloc(0);
    let inPackfile = false;
    let finished = false;
    let header: Buffer = Buffer.alloc(0);
    let objects = 0;
    let bytesReceived = 0;

    const receivePackData = async (data: Buffer) => {
      bytesReceived += data.byteLength;
      options.onReceived?.(bytesReceived);
      options.signal.throwIfAborted();
      if (!unpacker) {
        header = Buffer.concat([header, data]);
        if (header.byteLength < 12) return;
        if (header.toString('latin1', 0, 4) !== 'PACK') throw new GitError('failed', `${action} failed: the server sent something that is not a pack`);
        objects = header.readUInt32BE(8);
        const command = objects < unpackLimit ? ['unpack-objects', '-q'] : ['index-pack', '--stdin', '--fix-thin'];
        unpacker = git.run(command, { cwd: options.cwd, signal: AbortSignal.any([options.signal, unpacking.signal]), stdin: pack });
        // Its failure is read when the pack ends; until then, a rejection must not go unhandled.
        unpacker.catch(() => undefined);
        data = header;
      }
      if (!pack.write(data)) {
        // git reads at its pace; it may also stop early (a bad pack), and then nothing drains.
        const stopped = unpacker.then(
          () => 'stopped',
          () => 'stopped',
        );
        const drained = once(pack, 'drain', { signal: exchange.signal }).then(() => 'drained');
        if ((await Promise.race([drained, stopped])) === 'stopped') {
          await unpacker;
          throw new GitError('failed', `${action} failed: git stopped reading the pack before its end`);
        }
      }
    };

    try {
      for await (const chunk of response as AsyncIterable<Buffer>) {
        touch();
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        let offset = 0;
        while (!finished && pending.length - offset >= 4) {
          const length = pktLength(pending, offset, action);
          if (length < 4) {
            offset += 4;
            if (specialPkt(length) === 'flush' && inPackfile) finished = true;
            continue;
          }
          if (pending.length - offset < length) break;
          const payload = pending.subarray(offset + 4, offset + length);
          offset += length;
          if (!inPackfile) {
            const text = payload.toString('utf8').replace(/\n$/, '');
            if (text.startsWith('ERR ')) throw new GitError('failed', `${action} failed: the server says: ${text.slice(4).trim()}`);
            if (text === 'packfile') inPackfile = true;
            continue;
          }
          const band = payload[0];
          if (band === 1) await receivePackData(payload.subarray(1));
          else if (band === 2) {
            if (options.onProgress) reportProgress(payload.toString('utf8', 1), options.onProgress);
          } else if (band === 3) {
            throw new GitError('failed', `${action} failed: the server says: ${payload.toString('utf8', 1).trim()}`);
          } else throw new GitError('failed', `${action} failed: malformed response from the server`);
        }
        // Past the final flush nothing is read; the rest of the answer (none, normally) is drained.
        pending = finished ? Buffer.alloc(0) : pending.subarray(offset);
      }
    } catch (error) {
      if (error instanceof GitError) throw error;
      throw exchange.failure(error);
    }
    if (!inPackfile) throw new GitError('failed', `${action} failed: the server's answer holds no pack`);
    if (!finished || !unpacker) throw new GitError('unreachable', `${action} failed: the server's answer ended before the pack did`);
    pack.end();
    await unpacker;
    return { objects, bytesReceived };
  } catch (error) {
    unpacking.abort();
    pack.destroy();
    await unpacker?.catch(() => undefined);
    throw error;
  } finally {
    clearTimeout(idle);
    release();
  }
}
