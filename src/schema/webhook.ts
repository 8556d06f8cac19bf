import { PullRequestState, WebhookOutcome } from '../generated/prisma/enums.js';
import { builder } from './builder.js';
import { ProviderEnum } from './enums.js';
import { parseGlobalId } from './globalId.js';
import { pageSize } from './pagination.js';
import { Repository, WebhookSetup } from './repository.js';

const PullRequestStateEnum = builder.enumType(PullRequestState, { name: 'PullRequestState' });
const WebhookOutcomeEnum = builder.enumType(WebhookOutcome, { name: 'WebhookOutcome' });

builder.prismaObject('PullRequest', {
  description: 'A pull request (GitHub) or merge request (GitLab) as its newest webhook delivery described it',
  fields: (t) => ({
    number: t.exposeInt('number'),
    title: t.exposeString('title', { nullable: true }),
    state: t.expose('state', { type: PullRequestStateEnum }),
    headSha: t.exposeString('headSha', { nullable: true }),
    baseBranch: t.exposeString('baseBranch', { nullable: true }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.prismaObject('WebhookDelivery', {
  description: 'A webhook delivery accepted for this repository, and what came of it',
  fields: (t) => ({
    id: t.exposeID('id'),
    provider: t.expose('provider', { type: ProviderEnum }),
    event: t.exposeString('event'),
    deliveryId: t.exposeString('deliveryId'),
    receivedAt: t.expose('receivedAt', { type: 'DateTime' }),
    outcome: t.field({
      type: WebhookOutcomeEnum,
      description: 'QUEUED while it waits to be processed',
      resolve: (delivery) => delivery.outcome ?? 'QUEUED',
    }),
    error: t.exposeString('error', { nullable: true }),
  }),
});

builder.prismaObjectFields('Repository', (t) => ({
  pullRequests: t.relatedConnection(
    'pullRequests',
    {
      cursor: 'id',
      ...pageSize,
      args: { state: t.arg({ type: PullRequestStateEnum }) },
      description: 'most recently updated first',
      query: (args) => ({ where: args.state ? { state: args.state } : {}, orderBy: [{ updatedAt: 'desc' }, { id: 'desc' }] }),
    },
    { name: 'PullRequestConnection' },
    { name: 'PullRequestEdge' },
  ),
  webhookDeliveries: t.relatedConnection(
    'webhookDeliveries',
    { cursor: 'id', ...pageSize, description: 'newest first', query: { orderBy: [{ receivedAt: 'desc' }, { id: 'desc' }] } },
    { name: 'WebhookDeliveryConnection' },
    { name: 'WebhookDeliveryEdge' },
  ),
}));

builder.relayMutationField(
  'rotateWebhookSecret',
  { inputFields: (t) => ({ repositoryId: t.id({ required: true }) }) },
  {
    resolve: (_root, { input }, ctx) => ctx.services.repositories.rotateWebhookSecret(ctx.tenantId, parseGlobalId(input.repositoryId, 'Repository')),
  },
  {
    outputFields: (t) => ({
      repository: t.field({ type: Repository, resolve: (payload) => payload.repository }),
      webhook: t.field({ type: WebhookSetup, description: 'the new secret, shown only here', resolve: (payload) => payload.webhook }),
    }),
  },
);
