import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeGlobalId } from '../src/schema/globalId.js';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  ProjectsDocument,
  SyncRepositoryDocument,
  SyncStatusDocument,
  type SyncStatusSubscription,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import { TestClient, type GraphQLErrorShape } from './support/client.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

let server: GitServer;
let testApp: TestApp;
let client: TestClient;
let repositoryId: string;

const PROJECTS = print(ProjectsDocument);
const SYNC_STATUS = print(SyncStatusDocument);
const CREATE_PROJECT = print(CreateProjectDocument);

/** Authorization headers that must all be refused; `undefined` sends none. */
function badAuthorizations(): [label: string, header: string | undefined][] {
  return [
    ['no header', undefined],
    ['a wrong token', 'Bearer rls_this-token-was-never-issued'],
    ['a Basic header', `Basic ${Buffer.from(`acme:${client.token}`).toString('base64')}`],
    ['"Bearer" alone', 'Bearer'],
    ['"Bearer " with nothing after it', 'Bearer '],
    ['the raw token without a scheme', client.token!],
    ['two tokens', `Bearer ${client.token} ${client.token}`],
    ['an overlong token', `Bearer ${'x'.repeat(5000)}`],
  ];
}

const headers = (authorization: string | undefined, extra: Record<string, string> = {}) => ({
  'content-type': 'application/json',
  ...(authorization === undefined ? {} : { authorization }),
  ...extra,
});

async function post(authorization: string | undefined, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${testApp.url}/graphql`, {
    method: 'POST',
    headers: headers(authorization),
    body: JSON.stringify({ query, variables }),
  });
  return {
    status: response.status,
    challenge: response.headers.get('www-authenticate'),
    body: (await response.json()) as { data?: unknown; errors?: GraphQLErrorShape[] },
  };
}

async function get(authorization: string | undefined, query: string) {
  const response = await fetch(`${testApp.url}/graphql?${new URLSearchParams({ query })}`, {
    headers: { accept: 'application/graphql-response+json, application/json', ...(authorization === undefined ? {} : { authorization }) },
  });
  return { status: response.status, body: (await response.json()) as { data?: unknown; errors?: GraphQLErrorShape[] } };
}

type Result = { data?: unknown; errors?: GraphQLErrorShape[] };

/**
 * A GraphQL-over-SSE request: collects the results it streams (or the one
 * JSON answer it gets instead) until `until` is satisfied, the stream ends or
 * the time is up.
 */
async function sse(authorization: string | undefined, query: string, variables: Record<string, unknown>, until: (results: Result[]) => boolean, timeoutMs = 15_000) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const results: Result[] = [];
  try {
    const response = await fetch(`${testApp.url}/graphql`, {
      method: 'POST',
      headers: headers(authorization, { accept: 'text/event-stream' }),
      body: JSON.stringify({ query, variables }),
      signal: abort.signal,
    });
    const contentType = response.headers.get('content-type') ?? '';
    if (!contentType.includes('text/event-stream')) {
      results.push((await response.json()) as Result);
      return { status: response.status, contentType, results };
    }
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trim())
            .join('\n');
          if (data) results.push(JSON.parse(data) as Result);
        }
        if (until(results)) break;
      }
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    }
    return { status: response.status, contentType, results };
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

/**
 * A bare graphql-transport-ws socket: sends connection_init (with these
 * params) and reports every message and how the socket was closed.
 */
async function wsHandshake(connectionParams: Record<string, unknown> | undefined, timeoutMs = 10_000) {
  const socket = new WebSocket(`${testApp.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  const messages: unknown[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(String(data))));
  socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', ...(connectionParams ? { payload: connectionParams } : {}) })));
  const closed = await new Promise<{ code: number; reason: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`socket still open after ${timeoutMs} ms; messages: ${JSON.stringify(messages)}`));
    }, timeoutMs);
    socket.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: String(reason) });
    });
    socket.on('error', () => undefined);
  });
  return { ...closed, messages };
}

function expectUnauthenticated(result: { status: number; body: Result }): void {
  expect(result.status).toBe(401);
  expect(result.body.data ?? null).toBeNull();
  expect(result.body.errors?.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);
}

