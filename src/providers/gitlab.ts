import { commitSha, header, identityFromUrl, MalformedDelivery, object, parseJsonBody, type Headers, type ParsedDelivery, type WebhookAction } from './webhooks.js';

/**
 * A GitLab delivery: project hooks (X-Gitlab-Event, `object_kind`) and system
 * hooks (X-Gitlab-Event "System Hook", `event_name` without `object_kind`).
 * The delivery id is `Idempotency-Key` (kept on retries), else
 * `X-Gitlab-Event-UUID`; the repository comes from
 * `project.path_with_namespace` / `git_http_url`.
 */
export function parseGitlabDelivery(headers: Headers, body: Buffer): ParsedDelivery {
  const eventHeader = header(headers, 'x-gitlab-event');
  if (!eventHeader) throw new MalformedDelivery('missing X-Gitlab-Event header');
  const deliveryId = header(headers, 'idempotency-key') ?? header(headers, 'x-gitlab-event-uuid');
  if (!deliveryId) throw new MalformedDelivery('missing Idempotency-Key and X-Gitlab-Event-UUID headers');
  if (deliveryId.length > 200) throw new MalformedDelivery('the delivery id is too long');
  const payload = parseJsonBody(body, header(headers, 'content-type'));
  const kind = typeof payload.object_kind === 'string' ? payload.object_kind : typeof payload.event_name === 'string' ? payload.event_name : null;
  const project = object(payload.project);
  const repository = object(payload.repository);
  const identity =
    identityFromUrl(project?.git_http_url, project?.path_with_namespace) ??
    identityFromUrl(project?.web_url, project?.path_with_namespace) ??
    identityFromUrl(repository?.git_http_url, null) ??
    identityFromUrl(repository?.homepage, null);
  if (!identity) throw new MalformedDelivery('the payload names no project (project.git_http_url / path_with_namespace)');
  const event = eventHeader === 'System Hook' && kind ? `System Hook: ${kind}` : eventHeader;
  return { provider: 'GITLAB', event, deliveryId, identity, action: gitlabAction(kind, payload) };
}

function gitlabAction(kind: string | null, payload: Record<string, unknown>): WebhookAction {
  switch (kind) {
    case 'push':
    case 'tag_push': {
      const ref = payload.ref;
      if (typeof ref !== 'string' || !ref.startsWith('refs/')) throw new MalformedDelivery(`${kind} without a full ref name`);
      const after = commitSha(payload.after);
      if (after === null && (typeof payload.after !== 'string' || !/^0+$/.test(payload.after))) throw new MalformedDelivery(`${kind} without an "after" commit`);
      return { kind: 'push', ref, before: commitSha(payload.before), after };
    }
    case 'merge_request': {
      const attributes = object(payload.object_attributes);
      if (!attributes || typeof attributes.iid !== 'number') throw new MalformedDelivery('merge_request without object_attributes.iid');
      const state = attributes.state === 'merged' ? 'MERGED' : attributes.state === 'closed' || attributes.state === 'locked' ? 'CLOSED' : 'OPEN';
      return {
        kind: 'pull-request',
        number: attributes.iid,
        title: typeof attributes.title === 'string' ? attributes.title : null,
        state,
        headSha: commitSha(object(attributes.last_commit)?.id),
        baseBranch: typeof attributes.target_branch === 'string' ? attributes.target_branch : null,
        updatedAt: isoTime(attributes.updated_at),
      };
    }
    default:
      return { kind: 'ignored', reason: kind ? `event "${kind}" is not used` : 'the payload names no event kind' };
  }
}

/** GitLab writes "2017-12-10 17:02:46 UTC" in older payloads, ISO 8601 in newer ones. */
function isoTime(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const normalized = value.replace(/^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) UTC$/, '$1T$2Z');
  const time = new Date(normalized);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}
