import type { IncomingMessage } from 'node:http';

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
