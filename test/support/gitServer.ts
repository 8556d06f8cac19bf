import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';

export type Fault =
  | { kind: 'status'; status: number }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'trickle'; bytesPerSecond: number }
  /** Upload-pack answers break off (connection reset) after this many body bytes. */
  | { kind: 'cut'; afterBytes: number }
  /** The server ignores the Git-Protocol header: it speaks protocol v0 only, like older hosts. */
  | { kind: 'protocol-v0' };

export interface GitServerAuth {
  username: string;
  password: string;
  /** Which repositories need credentials; all of them when omitted. */
  repos?: (name: string) => boolean;
}

export interface GitServerOptions {
  /** Folder of bare repositories; a fresh temporary folder (removed on close) when omitted. */
  root?: string;
  auth?: GitServerAuth;
  /** Initial faults by repository name (`'*'` = every repository). */
  faults?: Record<string, Fault>;
}

export interface RepoStats {
  /** Every HTTP request for the repository, including those refused by auth or answered by a fault. */
  requests: number;
  infoRefs: number;
  lsRefs: number;
  /** Upload-pack requests asking for objects; each stateless negotiation round counts. */
  fetches: number;
  /** Response body bytes produced by git http-backend. */
  bytesSent: number;
}

export interface GitServer {
  readonly url: string;
  readonly root: string;
  readonly stats: ReadonlyMap<string, RepoStats>;
  /** Every Authorization header received, in order, whether or not the repository needed it. */
  readonly authorizations: readonly { repo: string; value: string }[];
  repoUrl(name: string): string;
  /** Stats of one repository (zeros if it was never requested). */
  repoStats(name: string): RepoStats;
  totalFetches(): number;
  /** Forgets stats and recorded Authorization headers. */
  resetStats(): void;
  setFault(name: string, fault: Fault | null): void;
  close(): Promise<void>;
}

type Command = 'ls-refs' | 'fetch';

const REPO_PATH = /^\/(.+?)\.git(\/.*)?$/;
const PEEK_LIMIT = 64 * 1024;
const TRICKLE_TICKS_PER_SECOND = 20;

let backendPath: Promise<string> | undefined;

/** Calling the CGI directly saves the `git` wrapper exec on every request. */
function httpBackend(): Promise<string> {
  backendPath ??= promisify(execFile)('git', ['--exec-path']).then(({ stdout }) =>
    join(stdout.trim(), 'git-http-backend'),
  );
  return backendPath;
}

