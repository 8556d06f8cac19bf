import http from 'node:http';
import https from 'node:https';
import { GitError, type GitAuth } from './git.js';

/**
 * The client side of git's smart HTTP transport shared by the ref listing
 * (remote.ts) and the pack transfer (packFetch.ts): requests, pkt-lines and
 * the error rules of our git calls. Redirects are refused (the URL check never
 * saw their target), credentials go only to this URL in an Authorization
 * header, and no secret reaches an error message.
 */

export const userAgent = 'git/2.39-repolens-sync';

export interface SmartHttpOptions {
  auth?: GitAuth;
  signal?: AbortSignal;
  /** Limit of each HTTP exchange (connect, headers and body). */
  timeoutMs: number;
}

/** What a request is for, in error messages: "listing the remote refs failed: …". */
export interface Exchange {
  action: string;
  /** Aborts the request: the caller's cancellation and its time limits. */
  signal: AbortSignal;
  /** The GitError for a network failure or an abort, told apart by the caller. */
  failure(error: unknown): GitError;
}

export function requestHeaders(auth: GitAuth | undefined): Record<string, string> {
  const headers: Record<string, string> = { 'User-Agent': userAgent, 'Git-Protocol': 'version=2', Pragma: 'no-cache' };
  if (auth) headers.Authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  return headers;
}

// node:http rather than fetch: a lighter client (undici alone adds ~15 MB to the server), and
// kept-alive connections: the syncs of many repositories on one host share a few sockets.
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }),
};

export interface SmartHttpRequest {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: Buffer;
}

/** Sends a request; resolves with a 2xx response of the expected content type, else a classified GitError. */
export async function openResponse(url: string, init: SmartHttpRequest, contentType: string, exchange: Exchange): Promise<http.IncomingMessage> {
  const target = new URL(url);
  const where = `${target.origin}${target.pathname}`;
  const client = target.protocol === 'https:' ? https : http;
  const agent = agents[target.protocol as keyof typeof agents];
  if (!agent) throw new GitError('failed', `${exchange.action} failed: unsupported protocol ${target.protocol}`);
  let response: http.IncomingMessage | undefined;
  for (let attempt = 0; !response; attempt++) {
    let reused = false;
    try {
      response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const request = client.request(target, { method: init.method, headers: init.headers, agent, signal: exchange.signal }, resolve);
        request.once('socket', () => (reused = request.reusedSocket));
        request.once('error', reject);
        request.end(init.body);
      });
    } catch (error) {
      // A kept-alive socket the server closed as it was reused (its idle timeout): sent again once on a new
      // one, as Node's documentation advises. Every smart-HTTP request here reads, so it is safe to repeat.
      const code = (error as { code?: string }).code;
      if (reused && attempt === 0 && (code === 'ECONNRESET' || code === 'EPIPE') && !exchange.signal.aborted) continue;
      throw exchange.failure(error);
    }
  }
  const status = response.statusCode ?? 0;
  const refuse = (failure: GitError['failure'], message: string) => {
    response.resume();
    return new GitError(failure, `${exchange.action} failed: ${message}`);
  };
  if (status >= 300 && status < 400) throw refuse('failed', `${where} redirects (HTTP ${status}); redirects are not followed`);
  if (status === 401 || status === 403) throw refuse('auth', `authentication failed for ${where} (HTTP ${status})`);
  if (status === 404) throw refuse('not-found', `repository not found at ${where} (HTTP 404)`);
  if (status < 200 || status >= 300) throw refuse(status >= 500 ? 'unreachable' : 'failed', `${where} answered HTTP ${status}`);
  if (!response.headers['content-type']?.startsWith(contentType)) {
    throw refuse('not-found', `${where} is not a git smart HTTP endpoint (repository not found)`);
  }
  return response;
}

/** A whole response body, refused past `maxBytes`. */
export async function readBody(response: http.IncomingMessage, maxBytes: number, exchange: Exchange): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      if (size > maxBytes) {
        response.destroy();
        throw new GitError('failed', `${exchange.action} failed: the answer is larger than ${maxBytes} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof GitError) throw error;
    throw exchange.failure(error);
  }
  return Buffer.concat(chunks);
}

/** "unable to access the remote (ECONNRESET)": a network failure, without any URL or secret. */
export function networkFailure(action: string, error: unknown): GitError {
  const { code, message } = error as { code?: string; message?: string };
  const detail = code ?? message ?? String(error);
  return new GitError('unreachable', `${action} failed: unable to access the remote (${detail})`);
}

export function pkt(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from((payload.length + 4).toString(16).padStart(4, '0')), payload]);
}

export const flushPkt = Buffer.from('0000');
export const delimPkt = Buffer.from('0001');

export interface PktLine {
  /** The payload without its trailing newline; absent for special packets. */
  text?: string;
  special?: 'flush' | 'delim' | 'response-end';
}

/** Length of the pkt-line starting at `offset`: 0 flush, 1 delim, 2 response-end, else header + payload. */
export function pktLength(data: Buffer, offset: number, action: string): number {
  const header = data.toString('latin1', offset, offset + 4);
  if (!/^[0-9a-f]{4}$/.test(header)) throw new GitError('failed', `${action} failed: malformed response from the server`);
  const length = parseInt(header, 16);
  if (length === 3) throw new GitError('failed', `${action} failed: malformed response from the server`);
  return length;
}

export function specialPkt(length: number): PktLine['special'] {
  return length === 0 ? 'flush' : length === 1 ? 'delim' : 'response-end';
}

export function readPktLines(data: Buffer, action: string): PktLine[] {
  const lines: PktLine[] = [];
  let offset = 0;
  while (offset < data.length) {
    const length = pktLength(data, offset, action);
    if (length < 4) {
      lines.push({ special: specialPkt(length) });
      offset += 4;
      continue;
    }
    if (offset + length > data.length) throw new GitError('failed', `${action} failed: truncated response from the server`);
    const payload = data.toString('utf8', offset + 4, offset + length);
    if (payload.startsWith('ERR ')) throw new GitError('failed', `${action} failed: the server says: ${payload.slice(4).trim()}`);
    lines.push({ text: payload.replace(/\n$/, '') });
    offset += length;
  }
  return lines;
}
