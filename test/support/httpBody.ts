import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';

/** A request's whole body as text (the fakes' bodies are small). */
export async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A request's JSON object body; null when it is not one. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | null> {
  try {
    const value = JSON.parse(await readText(req)) as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * Writes an answer the way GitHub and GitLab do: gzipped for a client that
 * accepts it (every fetch does), with its Content-Length. Returns the bytes
 * that went on the wire.
 */
export function writeBody(req: IncomingMessage, res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string>): number {
  const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) && Buffer.byteLength(body) > 0;
  const wire = gzip ? gzipSync(body) : Buffer.from(body);
  res.writeHead(status, { ...headers, 'content-length': String(wire.byteLength), ...(gzip ? { 'content-encoding': 'gzip', vary: 'Accept-Encoding' } : {}) }).end(wire);
  return wire.byteLength;
}
