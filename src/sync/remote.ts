import http from 'node:http';
import https from 'node:https';
import { GitError, type GitAuth } from './git.js';
import { registerSecret } from './redact.js';

export interface RemoteState {
  /** Branch the remote HEAD points at, when the server says. */
  defaultBranch: string | null;
  branches: Map<string, string>;
  tags: Map<string, string>;
}

export interface ReadRemoteOptions {
  auth?: GitAuth;
  signal?: AbortSignal;
  /** Limit for each HTTP exchange (connect, headers and body). */
  timeoutMs: number;
}

/** A ref listing bigger than this is refused rather than buffered. */
const maxListingBytes = 64 * 1024 * 1024;
const userAgent = 'git/2.39-repolens-sync';

/**
 * CHECK for plain git hosts: what `git ls-remote --symref <url> HEAD refs/heads/* refs/tags/*`
 * prints, asked over git's smart HTTP protocol from this process. Protocol v2 (capability
 * advertisement, then `ls-refs` limited to branches and tags), or the v0 advertisement when the
 * server only speaks that. No git process is spawned: on a server checking thousands of
 * repositories, the two processes per check (git, git-remote-https) were most of its own cost.
 * Same rules as the git calls: redirects are refused (the URL check never saw their target),
 * credentials go only to this URL, and no secret reaches an error message.
 */
export async function readRemote(url: string, options: ReadRemoteOptions): Promise<RemoteState> {
  const release = options.auth ? registerSecret(options.auth.password) : () => undefined;
  try {
    const base = url.replace(/\/+$/, '');
    const headers: Record<string, string> = { 'User-Agent': userAgent, 'Git-Protocol': 'version=2', Pragma: 'no-cache' };
    if (options.auth) {
      headers.Authorization = `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`;
    }
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
    const lines = readPktLines(advertisement);
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

async function listRefs(base: string, headers: Record<string, string>, options: ReadRemoteOptions): Promise<RemoteState> {
  const body = Buffer.concat([
    pkt('command=ls-refs\n'),
    pkt(`agent=${userAgent}\n`),
    Buffer.from('0001'),
    pkt('symrefs\n'),
    pkt('peel\n'),
    pkt('ref-prefix HEAD\n'),
    pkt('ref-prefix refs/heads/\n'),
    pkt('ref-prefix refs/tags/\n'),
    Buffer.from('0000'),
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
  const lines = readPktLines(listing);
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

// node:http rather than fetch: a lighter client (undici alone adds ~15 MB to the server), and
// kept-alive connections: the checks of many repositories on one host share a few sockets.
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }),
};

async function exchange(url: string, init: ExchangeRequest, contentType: string, options: ReadRemoteOptions): Promise<Buffer> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const target = new URL(url);
  const where = `${target.origin}${target.pathname}`;
  const client = target.protocol === 'https:' ? https : http;
  const agent = agents[target.protocol as keyof typeof agents];
  if (!agent) throw new GitError('failed', `listing the remote refs failed: unsupported protocol ${target.protocol}`);
  let response: http.IncomingMessage;
  try {
    response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = client.request(target, { method: init.method, headers: init.headers, agent, signal }, resolve);
      request.once('error', reject);
      request.end(init.body);
    });
  } catch (error) {
    throw networkError(error, options, timeout);
  }
  const status = response.statusCode ?? 0;
  const refuse = (failure: GitError['failure'], message: string) => {
    response.resume();
    return new GitError(failure, `listing the remote refs failed: ${message}`);
  };
  if (status >= 300 && status < 400) throw refuse('failed', `${where} redirects (HTTP ${status}); redirects are not followed`);
  if (status === 401 || status === 403) throw refuse('auth', `authentication failed for ${where} (HTTP ${status})`);
  if (status === 404) throw refuse('not-found', `repository not found at ${where} (HTTP 404)`);
  if (status < 200 || status >= 300) throw refuse(status >= 500 ? 'unreachable' : 'failed', `${where} answered HTTP ${status}`);
  if (!response.headers['content-type']?.startsWith(contentType)) {
    throw refuse('not-found', `${where} is not a git smart HTTP endpoint (repository not found)`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      if (size > maxListingBytes) {
        response.destroy();
        throw new GitError('failed', `listing the remote refs failed: the listing is larger than ${maxListingBytes} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof GitError) throw error;
    throw networkError(error, options, timeout);
  }
  return Buffer.concat(chunks);
}

function networkError(error: unknown, options: ReadRemoteOptions, timeout: AbortSignal): GitError {
  if (options.signal?.aborted) return new GitError('aborted', 'listing the remote refs was cancelled');
  if (timeout.aborted) return new GitError('timeout', `listing the remote refs timed out after ${options.timeoutMs} ms`);
  const { code, message } = error as { code?: string; message?: string };
  const detail = code ?? message ?? String(error);
  return new GitError('unreachable', `listing the remote refs failed: unable to access the remote (${detail})`);
}

function pkt(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from((payload.length + 4).toString(16).padStart(4, '0')), payload]);
}

interface PktLine {
  /** The payload without its trailing newline; absent for special packets. */
  text?: string;
  special?: 'flush' | 'delim' | 'response-end';
}

function readPktLines(data: Buffer): PktLine[] {
  const lines: PktLine[] = [];
  let offset = 0;
  while (offset < data.length) {
    const header = data.toString('latin1', offset, offset + 4);
    if (!/^[0-9a-f]{4}$/.test(header)) throw new GitError('failed', 'listing the remote refs failed: malformed response from the server');
    const length = parseInt(header, 16);
    if (length < 4) {
      lines.push({ special: length === 0 ? 'flush' : length === 1 ? 'delim' : 'response-end' });
      offset += 4;
      continue;
    }
    if (offset + length > data.length) throw new GitError('failed', 'listing the remote refs failed: truncated response from the server');
    const payload = data.toString('utf8', offset + 4, offset + length);
    if (payload.startsWith('ERR ')) throw new GitError('failed', `listing the remote refs failed: the server says: ${payload.slice(4).trim()}`);
    lines.push({ text: payload.replace(/\n$/, '') });
    offset += length;
  }
  return lines;
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
