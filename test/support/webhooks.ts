import { createHmac, randomUUID } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';

/**
 * Real webhook payloads published by others (test/fixtures/webhooks, a copy of
 * ../shared/fixtures/webhooks with its README naming the sources), pointed at a
 * test repository: only the repository identity and the commit ids are
 * rewritten, every other byte stays as published, and the result is signed.
 */
export const fixturesDir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'fixtures', 'webhooks');

export async function fixtureNames(): Promise<string[]> {
  return (await readdir(fixturesDir)).filter((name) => name.endsWith('.json')).sort();
}

export function loadFixture(name: string): Promise<Buffer> {
  return readFile(path.join(fixturesDir, name));
}

export interface Target {
  /** The test repository's clone URL (…/name.git). */
  url: string;
  /** owner/name as Repository.name stores it. */
  name: string;
}

/** Where a published payload says its repository lives: clone URL and full name. */
function identityOf(payload: Record<string, any>): { url: string; name: string } | null {
  const repository = payload.repository;
  if (repository?.clone_url && repository.full_name) return { url: repository.clone_url, name: repository.full_name };
  const project = payload.project;
  if (project?.git_http_url && project.path_with_namespace) return { url: project.git_http_url, name: project.path_with_namespace };
  return null;
}

/** Points a payload at `target`, and maps commit ids (`shas`: published → test repository's). */
export function retarget(raw: Buffer, target: Target, shas: Record<string, string> = {}): Buffer {
  let text = raw.toString('utf8');
  const identity = identityOf(JSON.parse(text));
  if (identity) {
    const publishedBase = identity.url.replace(/\.git$/, '');
    text = text.split(publishedBase).join(target.url.replace(/\.git$/, ''));
    text = text.split(`"${identity.name}"`).join(`"${target.name}"`);
  }
  for (const [published, ours] of Object.entries(shas)) text = text.split(published).join(ours);
  return Buffer.from(text);
}

export function githubSignature(secret: string, body: Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The headers github.com sends (github/docs "Example webhook delivery"). */
export function githubHeaders(event: string, body: Buffer, secret: string | null, deliveryId: string = randomUUID()): Record<string, string> {
  return {
    'Content-Type': 'application/json',
    'User-Agent': 'GitHub-Hookshot/044aadd',
    'X-GitHub-Delivery': deliveryId,
    'X-GitHub-Event': event,
    'X-GitHub-Hook-ID': '292430182',
    'X-GitHub-Hook-Installation-Target-ID': '79929171',
    'X-GitHub-Hook-Installation-Target-Type': 'repository',
    ...(secret === null ? {} : { 'X-Hub-Signature-256': githubSignature(secret, body) }),
  };
}

/** The headers GitLab sends (doc/api/project_webhooks.md, logged request_headers). */
export function gitlabHeaders(event: string, token: string | null, ids: { idempotencyKey?: string | null; eventUuid?: string } = {}): Record<string, string> {
  const idempotencyKey = ids.idempotencyKey === undefined ? randomUUID() : ids.idempotencyKey;
  return {
    'Content-Type': 'application/json',
    'User-Agent': 'GitLab/17.1.0-pre',
    'X-Gitlab-Event': event,
    'X-Gitlab-Webhook-UUID': '02affd2d-2cba-4033-917d-ec22d5dc4b38',
    'X-Gitlab-Instance': 'https://gitlab.example.com',
    'X-Gitlab-Event-UUID': ids.eventUuid ?? randomUUID(),
    ...(idempotencyKey === null ? {} : { 'Idempotency-Key': idempotencyKey }),
    ...(token === null ? {} : { 'X-Gitlab-Token': token }),
  };
}

/** The GitHub event header of a fixture, from its file name (github-<event>-…). */
export function fixtureEvent(name: string): string {
  const [provider, event] = name.replace(/\.json$/, '').split('-');
  if (provider === 'github') return event!;
  return { push: 'Push Hook', tag_push: 'Tag Push Hook', merge_request: 'Merge Request Hook', system_hook: 'System Hook' }[event!] ?? event!;
}

export interface Delivered {
  status: number;
  body: Record<string, unknown>;
}

export async function deliver(baseUrl: string, provider: 'github' | 'gitlab', headers: Record<string, string>, body: Buffer | string): Promise<Delivered> {
  const response = await fetch(`${baseUrl}/webhooks/${provider}`, { method: 'POST', headers, body: typeof body === 'string' ? body : new Uint8Array(body) });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
