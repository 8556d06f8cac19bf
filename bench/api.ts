import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { parse } from 'graphql';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  RemoveRepositoryDocument,
  SyncStatusDocument,
  type ArchivePolicy,
  type SyncStatusSubscription,
} from '../test/generated/graphql.js';
import { GraphQLRequestError, type GraphQLErrorShape, type TestClient } from '../test/support/client.js';

export type SyncEvent = SyncStatusSubscription['syncStatus'];

/** Database id of a Relay global id ("Repository:<uuid>", base64url). */
export function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1] ?? '';
}

export async function createProject(client: TestClient, name: string): Promise<string> {
  return (await client.request(CreateProjectDocument, { name })).createProject.project.id;
}

/**
 * The sync benchmarks compare a sync with git doing the same transfer, so
 * their repositories are not archived (archivePolicy NONE); archiving is
 * measured by its own benchmarks (archives.ts).
 */
export async function addRepository(client: TestClient, projectId: string, url: string, archivePolicy: ArchivePolicy = 'NONE'): Promise<string> {
  return (await client.request(AddRepositoryDocument, { input: { projectId, url, archivePolicy } })).addRepository.repository.id;
}

/** addRepository, with the registration's webhook secret (shown once, in its payload). */
export async function addRepositoryWithWebhook(client: TestClient, projectId: string, url: string): Promise<{ id: string; secret: string }> {
  const { addRepository: added } = await client.request(AddRepositoryDocument, { input: { projectId, url, archivePolicy: 'NONE' } });
  return { id: added.repository.id, secret: added.webhook.secret! };
}

export async function removeRepository(client: TestClient, repositoryId: string): Promise<void> {
  await client.request(RemoveRepositoryDocument, { repositoryId });
}

/** One HTTP request carrying one aliased `syncRepository` per repository. */
export async function syncRepositories(client: TestClient, repositoryIds: readonly string[]): Promise<void> {
  const variables = Object.fromEntries(repositoryIds.map((id, index) => [`r${index}`, id]));
  const fields = repositoryIds.map((_, index) => `r${index}: syncRepository(input: { repositoryId: $r${index} }) { run { id } }`);
  const text = `mutation SyncAll(${repositoryIds.map((_, index) => `$r${index}: ID!`).join(', ')}) {\n${fields.join('\n')}\n}`;
  const document = parse(text) as TypedDocumentNode<Record<string, unknown>, Record<string, string>>;
  const result = await client.raw(document, variables);
  if (result.errors?.length) throw new GraphQLRequestError(result.errors as unknown as GraphQLErrorShape[]);
}

/**
 * Subscribes to a repository's sync events and resolves with the terminal
 * event (DONE, SKIPPED or FAILED) and the local time it arrived.
 */
export function watchSync(client: TestClient, repositoryId: string): { done: Promise<{ event: SyncEvent; at: number }>; close(): Promise<void> } {
  const subscription = client.subscribe(SyncStatusDocument, { repositoryId });
  const terminal = (event: SyncStatusSubscription) => ['DONE', 'SKIPPED', 'FAILED'].includes(event.syncStatus.phase);
  const done = subscription.waitFor((events) => events.some(terminal), 120_000).then((events) => {
    const event = events.find(terminal);
    if (!event) throw new Error(`subscription ended without a terminal event: ${JSON.stringify(subscription.errors)}`);
    return { event: event.syncStatus, at: Date.now() };
  });
  return { done, close: () => subscription.close() };
}
