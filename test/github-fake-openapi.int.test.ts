import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import pino from 'pino';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GithubApi } from '../src/providers/githubApi.js';
import { createUpstream } from './support/gitFixtures.js';
import { startFakeGithub, type FakeGithub } from './support/githubApi.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

const exec = promisify(execFile);

// The GitHub fake is held to GitHub's published OpenAPI description
// (@octokit/openapi, api.github.com): every answer it gives to the requests
// the service makes has a status the operation documents, and a body that
// validates against the documented schema of that status and media type.

interface OpenApiResponse {
  $ref?: string;
  content?: Record<string, { schema: unknown }>;
}
interface OpenApi {
  paths: Record<string, Record<string, { responses: Record<string, OpenApiResponse> }>>;
  components: { responses: Record<string, OpenApiResponse> };
}

const TOKEN = 'ghp_openapi0123456789abcdef';
const specId = 'https://api.github.com/openapi.json';
let spec: OpenApi;
let ajv: Ajv;
let server: GitServer;
let github: FakeGithub;

beforeAll(async () => {
  const file = createRequire(import.meta.url).resolve('@octokit/openapi/generated/api.github.com.json');
  spec = JSON.parse(await readFile(file, 'utf8')) as OpenApi;
  // OpenAPI 3.0 schemas: `nullable` is understood by Ajv; the other OpenAPI keywords (example, discriminator…) are not checks.
  ajv = new Ajv({ strict: false, validateSchema: false, allErrors: true });
  (addFormatsModule as unknown as (ajv: Ajv) => void)(ajv);
  ajv.addSchema({ $id: specId, components: nullableWithoutType((spec as unknown as { components: unknown }).components) });
  server = await startGitServer();
  github = await startFakeGithub({ gitRoot: server.root, tokens: { [TOKEN]: { login: 'octocat', scopes: ['repo'] } } });
  await createUpstream(server, 'octo/spec');
}, 60_000);

afterAll(async () => {
  await github?.close();
  await server?.close();
});

const validators = new Map<string, ValidateFunction>();

/** The documented response of `method path` for `status`, with $refs to components/responses followed. */
function documented(path: string, method: string, status: number): OpenApiResponse | undefined {
  let response = spec.paths[path]?.[method]?.responses[String(status)];
  while (response?.$ref) response = spec.components.responses[response.$ref.split('/').pop()!];
  return response;
}

async function check(path: string, method: string, request: { url: string; token?: string | null; accept?: string; ifNoneMatch?: string; body?: unknown }, status: number) {
  const response = await fetch(`${github.url}${request.url}`, {
    method: method.toUpperCase(),
    headers: {
      ...(request.token === null ? {} : { authorization: `Bearer ${request.token ?? TOKEN}` }),
      accept: request.accept ?? 'application/vnd.github+json',
      ...(request.ifNoneMatch ? { 'if-none-match': request.ifNoneMatch } : {}),
      ...(request.body ? { 'content-type': 'application/json' } : {}),
    },
    ...(request.body ? { body: JSON.stringify(request.body) } : {}),
  });
  expect(response.status).toBe(status);
  const doc = documented(path, method, status);
  expect(doc, `${method.toUpperCase()} ${path} does not document ${status}`).toBeDefined();
  const text = await response.text();
  expect(response.headers.get('x-ratelimit-limit')).toMatch(/^\d+$/);
  if (!doc!.content) {
    expect(text).toBe('');
    return response;
  }
  const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
  const media = doc!.content[type];
  expect(media, `${method.toUpperCase()} ${path} ${status} is not documented as ${type}`).toBeDefined();
  const key = `${path} ${method} ${status} ${type}`;
  let validate = validators.get(key);
  if (!validate) {
    validate = ajv.compile(nullableWithoutType(rebase(media!.schema)) as object);
    validators.set(key, validate);
  }
  const body = type.endsWith('json') ? JSON.parse(text) : text;
  const valid = validate(body);
  expect(valid, `${method.toUpperCase()} ${path} ${status}: ${JSON.stringify(validate.errors?.slice(0, 5))}`).toBe(true);
  return response;
}

