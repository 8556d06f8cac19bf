import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SyncStatusDocument } from './generated/graphql.js';
import { createApiToken } from '../src/storage/tenants.js';
import { startTestApp, type TestApp } from './support/app.js';
import { TestClient } from './support/client.js';
import { waitFor } from './support/wait.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// Issue 7 item 3, SPEC §6: the API's limits. Each is configured small here
// (the same variables an operator sets) and shown to refuse with a clear
// error and to change nothing; just under each limit is accepted.

interface Answer {
  status: number;
  headers: Headers;
  body: { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
}

let app: TestApp;
let gitServer: GitServer;
let token: string;
let otherToken: string;
let repositoryId: string;

beforeAll(async () => {
  gitServer = await startGitServer();
  app = await startTestApp({
    env: {
      REPOLENS_GRAPHQL_MAX_DEPTH: '8',
      REPOLENS_GRAPHQL_MAX_COST: '2000',
      REPOLENS_GRAPHQL_MAX_ALIASES: '10',
      REPOLENS_GRAPHQL_MAX_TOKENS: '800',
      REPOLENS_MAX_BODY_BYTES: String(64 * 1024),
      REPOLENS_MAX_HEADER_BYTES: String(8 * 1024),
      REPOLENS_REQUEST_TIMEOUT_MS: '1500',
      REPOLENS_MUTATIONS_PER_MINUTE: '6',
      REPOLENS_MAX_SUBSCRIPTIONS_PER_TOKEN: '2',
    },
  });
  token = (await app.client('limits')).token!;
  otherToken = (await app.client('limits-other')).token!;
  const upstream = await createUpstream(gitServer, 'limits/repo');
  const project = await post(token, { query: 'mutation { createProject(input: { name: "limits" }) { project { id } } }' });
  const projectId = (project.body.data!.createProject as { project: { id: string } }).project.id;
  const added = await post(token, {
    query: 'mutation($p: ID!, $u: String!) { addRepository(input: { projectId: $p, url: $u, archivePolicy: NONE }) { repository { id } } }',
    variables: { p: projectId, u: upstream.url },
  });
  repositoryId = (added.body.data!.addRepository as { repository: { id: string } }).repository.id;
}, 60_000);

afterAll(async () => {
  await app?.close();
  await gitServer?.close();
});

async function post(bearer: string | null, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${app.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: Answer['body'] = {};
  try {
    parsed = JSON.parse(text) as Answer['body'];
  } catch {
    parsed = { errors: [{ message: text }] };
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

function firstError(answer: Answer): { message: string; code: unknown; reason: unknown } {
  const error = answer.body.errors?.[0];
  expect(error, JSON.stringify(answer.body)).toBeDefined();
  return { message: error!.message, code: error!.extensions?.code, reason: error!.extensions?.reason };
}

async function projectCount(): Promise<number> {
  return app.app.db.prisma.project.count();
}

/** `repository { project { repositories { edges { node { project … } } } } }`, `levels` times over. */
function nested(levels: number): string {
  let inner = 'id';
  for (let level = 0; level < levels; level++) inner = `project { repositories(first: 1) { edges { node { ${inner} } } } }`;
  return `query($id: ID!) { repository(id: $id) { ${inner} } }`;
}

/** Sends raw bytes and returns the status line the server answers with. */
function rawExchange(payload: string, options: { waitMs?: number } = {}): Promise<string> {
  const port = new URL(app.url).port;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(payload));
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(received.split('\r\n')[0] ?? '');
    }, options.waitMs ?? 5_000);
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received.split('\r\n')[0] ?? '');
    });
    socket.on('error', reject);
  });
}

