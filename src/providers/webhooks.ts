import { createHmac, timingSafeEqual } from 'node:crypto';
import type { PullRequestState } from '../generated/prisma/enums.js';

/** The provider route a delivery came in on. */
export type WebhookProvider = 'GITHUB' | 'GITLAB';

/**
 * What a delivery asks of a registration, reduced from the payload at accept
 * time and stored with the delivery (WebhookDelivery.action), so that it can
 * be processed later, by any process, without the payload.
 */
export type WebhookAction =
  | { kind: 'ping' }
  /** `after` null: the ref was deleted. Full ref names (refs/heads/…, refs/tags/…). */
  | { kind: 'push'; ref: string; before: string | null; after: string | null }
  /** GitHub `create` names no commit: the refs are read from the remote when it is processed. */
  | { kind: 'ref-created'; ref: string }
  | { kind: 'ref-deleted'; ref: string }
  | {
      kind: 'pull-request';
      number: number;
      title: string | null;
      state: PullRequestState;
      headSha: string | null;
      baseBranch: string | null;
      /** The host's update time (ISO 8601), to order deliveries that arrive out of order. */
      updatedAt: string | null;
    }
  | { kind: 'ignored'; reason: string };

/** Where the payload says the repository lives; registrations are found from it. */
export interface RepositoryIdentity {
  /** host[:port], as Repository.host stores it. */
  host: string;
  /** owner/name (GitLab: group/…/name), as Repository.name stores it. */
  name: string;
}

export interface ParsedDelivery {
  provider: WebhookProvider;
  /** X-GitHub-Event / X-Gitlab-Event (GitLab system hooks: their event_name). */
  event: string;
  /** Per-event id the host keeps on redelivery; de-duplicates per registration. */
  deliveryId: string;
  /** null: a delivery about no repository (a GitHub App ping). */
  identity: RepositoryIdentity | null;
  action: WebhookAction;
}

/** A request the route answers 400 to: malformed, with the reason. */
export class MalformedDelivery extends Error {}

export type Headers = Record<string, string | string[] | undefined>;

export function header(headers: Headers, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export const zeroSha = /^0{40}(0{24})?$/;

/** A SHA from a payload; null for absent or all-zero ("no commit"). */
export function commitSha(value: unknown): string | null {
  if (typeof value !== 'string' || !/^[0-9a-f]{40}([0-9a-f]{24})?$/i.test(value) || zeroSha.test(value)) return null;
  return value.toLowerCase();
}

/** host[:port] and path of a repository URL in a payload, if it is one. */
export function identityFromUrl(value: unknown, name: unknown): RepositoryIdentity | null {
  if (typeof value !== 'string') return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  const path = url.pathname.replace(/^\/+|\/+$/g, '').replace(/\.git$/i, '');
  const fullName = typeof name === 'string' && name ? name : path;
  if (!fullName) return null;
  const hostname = url.hostname === 'www.github.com' ? 'github.com' : url.hostname;
  return { host: url.port ? `${hostname}:${url.port}` : hostname, name: fullName };
}

export function object(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** The JSON body of a delivery (GitHub may also send it form-encoded as `payload=`). */
export function parseJsonBody(body: Buffer, contentType: string | undefined): Record<string, unknown> {
  let text = body.toString('utf8');
  if (contentType?.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    const payload = new URLSearchParams(text).get('payload');
    if (payload === null) throw new MalformedDelivery('form-encoded delivery without a payload field');
    text = payload;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MalformedDelivery('the body is not JSON');
  }
  const root = object(parsed);
  if (!root) throw new MalformedDelivery('the body is not a JSON object');
  return root;
}

/** GitHub: `sha256=<hex>` over the raw body with the secret, compared in constant time. */
export function githubSignatureValid(secret: string, body: Buffer, signature: string): boolean {
  const match = /^sha256=([0-9a-f]{64})$/i.exec(signature.trim());
  if (!match) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(match[1]!, 'hex'));
}

/** GitLab: the secret itself in X-Gitlab-Token; both sides hashed first, so lengths never leak. */
export function gitlabTokenValid(secret: string, token: string): boolean {
  const digest = (value: string) => createHmac('sha256', 'repolens-gitlab-token').update(value).digest();
  return timingSafeEqual(digest(secret), digest(token));
}