/**
 * OpenAPI 3.0 puts `nullable: true` beside a $ref or allOf too; Ajv understands `nullable` only
 * beside a `type`. Such a schema becomes "that, or null".
 */
function nullableWithoutType(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(nullableWithoutType);
  if (!schema || typeof schema !== 'object') return schema;
  const entries = Object.entries(schema as Record<string, unknown>).map(([key, value]) => [key, nullableWithoutType(value)] as const);
  const object = Object.fromEntries(entries) as Record<string, unknown>;
  if (object.nullable === true && object.type === undefined) {
    const { nullable: _nullable, ...rest } = object;
    return { anyOf: [rest, { type: 'null' }] };
  }
  return object;
}

/** Points the schema's local $refs (#/components/…) at the spec's components, added to Ajv under specId. */
function rebase(schema: unknown): unknown {
  return JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', `"${specId}#/components/`));
}

describe('the GitHub fake against api.github.com\'s OpenAPI description', () => {
  it('GET /user: 200 (private-user) and 401', async () => {
    await check('/user', 'get', { url: '/user' }, 200);
    await check('/user', 'get', { url: '/user', token: 'ghp_wrong' }, 401);
  });

  it('GET /repos/{owner}/{repo}: 200 (full-repository) and 404', async () => {
    await check('/repos/{owner}/{repo}', 'get', { url: '/repos/octo/spec' }, 200);
    await check('/repos/{owner}/{repo}', 'get', { url: '/repos/octo/none' }, 404);
  });

  it('GET /repos/{owner}/{repo}/commits/{ref} as application/vnd.github.sha: 200, then 304 to its ETag, and 422', async () => {
    const first = await check('/repos/{owner}/{repo}/commits/{ref}', 'get', { url: '/repos/octo/spec/commits/heads%2Fmain', accept: 'application/vnd.github.sha' }, 200);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"/);
    // 304 is GitHub's answer to any conditional request (rate-limit docs), though this operation does not list it.
    const again = await fetch(`${github.url}/repos/octo/spec/commits/heads%2Fmain`, { headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/vnd.github.sha', 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    await check('/repos/{owner}/{repo}/commits/{ref}', 'get', { url: '/repos/octo/spec/commits/heads%2Fnope', accept: 'application/vnd.github.sha' }, 422);
  });

  it('GET /repos/{owner}/{repo}/compare/{basehead}: 200 (commit-comparison with files, and the diff media type, gzipped) and 404; git/commits/{commit_sha}: 200 (git-commit) and 404', async () => {
    const upstream = await createUpstream(server, 'octo/spec-compare');
    const base = await upstream.head();
    const head = await upstream.commit({ 'added.txt': 'added\n', 'README.md': null });
    await check('/repos/{owner}/{repo}/compare/{basehead}', 'get', { url: `/repos/octo/spec-compare/compare/${base}...${head}` }, 200);
    await check('/repos/{owner}/{repo}/compare/{basehead}', 'get', { url: `/repos/octo/spec-compare/compare/${base}...${'f'.repeat(40)}` }, 404);
    const diff = await check('/repos/{owner}/{repo}/compare/{basehead}', 'get', { url: `/repos/octo/spec-compare/compare/${base}...${head}`, accept: 'application/vnd.github.diff' }, 200);
    expect(diff.headers.get('content-encoding')).toBe('gzip');
    await check('/repos/{owner}/{repo}/git/commits/{commit_sha}', 'get', { url: `/repos/octo/spec-compare/git/commits/${head}` }, 200);
    await check('/repos/{owner}/{repo}/git/commits/{commit_sha}', 'get', { url: `/repos/octo/spec-compare/git/commits/${'f'.repeat(40)}` }, 404);
  });

  it('GET /repos/{owner}/{repo}/contents/{path}: 200 for a file and a symlink, 404', async () => {
    const upstream = await createUpstream(server, 'octo/spec-contents', { files: { 'dir/file.txt': 'content\n' } });
    const ref = await upstream.commit({ link: { symlink: 'dir/file.txt' } });
    await check('/repos/{owner}/{repo}/contents/{path}', 'get', { url: `/repos/octo/spec-contents/contents/dir/file.txt?ref=${ref}` }, 200);
    await check('/repos/{owner}/{repo}/contents/{path}', 'get', { url: `/repos/octo/spec-contents/contents/link?ref=${ref}` }, 200);
    await check('/repos/{owner}/{repo}/contents/{path}', 'get', { url: `/repos/octo/spec-contents/contents/missing.txt?ref=${ref}` }, 404);
  });

  it('GET /repos/{owner}/{repo}/git/trees/{tree_sha}: 200 (git-tree with blobs, trees and a symlink), 404; compare dates are UTC', async () => {
    const upstream = await createUpstream(server, 'octo/spec-trees', { files: { 'dir/file.txt': 'content\n' } });
    const head = await upstream.commit({ link: { symlink: 'dir/file.txt' }, 'bin/run': { executable: '#!/bin/sh\n' } }, 'zoned', undefined, { author: '+0530', committer: '-0800' });
    const tree = (await exec('git', ['-C', upstream.bareDir, 'rev-parse', `${head}^{tree}`])).stdout.trim();
    await check('/repos/{owner}/{repo}/git/trees/{tree_sha}', 'get', { url: `/repos/octo/spec-trees/git/trees/${tree}` }, 200);
    await check('/repos/{owner}/{repo}/git/trees/{tree_sha}', 'get', { url: `/repos/octo/spec-trees/git/trees/${'e'.repeat(40)}` }, 404);
    const entries = await new GithubApi({ baseUrl: github.url, token: TOKEN, timeoutMs: 10_000, maxRateLimitWaitS: 0, logger: pino({ level: 'silent' }) }).treeEntries('octo/spec-trees', tree);
    expect(entries.map((entry) => `${entry.mode} ${entry.type} ${entry.name}`).sort()).toEqual(['040000 tree bin', '040000 tree dir', '120000 blob link']);
    const comparison = (await (await fetch(`${github.url}/repos/octo/spec-trees/compare/${head}~1...${head}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      commits: { commit: { author: { date: string }; committer: { date: string } } }[];
    };
    expect(comparison.commits[0]!.commit.author.date).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('hooks: POST 201 (hook) and 422 on a duplicate, GET 200, DELETE 204 and then 404', async () => {
    const body = { name: 'web', active: true, events: ['push'], config: { url: 'https://example.test/hook', content_type: 'json', secret: 's3cret', insecure_ssl: '0' } };
    await check('/repos/{owner}/{repo}/hooks', 'post', { url: '/repos/octo/spec/hooks', body }, 201);
    const [hook] = github.hooks('octo/spec');
    expect(hook?.config.secret).toBe('s3cret');
    const id = hook!.id;
    await check('/repos/{owner}/{repo}/hooks', 'post', { url: '/repos/octo/spec/hooks', body }, 422);
    await check('/repos/{owner}/{repo}/hooks', 'get', { url: '/repos/octo/spec/hooks' }, 200);
    await check('/repos/{owner}/{repo}/hooks/{hook_id}', 'delete', { url: `/repos/octo/spec/hooks/${id}` }, 204);
    await check('/repos/{owner}/{repo}/hooks/{hook_id}', 'delete', { url: `/repos/octo/spec/hooks/${id}` }, 404);
  });

  it('a spent rate limit: 403 with x-ratelimit-remaining 0 and a basic-error body', async () => {
    github.setRateLimit('octocat', { used: 5000, reset: Math.floor(Date.now() / 1000) + 60 });
    try {
      const response = await check('/repos/{owner}/{repo}', 'get', { url: '/repos/octo/spec' }, 403);
      expect(response.headers.get('x-ratelimit-remaining')).toBe('0');
      expect(Number(response.headers.get('x-ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000);
    } finally {
      github.setRateLimit('octocat', { used: 0 });
    }
  });
});
