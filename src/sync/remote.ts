import { GitError } from './git.js';
import { registerSecret } from './redact.js';
import {
  delimPkt,
  flushPkt,
  networkFailure,
  openResponse,
  pkt,
  readBody,
  readPktLines,
  requestHeaders,
  userAgent,
  type Exchange,
  type PktLine,
  type SmartHttpOptions,
} from './smartHttp.js';

export interface RemoteState {
  /** Branch the remote HEAD points at, when the server says. */
  defaultBranch: string | null;
  branches: Map<string, string>;
  tags: Map<string, string>;
}

export type ReadRemoteOptions = SmartHttpOptions;

/** A ref listing bigger than this is refused rather than buffered. */
const maxListingBytes = 64 * 1024 * 1024;
const action = 'listing the remote refs';

/**
 * CHECK for plain git hosts: what `git ls-remote --symref <url> HEAD refs/heads/* refs/tags/*`
 * prints, asked over git's smart HTTP protocol from this process. Protocol v2 (capability
 * advertisement, then `ls-refs` limited to branches and tags), or the v0 advertisement when the
 * server only speaks that. No git process is spawned: on a server checking thousands of
 * repositories, the two processes per check (git, git-remote-https) were most of its own cost.
 * Transport rules (redirects, credentials, errors): smartHttp.ts.
 */
export async function readRemote(url: string, options: ReadRemoteOptions): Promise<RemoteState> {
  const release = options.auth ? registerSecret(options.auth.password) : () => undefined;
  try {
    const base = url.replace(/\/+$/, '');
    const headers = requestHeaders(options.auth);
    // A repository that answered protocol v2 before is asked `ls-refs` directly: one request
    // instead of two (protocol v2 over HTTP is stateless; the advertisement only lists capabilities).
    if (v2Endpoints.has(base)) {
      try {
        return await listRefs(base, headers, options);
      } catch (error) {
        if (error instanceof GitError && ['auth', 'timeout', 'aborted', 'unreachable'].includes(error.failure)) throw error;
        // Anything else (the server changed, or no longer speaks v2): the full exchange below.
        v2Endpoints.delete(base);
      }
    }
    const advertisement = await exchange(`${base}/info/refs?service=git-upload-pack`, { method: 'GET', headers }, 'application/x-git-upload-pack-advertisement', options);
    const lines = readPktLines(advertisement, action);
    // Smart HTTP starts with "# service=git-upload-pack" and a flush.
    if (lines[0]?.text?.startsWith('# service=')) lines.splice(0, lines[1]?.special === 'flush' ? 2 : 1);
    if (lines[0]?.text !== 'version 2') return parseV0Advertisement(lines);
    const state = await listRefs(base, headers, options);
    rememberV2(base);
    return state;
  } finally {
    release();
  }
}

/** Repositories (URL without trailing slash) known to answer protocol v2; bounded, oldest forgotten first. */
const v2Endpoints = new Set<string>();
const maxRememberedEndpoints = 100_000;

function rememberV2(base: string): void {
  v2Endpoints.delete(base);
  v2Endpoints.add(base);
  if (v2Endpoints.size > maxRememberedEndpoints) v2Endpoints.delete(v2Endpoints.values().next().value!);
}

/** Whether the repository answered protocol v2 to this process (its pack can then be fetched without git's transport). */
export function speaksProtocolV2(url: string): boolean {
  return v2Endpoints.has(url.replace(/\/+$/, ''));
}

async function listRefs(base: string, headers: Record<string, string>, options: ReadRemoteOptions): Promise<RemoteState> {
  const body = Buffer.concat([
    pkt('command=ls-refs\n'),
    pkt(`agent=${userAgent}\n`),
    delimPkt,
    pkt('symrefs\n'),
    pkt('peel\n'),
    pkt('ref-prefix HEAD\n'),
    pkt('ref-prefix refs/heads/\n'),
    pkt('ref-prefix refs/tags/\n'),
    flushPkt,
  ]);
  const listing = await exchange(
    `${base}/git-upload-pack`,
    {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/x-git-upload-pack-request', Accept: 'application/x-git-upload-pack-result' },
      body,
    },
    'application/x-git-upload-pack-result',
    options,
  );
  const lines = readPktLines(listing, action);
  // A complete listing ends with a flush: anything else (an empty or cut-off answer) is not "no refs".
  if (lines.at(-1)?.special !== 'flush' || lines.some((line) => line.special && line !== lines.at(-1))) {
    throw new GitError('failed', 'listing the remote refs failed: incomplete ls-refs answer from the server');
  }
  return parseV2Listing(lines);
}

interface ExchangeRequest {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: Buffer;
}

async function exchange(url: string, init: ExchangeRequest, contentType: string, options: ReadRemoteOptions): Promise<Buffer> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const context: Exchange = {
    action,
    signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
    failure: (error) => {
      if (options.signal?.aborted) return new GitError('aborted', `${action} was cancelled`);
      if (timeout.aborted) return new GitError('timeout', `${action} timed out after ${options.timeoutMs} ms`);
      return networkFailure(action, error);
    },
  };
  const response = await openResponse(url, init, contentType, context);
  return readBody(response, maxListingBytes, context);
}

const objectId = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/** ls-refs: "<oid> <ref>[ symref-target:<target>][ peeled:<oid>]" per line. */
function parseV2Listing(lines: PktLine[]): RemoteState {
  const state: RemoteState = { defaultBranch: null, branches: new Map(), tags: new Map() };
  for (const { text } of lines) {
    if (text === undefined) continue;
    const [oid, ref, ...attributes] = text.split(' ');
    if (!oid || !ref) continue;
    const symrefTarget = attributes.find((attribute) => attribute.startsWith('symref-target:'))?.slice('symref-target:'.length);
    const peeled = attributes.find((attribute) => attribute.startsWith('peeled:'))?.slice('peeled:'.length);
    if (ref === 'HEAD') {
      if (symrefTarget?.startsWith('refs/heads/')) state.defaultBranch = symrefTarget.slice('refs/heads/'.length);
      continue;
    }
    if (!objectId.test(oid)) continue; // "unborn" entries
    addRef(state, ref, oid);
    if (peeled && objectId.test(peeled)) addRef(state, `${ref}^{}`, peeled);
  }
  return state;
}

/** v0: "<oid> <ref>\0<capabilities>" first (capabilities name HEAD's target), then "<oid> <ref>". */
function parseV0Advertisement(lines: PktLine[]): RemoteState {
  const state: RemoteState = { defaultBranch: null, branches: new Map(), tags: new Map() };
  for (const { text } of lines) {
    if (text === undefined) continue;
    const [entry = '', capabilities] = text.split('\0');
    const symref = /(?:^| )symref=HEAD:refs\/heads\/(\S+)/.exec(capabilities ?? '');
    if (symref?.[1]) state.defaultBranch = symref[1];
    const [oid, ref] = entry.split(' ');
    if (!oid || !ref || !objectId.test(oid) || ref === 'capabilities^{}') continue;
    addRef(state, ref, oid);
  }
  return state;
}

function addRef(state: RemoteState, ref: string, oid: string): void {
  if (ref.startsWith('refs/heads/')) state.branches.set(ref.slice('refs/heads/'.length), oid);
  else if (ref.startsWith('refs/tags/')) {
    // A peeled tag (^{}) names the commit; it wins over the tag object.
    const name = ref.slice('refs/tags/'.length).replace(/\^\{\}$/, '');
    if (ref.endsWith('^{}') || !state.tags.has(name)) state.tags.set(name, oid);
  }
}