export async function startGitServer(options: GitServerOptions = {}): Promise<GitServer> {
  const ownsRoot = options.root === undefined;
  const root = options.root ?? (await mkdtemp(join(tmpdir(), 'repolens-git-')));
  const backend = await httpBackend();
  const stats = new Map<string, RepoStats>();
  const authorizations: { repo: string; value: string }[] = [];
  const faults = new Map<string, Fault>(Object.entries(options.faults ?? {}));
  const children = new Set<ChildProcess>();
  const closing = new AbortController();

  const zero = (): RepoStats => ({ requests: 0, infoRefs: 0, lsRefs: 0, fetches: 0, bytesSent: 0 });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = REPO_PATH.exec(decodeURIComponent(url.pathname));
    if (!match?.[1]) {
      res.writeHead(404).end();
      return;
    }
    const name = match[1];
    const rest = match[2] ?? '';
    const counters = stats.get(name) ?? zero();
    stats.set(name, counters);
    counters.requests++;

    const authorization = req.headers.authorization;
    if (authorization !== undefined) authorizations.push({ repo: name, value: authorization });
    const auth = options.auth;
    let remoteUser: string | undefined;
    if (auth && (auth.repos?.(name) ?? true)) {
      const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
      if (authorization !== expected) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end();
        return;
      }
      remoteUser = auth.username;
    }

    const fault = faults.get(name) ?? faults.get('*');
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'Content-Type': 'text/plain' }).end(`fault ${fault.status}\n`);
      return;
    }
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'delay') await sleep(fault.ms, undefined, { signal: closing.signal });

    const isPackRequest = req.method === 'POST' && rest === '/git-upload-pack';
    if (req.method === 'GET' && rest === '/info/refs') counters.infoRefs++;
    const encoding = req.headers['content-encoding'];
    if (isPackRequest) {
      watchCommand(req, encoding === 'gzip' || encoding === 'x-gzip', (command) => {
        if (command === 'ls-refs') counters.lsRefs++;
        else counters.fetches++;
      });
    }

    const child = spawn(backend, [], {
      // Own process group, so killing it also stops the upload-pack it started.
      detached: true,
      stdio: ['pipe', 'pipe', 'ignore'],
      env: {
        PATH: process.env.PATH,
        HOME: root,
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        GATEWAY_INTERFACE: 'CGI/1.1',
        SERVER_PROTOCOL: 'HTTP/1.1',
        REQUEST_METHOD: req.method,
        PATH_INFO: `/${name}.git${rest}`,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'],
        CONTENT_LENGTH: req.headers['content-length'],
        HTTP_CONTENT_ENCODING: encoding,
        GIT_PROTOCOL: fault?.kind === 'protocol-v0' ? undefined : header(req, 'git-protocol'),
        REMOTE_USER: remoteUser,
        REMOTE_ADDR: req.socket.remoteAddress,
      },
    });
    children.add(child);
    child.on('close', () => children.delete(child));
    child.on('error', () => undefined);
    // The CGI may exit before reading the whole body (e.g. on a bad request).
    child.stdin.on('error', () => undefined);
    req.pipe(child.stdin);

    const trickle = isPackRequest && fault?.kind === 'trickle' ? fault.bytesPerSecond : undefined;
    const cutAfter = isPackRequest && fault?.kind === 'cut' ? fault.afterBytes : undefined;
    try {
      await pipeline(
        child.stdout,
        (source: AsyncIterable<Buffer>) => cgiResponse(source, res, counters, trickle, closing.signal, cutAfter),
        res,
      );
    } catch (error) {
      killGroup(child);
      throw error;
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent && !res.destroyed) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    root,
    stats,
    authorizations,
    repoUrl: (name) => `${url}/${name}.git`,
    repoStats: (name) => ({ ...(stats.get(name) ?? zero()) }),
    totalFetches: () => [...stats.values()].reduce((sum, s) => sum + s.fetches, 0),
    resetStats: () => {
      stats.clear();
      authorizations.length = 0;
    },
    setFault: (name, fault) => {
      if (fault) faults.set(name, fault);
      else faults.delete(name);
    },
    close: async () => {
      closing.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const child of children) killGroup(child);
      await closed;
      if (ownsRoot) await rm(root, { recursive: true, force: true });
    },
  };
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Parses the CGI header block onto `res`, then yields the body (throttled when trickling). */
async function* cgiResponse(
  source: AsyncIterable<Buffer>,
  res: ServerResponse,
  counters: RepoStats,
  bytesPerSecond: number | undefined,
  signal: AbortSignal,
  cutAfter?: number,
): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  let sent = 0;
  for await (const chunk of source) {
    let body = chunk;
    if (head) {
      head = Buffer.concat([head, chunk]);
      const end = /\r?\n\r?\n/.exec(head.toString('latin1'));
      if (!end) continue;
      writeCgiHead(res, head.toString('latin1', 0, end.index));
      body = head.subarray(end.index + end[0].length);
      head = undefined;
    }
    if (cutAfter !== undefined && sent + body.length > cutAfter) {
      yield body.subarray(0, Math.max(0, cutAfter - sent));
      throw new Error('fault: answer cut off');
    }
    sent += body.length;
    counters.bytesSent += body.length;
    if (bytesPerSecond === undefined) {
      if (body.length > 0) yield body;
      continue;
    }
    const step = Math.max(1, Math.floor(bytesPerSecond / TRICKLE_TICKS_PER_SECOND));
    for (let offset = 0; offset < body.length; offset += step) {
      const slice = body.subarray(offset, offset + step);
      yield slice;
      await sleep((1000 * slice.length) / bytesPerSecond, undefined, { signal });
    }
  }
  if (head) res.writeHead(502);
}

function writeCgiHead(res: ServerResponse, block: string): void {
  let status = 200;
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else res.appendHeader(key, value);
  }
  res.writeHead(status);
}

/** Peeks at the first pkt-line of an upload-pack request while the original bytes stream on. */
function watchCommand(
  req: IncomingMessage,
  gzip: boolean,
  onCommand: (command: Command) => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    size += chunk.length;
    const verdict = classify(Buffer.concat(chunks), gzip);
    if (verdict === 'pending' && size < PEEK_LIMIT) return;
    req.off('data', onData);
    if (verdict === 'ls-refs' || verdict === 'fetch') onCommand(verdict);
  };
  req.on('data', onData);
}

function classify(prefix: Buffer, gzip: boolean): Command | 'pending' | 'other' {
  let data = prefix;
  if (gzip) {
    try {
      // Sync flush lets a truncated gzip stream yield what it has decoded so far.
      data = gunzipSync(prefix, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch {
      return 'pending';
    }
  }
  if (data.length < 4) return 'pending';
  const length = Number.parseInt(data.toString('latin1', 0, 4), 16);
  if (!(length > 4)) return 'other';
  const end = Math.min(length, 4 + 'command=ls-refs'.length);
  if (data.length < end) return 'pending';
  const line = data.toString('latin1', 4, end);
  if (line.startsWith('command=ls-refs')) return 'ls-refs';
  if (line.startsWith('command=fetch') || line.startsWith('want ')) return 'fetch';
  return 'other';
}