describe('query shape limits (graphql-armor)', () => {
  it('depth: a query nested past REPOLENS_GRAPHQL_MAX_DEPTH is refused before it runs; one within it answers', async () => {
    const shallow = await post(token, { query: nested(1), variables: { id: repositoryId } });
    expect(shallow.body.errors).toBeUndefined();
    expect(shallow.body.data?.repository).toBeTruthy();
    const deep = await post(token, { query: nested(3), variables: { id: repositoryId } });
    expect(firstError(deep)).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/depth limit of 8/i) });
    expect(deep.body.data ?? null).toBeNull();
  });

  it('aliases: more than REPOLENS_GRAPHQL_MAX_ALIASES in one operation are refused', async () => {
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, index) => `a${index}: projects(first: 1) { pageInfo { hasNextPage } }`).join(' ')} }`;
    expect((await post(token, { query: aliases(10) })).body.errors).toBeUndefined();
    expect(firstError(await post(token, { query: aliases(11) }))).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/aliases limit of 10/i) });
  });

  it('cost: nested pages over REPOLENS_GRAPHQL_MAX_COST are refused, page sizes in variables included; a modest query answers', async () => {
    const nestedPages = 'query($a: Int, $b: Int) { projects(first: $a) { edges { node { id repositories(first: $b) { edges { node { id url } } } } } } }';
    // Literal sizes and sizes in variables cost the same (a rule that reads literals only would see 1 × 1).
    const literal = await post(token, { query: nestedPages.replace('($a: Int, $b: Int)', '').replace('first: $a', 'first: 100').replace('first: $b', 'first: 100') });
    expect(firstError(literal)).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/estimated cost \d+ is over the limit of 2000/) });
    const variables = await post(token, { query: nestedPages, variables: { a: 100, b: 100 } });
    expect(firstError(variables)).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/estimated cost \d+ is over the limit of 2000/) });
    expect(variables.body.data ?? null).toBeNull();
    // Without sizes a connection costs its default page (20): 20 × 20 nested is still too much…
    expect(firstError(await post(token, { query: nestedPages }))).toMatchObject({ code: 'BAD_USER_INPUT' });
    // …and small pages answer.
    expect((await post(token, { query: nestedPages, variables: { a: 5, b: 5 } })).body.errors).toBeUndefined();
  });

  it('tokens: a document of more than REPOLENS_GRAPHQL_MAX_TOKENS tokens is refused at parse', async () => {
    const huge = `{ projects(first: 1) { pageInfo { hasNextPage } ${'__typename '.repeat(900)} } }`;
    expect(firstError(await post(token, { query: huge }))).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/token limit of 800/i) });
  });

  it('page size: first: 101 is refused (the cap is 100); first: 1000000 too; first: 100 answers', async () => {
    expect(firstError(await post(token, { query: '{ projects(first: 101) { pageInfo { hasNextPage } } }' }))).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/between 0 and 100/) });
    expect(firstError(await post(token, { query: '{ projects(first: 1000000) { pageInfo { hasNextPage } } }' }))).toMatchObject({ code: 'BAD_USER_INPUT' });
    expect((await post(token, { query: '{ projects(first: 100) { pageInfo { hasNextPage } } }' })).body.errors).toBeUndefined();
  });

  it('batched operations (a JSON array of requests) are refused', async () => {
    const batch = await post(token, [{ query: '{ projects { pageInfo { hasNextPage } } }' }, { query: '{ projects { pageInfo { hasNextPage } } }' }]);
    expect(batch.status).toBeGreaterThanOrEqual(400);
    expect(batch.status).toBeLessThan(500);
    expect(batch.body.data ?? null).toBeNull();
  });
});

describe('request size and time limits', () => {
  it('a body over REPOLENS_MAX_BODY_BYTES is answered 413 and nothing runs', async () => {
    const before = await projectCount();
    const padding = 'x'.repeat(70 * 1024);
    const answer = await post(token, { query: 'mutation { createProject(input: { name: "too-big" }) { project { id } } }', variables: { padding } });
    expect(answer.status).toBe(413);
    expect(answer.body.errors?.[0]?.message ?? JSON.stringify(answer.body)).toMatch(/larger than 65536 bytes/);
    expect(await projectCount()).toBe(before);
  });

  it('a POST without Content-Length (chunked) is answered 411', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const request = httpRequest(`${app.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      request.write('{"query":"{ projects { pageInfo { hasNextPage } } }"}');
      request.end();
    });
    expect(status).toBe(411);
  });

  it('headers over REPOLENS_MAX_HEADER_BYTES are answered 431', async () => {
    const line = await rawExchange(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(10 * 1024)}\r\n\r\n`);
    expect(line).toMatch(/^HTTP\/1\.1 431/);
    expect(await rawExchange('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
  });

  it('a body that trickles past REPOLENS_REQUEST_TIMEOUT_MS is answered 408 and the connection closed', async () => {
    const before = await projectCount();
    const body = JSON.stringify({ query: 'mutation { createProject(input: { name: "slow" }) { project { id } } }' });
    const started = Date.now();
    // Declares the whole body, sends half, then nothing.
    const line = await rawExchange(
      `POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, body.length / 2)}`,
      { waitMs: 10_000 },
    );
    expect(line).toMatch(/^HTTP\/1\.1 408/);
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(await projectCount()).toBe(before);
  });
});

describe('per-token limits', () => {
  it(`mutations: past REPOLENS_MUTATIONS_PER_MINUTE a token gets FORBIDDEN (RATE_LIMITED), HTTP 429 and Retry-After, and nothing changes; another token is not affected`, async () => {
    // Each root field counts: 7 aliases in one request are more than a whole minute's worth.
    const seven = `mutation { ${Array.from({ length: 7 }, (_, index) => `p${index}: createProject(input: { name: "burst-${index}" }) { project { id } }`).join(' ')} }`;
    const before = await projectCount();
    const whole = await post(token, { query: seven });
    expect(firstError(whole)).toMatchObject({ code: 'FORBIDDEN', reason: 'RATE_LIMITED', message: expect.stringMatching(/at most 6 mutations/) });
    expect(await projectCount()).toBe(before);

    // The bucket holds 6 (the setup used 2: createProject and addRepository).
    const accepted: number[] = [];
    let refused: Answer | undefined;
    for (let index = 0; index < 6 && !refused; index++) {
      const answer = await post(token, { query: `mutation { createProject(input: { name: "rate-${index}" }) { project { id } } }` });
      if (answer.body.errors) refused = answer;
      else accepted.push(index);
    }
    expect(accepted.length).toBeGreaterThanOrEqual(4);
    expect(refused).toBeDefined();
    expect(refused!.status).toBe(429);
    expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(firstError(refused!)).toMatchObject({ code: 'FORBIDDEN', reason: 'RATE_LIMITED' });
    expect(await projectCount()).toBe(before + accepted.length);
    // Queries are not limited, and another token has its own bucket.
    expect((await post(token, { query: '{ projects { pageInfo { hasNextPage } } }' })).body.errors).toBeUndefined();
    expect((await post(otherToken, { query: 'mutation { createProject(input: { name: "other" }) { project { id } } }' })).body.errors).toBeUndefined();
  });

  it('subscriptions: past REPOLENS_MAX_SUBSCRIPTIONS_PER_TOKEN the next one gets FORBIDDEN (TOO_MANY_SUBSCRIPTIONS); a closed one frees its slot', async () => {
    const client = await app.client('limits');
    const first = client.subscribe(SyncStatusDocument, { repositoryId });
    const second = client.subscribe(SyncStatusDocument, { repositoryId });
    await openSubscriptions(2);
    const third = client.subscribe(SyncStatusDocument, { repositoryId });
    await third.waitFor(() => false, 5_000).catch(() => undefined);
    expect(JSON.stringify(third.errors)).toMatch(/TOO_MANY_SUBSCRIPTIONS|already holds 2 subscriptions/);
    // Another token of the same tenant is not affected.
    const secondToken = (await createApiToken(app.app.db.prisma, 'limits')).token;
    const other = new TestClient(app.url, secondToken).subscribe(SyncStatusDocument, { repositoryId });
    await other.waitFor(() => false, 1_000).catch(() => undefined);
    expect(other.errors).toEqual([]);
    await first.close();
    await openSubscriptions(1);
    const fourth = client.subscribe(SyncStatusDocument, { repositoryId });
    await openSubscriptions(2);
    expect(fourth.errors).toEqual([]);
    for (const subscription of [second, third, fourth, other]) await subscription.close();
    await openSubscriptions(0);
  });

  it('a WebSocket message over REPOLENS_MAX_BODY_BYTES closes the socket (1009)', async () => {
    const socket = new WebSocket(`${app.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}`, pad: 'x'.repeat(70 * 1024) } }));
    expect(await closed).toBe(1009);
  });
});

const tokenIds = new Map<string, string>();
function tokenIdOf(bearer: string): string {
  const id = tokenIds.get(bearer);
  if (!id) throw new Error('token id not loaded');
  return id;
}

beforeAll(async () => {
  const { hashToken } = await import('../src/storage/secrets.js');
  for (const bearer of [token, otherToken]) {
    const row = await app.app.db.prisma.apiToken.findUniqueOrThrow({ where: { tokenHash: hashToken(bearer) } });
    tokenIds.set(bearer, row.id);
  }
});

/** Until the first token holds `count` subscriptions on the server. */
async function openSubscriptions(count: number): Promise<void> {
  await waitFor(`${count} open subscriptions`, () => app.app.services.limits.openSubscriptions(tokenIdOf(token)), (open) => open === count, 10_000);
}