beforeAll(async () => {
  server = await startGitServer();
  testApp = await startTestApp();
  client = await testApp.client('auth-tenant');
  const projectId = (await client.request(CreateProjectDocument, { name: 'auth' })).createProject.project.id;
  const upstream = await createUpstream(server, 'auth/app');
  repositoryId = (await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url } })).addRepository.repository.id;
  await waitForRepository(client, repositoryId, (state) => state.status === 'SYNCED');
  await waitForIdle(testApp.app, decodeGlobalId(repositoryId).id);
});

afterAll(async () => {
  await testApp?.close();
  await server?.close();
});

describe('GraphQL over HTTP needs a bearer token', () => {
  it('answers a POST query with 200 and data when the token is valid', async () => {
    const result = await post(`Bearer ${client.token}`, PROJECTS);
    expect(result.status).toBe(200);
    expect(result.body.errors).toBeUndefined();
    expect(result.body.data).toMatchObject({ projects: { edges: [{ node: { name: 'auth' } }] } });
  });

  it('refuses a POST query with 401 UNAUTHENTICATED for every bad Authorization header', async () => {
    for (const [label, header] of badAuthorizations()) {
      const result = await post(header, PROJECTS);
      expect.soft(result.status, label).toBe(401);
      expect.soft(result.challenge, label).toMatch(/^Bearer\b/);
      expect.soft(result.body.errors?.map((error) => error.extensions?.code), label).toEqual(['UNAUTHENTICATED']);
      expect.soft(result.body.data ?? null, label).toBeNull();
    }
  });

  it('refuses a mutation without a valid token and changes nothing', async () => {
    const before = { projects: await testApp.app.db.prisma.project.count(), runs: await testApp.app.db.prisma.syncRun.count() };
    for (const [label, header] of badAuthorizations()) {
      const result = await post(header, CREATE_PROJECT, { name: `intruder ${label}` });
      expect.soft(result.status, label).toBe(401);
      expect.soft(result.body.errors?.map((error) => error.extensions?.code), label).toEqual(['UNAUTHENTICATED']);
    }
    const sync = await post(undefined, print(SyncRepositoryDocument), { repositoryId });
    expectUnauthenticated(sync);
    expect(await testApp.app.db.prisma.project.count()).toBe(before.projects);
    expect(await testApp.app.db.prisma.syncRun.count()).toBe(before.runs);
  });

  it('treats GET /graphql?query=… the same way', async () => {
    const ok = await get(`Bearer ${client.token}`, PROJECTS);
    expect(ok.status).toBe(200);
    expect(ok.body.data).toMatchObject({ projects: { edges: [{ node: { name: 'auth' } }] } });
    for (const [label, header] of badAuthorizations()) {
      const result = await get(header, PROJECTS);
      expect.soft(result.status, label).toBe(401);
      expect.soft(result.body.errors?.map((error) => error.extensions?.code), label).toEqual(['UNAUTHENTICATED']);
      expect.soft(result.body.data ?? null, label).toBeNull();
    }
  });
});

