import { commitSha, header, identityFromUrl, MalformedDelivery, object, parseJsonBody, type Headers, type ParsedDelivery, type WebhookAction } from './webhooks.js';

/**
 * A GitHub (or GitHub-compatible: Gitea, Forgejo) delivery: X-GitHub-Event,
 * X-GitHub-Delivery, and the repository from `repository.full_name` /
 * `clone_url` (`html_url`). Signature checks happen elsewhere (they need the
 * registrations this identity finds).
 */
export function parseGithubDelivery(headers: Headers, body: Buffer): ParsedDelivery {
  const event = header(headers, 'x-github-event');
  if (!event) throw new MalformedDelivery('missing X-GitHub-Event header');
  const deliveryId = header(headers, 'x-github-delivery');
  if (!deliveryId) throw new MalformedDelivery('missing X-GitHub-Delivery header');
  if (deliveryId.length > 200) throw new MalformedDelivery('X-GitHub-Delivery is too long');
  const payload = parseJsonBody(body, header(headers, 'content-type'));
  const repository = object(payload.repository);
  const identity = repository
    ? (identityFromUrl(repository.clone_url, repository.full_name) ?? identityFromUrl(repository.html_url, repository.full_name))
    : null;
  if (!identity && event !== 'ping') throw new MalformedDelivery('the payload names no repository (repository.clone_url / full_name)');
  return { provider: 'GITHUB', event, deliveryId, identity, action: githubAction(event, payload) };
}

function githubAction(event: string, payload: Record<string, unknown>): WebhookAction {
  switch (event) {
    case 'ping':
      return { kind: 'ping' };
    case 'push': {
      const ref = payload.ref;
      if (typeof ref !== 'string' || !ref.startsWith('refs/')) throw new MalformedDelivery('push without a full ref name');
      const after = payload.deleted === true ? null : commitSha(payload.after);
      if (after === null && payload.deleted !== true) throw new MalformedDelivery('push without an "after" commit');
      return { kind: 'push', ref, before: commitSha(payload.before), after };
    }
    case 'create':
    case 'delete': {
      // Short names here, unlike push ("feature-branch", not "refs/heads/feature-branch").
      const { ref, ref_type: refType } = payload;
      if (typeof ref !== 'string' || !ref || (refType !== 'branch' && refType !== 'tag')) throw new MalformedDelivery(`${event} without ref / ref_type`);
      const full = `${refType === 'branch' ? 'refs/heads/' : 'refs/tags/'}${ref}`;
      return event === 'create' ? { kind: 'ref-created', ref: full } : { kind: 'ref-deleted', ref: full };
    }
    case 'pull_request': {
      const pull = object(payload.pull_request);
      const number = pull?.number ?? payload.number;
      if (!pull || typeof number !== 'number') throw new MalformedDelivery('pull_request without pull_request.number');
      const state = pull.merged === true || typeof pull.merged_at === 'string' ? 'MERGED' : pull.state === 'closed' ? 'CLOSED' : 'OPEN';
      return {
        kind: 'pull-request',
        number,
        title: typeof pull.title === 'string' ? pull.title : null,
        state,
        headSha: commitSha(object(pull.head)?.sha),
        baseBranch: stringOrNull(object(pull.base)?.ref),
        updatedAt: stringOrNull(pull.updated_at),
      };
    }
    default:
      return { kind: 'ignored', reason: `event "${event}" is not used` };
  }
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}
