import { randomUUID } from 'node:crypto';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId, encodeGlobalId } from '../src/schema/globalId.js';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  NodeDocument,
  ProjectDocument,
  ProjectsDocument,
  RemoveRepositoryDocument,
  RepositoriesDocument,
  RepositoryDocument,
  SyncRepositoryDocument,
  SyncRunDocument,
  SyncStatusDocument,
  TenantNodesDocument,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, Subscription, TestClient } from './support/client.js';
import { createUpstream, type Upstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// Tenant A owns a project, a synced repository and runs; tenant B must not
// be able to see or touch any of it, and must not be able to tell A's objects
// from ids that exist nowhere.

let server: GitServer;
let testApp: TestApp;
let a: TestClient;
let b: TestClient;
let upstream: Upstream;
const ids = { project: '', repository: '', run: '', ownProject: '', ownRepository: '' };

const dbId = (globalId: string): string => decodeGlobalId(globalId).id;
/** A well-formed ID of the same type that names nothing. */
const randomId = (typename: string): string => encodeGlobalId(typename, randomUUID());
const MALFORMED = ['not-an-id', '', encodeGlobalId('Repository', '42'), Buffer.from('Repository').toString('base64url')];

/** Error codes a subscription received (graphql-ws hands `error` messages over as arrays). */
function subscriptionErrorCodes<T>(subscription: Subscription<T>): (string | undefined)[] {
  return subscription.errors.flat().map((error) => (error as GraphQLErrorShape).extensions?.code);
}

async function settled<T>(subscription: Subscription<T>): Promise<void> {
  await subscription.waitFor(() => subscription.errors.length > 0, 10_000);
}

/** What a client gets back: data, or the first error's code and message. */
async function answer<TResult, TVariables>(client: TestClient, document: TypedDocumentNode<TResult, TVariables>, variables: TVariables) {
  const result = await client.raw(document, variables);
  const error = result.errors?.[0] as unknown as GraphQLErrorShape | undefined;
  return error ? { code: error.extensions?.code, message: error.message } : { data: result.data };
}

beforeAll(async () => {
  server = await startGitServer();
  testApp = await startTestApp();
  [a, b] = await Promise.all([testApp.client('tenant-a'), testApp.client('tenant-b')]);

  upstream = await createUpstream(server, 'tenant-a/app', { files: { 'README.md': '# A\n', 'src/secret.ts': 'export const a = 1;\n' } });
  ids.project = (await a.request(CreateProjectDocument, { name: 'shared name' })).createProject.project.id;
  const added = await a.request(AddRepositoryDocument, { input: { projectId: ids.project, url: upstream.url } });
  ids.repository = added.addRepository.repository.id;
  await waitForRepository(a, ids.repository, (state) => state.status === 'SYNCED');
  await waitForIdle(testApp.app, dbId(ids.repository));
  const sync = await a.request(SyncRepositoryDocument, { repositoryId: ids.repository });
  ids.run = sync.syncRepository.run.id;
  await waitForIdle(testApp.app, dbId(ids.repository));

  // B has data of its own, so that its lists are not trivially empty. Its project has the
  // same name as A's: a CONFLICT here would tell B that A's project exists.
  ids.ownProject = (await b.request(CreateProjectDocument, { name: 'shared name' })).createProject.project.id;
  const own = await createUpstream(server, 'tenant-b/app');
  ids.ownRepository = (await b.request(AddRepositoryDocument, { input: { projectId: ids.ownProject, url: own.url } })).addRepository.repository.id;
  await waitForRepository(b, ids.ownRepository, (state) => state.status === 'SYNCED');
  await waitForIdle(testApp.app, dbId(ids.ownRepository));
});

afterAll(async () => {
  await testApp?.close();
  await server?.close();
});

async function countRuns(): Promise<number> {
  return testApp.app.db.prisma.syncRun.count({ where: { repositoryId: dbId(ids.repository) } });
}

describe('tenant isolation', () => {
  it('answers project(id) and repository(id) of another tenant with NOT_FOUND, exactly as for an id that does not exist', async () => {
    // The owner sees them (the ids are right).
    expect((await a.request(ProjectDocument, { id: ids.project })).project?.repositories.edges.map((e) => e.node.id)).toEqual([ids.repository]);
    expect((await a.request(RepositoryDocument, { id: ids.repository, runs: 5 })).repository?.id).toBe(ids.repository);

    const project = await answer(b, ProjectDocument, { id: ids.project });
    expect(project).toMatchObject({ code: 'NOT_FOUND' });
    expect(project).toEqual(await answer(b, ProjectDocument, { id: randomId('Project') }));

    const repository = await answer(b, RepositoryDocument, { id: ids.repository, runs: 5 });
    expect(repository).toMatchObject({ code: 'NOT_FOUND' });
    expect(repository).toEqual(await answer(b, RepositoryDocument, { id: randomId('Repository'), runs: 5 }));
  });

  it.each(['Project', 'Repository', 'SyncRun'] as const)('resolves node(id) of another tenant\'s %s to null, as for an id that does not exist', async (typename) => {
    const id = { Project: ids.project, Repository: ids.repository, SyncRun: ids.run }[typename];
    expect((await a.request(NodeDocument, { id })).node).toEqual({ id, __typename: typename });
    expect(await answer(b, NodeDocument, { id })).toEqual({ data: { node: null } });
    expect(await answer(b, NodeDocument, { id: randomId(typename) })).toEqual({ data: { node: null } });
    if (typename === 'SyncRun') {
      expect((await a.request(SyncRunDocument, { id })).node).toMatchObject({ id, repository: { id: ids.repository } });
      expect(await answer(b, SyncRunDocument, { id })).toEqual({ data: { node: null } });
    }
  });

  it('resolves nodes(ids) of another tenant\'s objects to null and keeps the caller\'s own', async () => {
    const own = { id: ids.ownProject, __typename: 'Project' };
    expect(await answer(b, TenantNodesDocument, { ids: [ids.project, ids.repository, ids.run, ids.ownProject] })).toEqual({
      data: { nodes: [null, null, null, own] },
    });
    expect(await answer(b, TenantNodesDocument, { ids: [randomId('Repository'), ids.ownProject] })).toEqual({ data: { nodes: [null, own] } });
  });

  it('leaves another tenant\'s projects and repositories out of every list', async () => {
    const projects = (await b.request(ProjectsDocument, { first: 100 })).projects.edges.map((edge) => edge.node.id);
    expect(projects).toEqual([ids.ownProject]);
    const repositories = (await b.request(RepositoriesDocument, { first: 100 })).repositories.edges.map((edge) => edge.node.id);
    expect(repositories).toEqual([ids.ownRepository]);
    expect((await b.request(RepositoriesDocument, { status: 'SYNCED' })).repositories.edges.map((edge) => edge.node.id)).toEqual([ids.ownRepository]);

    // Filtering by A's project shows nothing, and the same as filtering by a project that does not exist.
    const byForeignProject = await answer(b, RepositoriesDocument, { projectId: ids.project });
    expect(JSON.stringify(byForeignProject)).not.toContain(ids.repository);
    expect(byForeignProject).toEqual(await answer(b, RepositoriesDocument, { projectId: randomId('Project') }));

    // A's own view is complete, and misses B's.
    expect((await a.request(RepositoriesDocument, {})).repositories.edges.map((edge) => edge.node.id)).toEqual([ids.repository]);
  });

  it('refuses syncRepository and removeRepository on another tenant\'s repository with NOT_FOUND and changes nothing', async () => {
    const runsBefore = await countRuns();

    const sync = await answer(b, SyncRepositoryDocument, { repositoryId: ids.repository });
    expect(sync).toMatchObject({ code: 'NOT_FOUND' });
    expect(sync).toEqual(await answer(b, SyncRepositoryDocument, { repositoryId: randomId('Repository') }));

    const remove = await answer(b, RemoveRepositoryDocument, { repositoryId: ids.repository });
    expect(remove).toMatchObject({ code: 'NOT_FOUND' });
    expect(remove).toEqual(await answer(b, RemoveRepositoryDocument, { repositoryId: randomId('Repository') }));

    await waitForIdle(testApp.app, dbId(ids.repository));
    expect(await countRuns()).toBe(runsBefore);
    const state = (await a.request(RepositoryDocument, { id: ids.repository, runs: 1 })).repository!;
    expect(state).toMatchObject({ status: 'SYNCED', lastCommitSha: await upstream.head() });
    expect(state.syncRuns.edges[0]!.node.id).toBe(ids.run);
  });

  it('refuses addRepository into another tenant\'s project with NOT_FOUND and creates no row', async () => {
    const other = await createUpstream(server, 'tenant-b/intruder');
    const before = await testApp.app.db.prisma.repository.count();

    const add = await answer(b, AddRepositoryDocument, { input: { projectId: ids.project, url: other.url } });
    expect(add).toMatchObject({ code: 'NOT_FOUND' });
    expect(add).toEqual(await answer(b, AddRepositoryDocument, { input: { projectId: randomId('Project'), url: other.url } }));

    expect(await testApp.app.db.prisma.repository.count()).toBe(before);
    expect(await testApp.app.db.prisma.repository.count({ where: { projectId: dbId(ids.project) } })).toBe(1);
    expect(server.repoStats('tenant-b/intruder').requests).toBe(0);
  });

  it('refuses a syncStatus subscription on another tenant\'s repository with NOT_FOUND and sends it no events', async () => {
    const owner = a.subscribe(SyncStatusDocument, { repositoryId: ids.repository });
    const intruder = b.subscribe(SyncStatusDocument, { repositoryId: ids.repository });
    const unknown = b.subscribe(SyncStatusDocument, { repositoryId: randomId('Repository') });
    try {
      await Promise.all([settled(intruder), settled(unknown)]);
      expect(subscriptionErrorCodes(intruder)).toEqual(['NOT_FOUND']);
      expect(subscriptionErrorCodes(unknown)).toEqual(['NOT_FOUND']);
      expect(JSON.stringify(intruder.errors)).toBe(JSON.stringify(unknown.errors));

      // A's repository now changes and syncs: the owner sees it all, the intruder nothing.
      server.setFault('tenant-a/app', { kind: 'delay', ms: 200 });
      const head = await upstream.commit({ 'src/secret.ts': 'export const a = 2;\n' }, 'second');
      await a.request(SyncRepositoryDocument, { repositoryId: ids.repository });
      const events = await owner.waitFor((all) => all.some((event) => ['DONE', 'FAILED'].includes(event.syncStatus.phase)));
      expect(events.at(-1)!.syncStatus).toMatchObject({ phase: 'DONE', commitSha: head });
      await waitForIdle(testApp.app, dbId(ids.repository));
      expect(intruder.events).toEqual([]);
      expect(unknown.events).toEqual([]);
      expect(intruder.errors).toHaveLength(1);
    } finally {
      server.setFault('tenant-a/app', null);
      await Promise.all([owner.close(), intruder.close(), unknown.close()]);
    }
  });

  it('answers malformed IDs with BAD_USER_INPUT on every path', async () => {
    for (const id of MALFORMED) {
      const label = JSON.stringify(id);
      expect((await answer(b, ProjectDocument, { id })).code, `project(${label})`).toBe('BAD_USER_INPUT');
      expect((await answer(b, RepositoryDocument, { id, runs: 1 })).code, `repository(${label})`).toBe('BAD_USER_INPUT');
      expect((await answer(b, NodeDocument, { id })).code, `node(${label})`).toBe('BAD_USER_INPUT');
      expect((await answer(b, SyncRepositoryDocument, { repositoryId: id })).code, `syncRepository(${label})`).toBe('BAD_USER_INPUT');
      expect((await answer(b, RemoveRepositoryDocument, { repositoryId: id })).code, `removeRepository(${label})`).toBe('BAD_USER_INPUT');
      expect((await answer(b, AddRepositoryDocument, { input: { projectId: id, url: upstream.url } })).code, `addRepository(${label})`).toBe(
        'BAD_USER_INPUT',
      );
    }
    // An ID of the wrong type is malformed input too, whoever owns the object.
    expect((await answer(b, ProjectDocument, { id: ids.repository })).code).toBe('BAD_USER_INPUT');
    expect((await answer(a, ProjectDocument, { id: ids.repository })).code).toBe('BAD_USER_INPUT');

    const subscription = b.subscribe(SyncStatusDocument, { repositoryId: 'not-an-id' });
    try {
      await settled(subscription);
      expect(subscriptionErrorCodes(subscription)).toEqual(['BAD_USER_INPUT']);
      expect(subscription.events).toEqual([]);
    } finally {
      await subscription.close();
    }
  });
});