describe('subscriptions need a bearer token', () => {
  it('refuses an SSE subscription without a valid token and streams no event', async () => {
    for (const [label, header] of badAuthorizations()) {
      const response = await sse(header, SYNC_STATUS, { repositoryId }, (results) => results.some((result) => result.errors), 5_000);
      const codes = response.results.flatMap((result) => result.errors?.map((error) => error.extensions?.code) ?? []);
      expect.soft(response.status, label).toBe(401);
      expect.soft(codes, label).toEqual(['UNAUTHENTICATED']);
      expect.soft(response.results.filter((result) => result.data), label).toEqual([]);
    }
  });

  it('streams sync events over SSE with a valid token', async () => {
    server.setFault('auth/app', { kind: 'delay', ms: 300 });
    try {
      const stream = sse(`Bearer ${client.token}`, SYNC_STATUS, { repositoryId }, (results) =>
        results.some((result) => ['DONE', 'SKIPPED', 'FAILED'].includes((result.data as SyncStatusSubscription | undefined)?.syncStatus.phase ?? '')),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await client.request(SyncRepositoryDocument, { repositoryId });
      const { status, results } = await stream;
      expect(status).toBe(200);
      const phases = results.map((result) => (result.data as SyncStatusSubscription).syncStatus.phase);
      expect(phases).toContain('QUEUED');
      expect(phases.at(-1)).toBe('SKIPPED');
    } finally {
      server.setFault('auth/app', null);
      await waitForIdle(testApp.app, decodeGlobalId(repositoryId).id);
    }
  });

  it('closes a graphql-ws socket with 4401 and sends nothing when connectionParams.authorization is missing or wrong', async () => {
    const attempts: [string, Record<string, unknown> | undefined][] = [
      ['no connectionParams', undefined],
      ['empty connectionParams', {}],
      ...badAuthorizations().map(([label, header]): [string, Record<string, unknown>] => [label, header === undefined ? {} : { authorization: header }]),
      ['a token in another field', { token: client.token }],
      ['a non-string authorization', { authorization: { bearer: client.token } }],
    ];
    for (const [label, params] of attempts) {
      const { code, messages } = await wsHandshake(params);
      expect.soft(code, label).toBe(4401);
      expect.soft(messages, label).toEqual([]);
    }
  });

  it('gives a graphql-ws client without a valid token a 4401 close and no data', async () => {
    for (const authorization of [null, 'Bearer rls_wrong']) {
      const ws = new TestClient(client.baseUrl, null).wsClient({ authorization });
      const received: unknown[] = [];
      const failure = await new Promise<unknown>((resolve) => {
        ws.subscribe({ query: SYNC_STATUS, variables: { repositoryId } }, { next: (value) => received.push(value), error: resolve, complete: () => resolve(null) });
      });
      await ws.dispose();
      expect((failure as { code?: number } | null)?.code, String(authorization)).toBe(4401);
      expect(received).toEqual([]);
    }
  });

  it('delivers a QUEUED event over graphql-ws with a valid token after syncRepository', async () => {
    server.setFault('auth/app', { kind: 'delay', ms: 300 });
    const subscription = client.subscribe(SyncStatusDocument, { repositoryId });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { syncRepository } = await client.request(SyncRepositoryDocument, { repositoryId });
      const events = await subscription.waitFor((all) => all.some((event) => event.syncStatus.phase === 'QUEUED'));
      expect(subscription.errors).toEqual([]);
      expect(events.find((event) => event.syncStatus.phase === 'QUEUED')!.syncStatus).toMatchObject({ repositoryId, runId: syncRepository.run.id });
    } finally {
      server.setFault('auth/app', null);
      await subscription.close();
      await waitForIdle(testApp.app, decodeGlobalId(repositoryId).id);
    }
  });
});

describe('tokens and operational routes', () => {
  it('stores API tokens hashed, never as issued', async () => {
    const other = await testApp.client('auth-other');
    const rows = await testApp.app.db.prisma.apiToken.findMany();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const stored = JSON.stringify(rows);
    for (const token of [client.token!, other.token!]) {
      expect(token.length).toBeGreaterThanOrEqual(32);
      expect(stored).not.toContain(token);
      expect(stored).not.toContain(token.replace(/^rls_/, ''));
    }
    for (const row of rows) expect(row.tokenHash).toMatch(/^[0-9a-f]{64}$/);
    // And the hash is not a usable token.
    expectUnauthenticated(await post(`Bearer ${rows[0]!.tokenHash}`, PROJECTS));
  });

  it('answers /healthz, /readyz and /metrics without a token', async () => {
    await client.request(SyncRepositoryDocument, { repositoryId });
    await waitForIdle(testApp.app, decodeGlobalId(repositoryId).id);
    for (const route of ['/healthz', '/readyz']) {
      const response = await fetch(`${testApp.url}${route}`);
      expect(response.status, route).toBe(200);
      expect(await response.json()).toMatchObject({ status: expect.any(String) });
    }
    const response = await fetch(`${testApp.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    // The INITIAL run of beforeAll and the MANUAL one above were counted.
    const samples = [...text.matchAll(/^repolens_sync_runs_total\{([^}]*)\} (\d+(?:\.\d+)?)$/gm)];
    const initial = samples.find(([, labels]) => labels!.includes('trigger="INITIAL"') && labels!.includes('outcome="SUCCEEDED"'));
    expect(Number(initial?.[2])).toBeGreaterThanOrEqual(1);
    expect(samples.some(([, labels]) => labels!.includes('trigger="MANUAL"'))).toBe(true);
  });
});
