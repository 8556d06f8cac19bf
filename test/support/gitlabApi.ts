import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { blob, commitInfo, commitOf, mergeBase, rawDiff, revList, treeEntry } from './gitDiff.js';
import { readJson, readText, writeBody } from './httpBody.js';

/**
 * A fake of GitLab's REST API v4 (gitlab.com cannot run here), backed by the
 * real bare repositories of a test git server (`<root>/<namespace>/<project>.git`).
 * Only the endpoints the service uses, as GitLab documents them: tokens in
 * `PRIVATE-TOKEN` or `Authorization: Bearer`, `{"message": …}` errors (401,
 * 403, 404), project ids as URL-encoded paths, `RateLimit-*` headers and 429
 * with `Retry-After` once a token's budget is spent, hooks that need the
 * Maintainer role, and `X-Total`/`X-Next-Page`/`Link` pagination on lists.
 */
export interface FakeGitlabOptions {
  gitRoot: string;
  tokens: Record<string, { username: string; scopes?: string[]; /** Maintainer of every project (may manage hooks); default true */ maintainer?: boolean }>;
  /** Projects only a token may see (anonymous requests get 404). */
  privateProjects?: (fullPath: string) => boolean;
  /** An OAuth application (/oauth/authorize, /oauth/token with PKCE): who authorizes it, token lifetime. */
  oauth?: { clientId: string; clientSecret: string; username: string; expiresInS?: number };
}

export interface FakeGitlabRequest {
  method: string;
  path: string;
  username: string | null;
  status: number;
}

export interface FakeGitlabHook {
  id: number;
  url: string;
  token: string | null;
  push_events: boolean;
  tag_push_events: boolean;
  merge_requests_events: boolean;
  enable_ssl_verification: boolean;
}

export interface FakeGitlab {
  /** GITLAB_URL (the API is under /api/v4). */
  readonly url: string;
  readonly requests: readonly FakeGitlabRequest[];
  hooks(fullPath: string): FakeGitlabHook[];
  /** Spends a token's budget: its requests get 429 with `Retry-After: seconds` until then. */
  rateLimit(username: string, retryAfterS: number): void;
  resetRequests(): void;
  /** Refresh grants answered (each rotates the pair). */
  readonly refreshes: number;
  /** Revokes every refresh token issued so far (the user revoked the application). */
  revokeRefreshTokens(): void;
  /** Every answer waits this long first (a slow API). */
  setDelay(ms: number): void;
  /** Rewrites JSON answers before they are sent (a hostile or broken API); null stops. */
  tamper(rewrite: ((path: string, body: unknown) => unknown) | null): void;
  /** Bytes of the answers' bodies sent so far. */
  readonly bytesSent: number;
  close(): Promise<void>;
}

const git = promisify(execFile);

export async function startFakeGitlab(options: FakeGitlabOptions): Promise<FakeGitlab> {
  const requests: FakeGitlabRequest[] = [];
  const hooks = new Map<string, FakeGitlabHook[]>();
  const limitedUntil = new Map<string, number>();
  let nextHookId = 1000;
  let delayMs = 0;
  let rewrite: ((path: string, body: unknown) => unknown) | null = null;
  let bytesSent = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { message: `500 Internal Server Error (${(error as Error).message})` });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gitlab.test');
    // GitLab keeps %2F encoded in project ids: split the raw path, then decode each segment.
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const record: FakeGitlabRequest = { method: req.method ?? 'GET', path: url.pathname, username: null, status: 0 };
    requests.push(record);
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      if (status === 204) return void res.writeHead(204, headers).end();
      bytesSent += writeBody(req, res, status, JSON.stringify(rewrite ? rewrite(url.pathname, body) : body), { 'content-type': 'application/json', ...headers });
    };

    if (url.pathname === '/oauth/authorize' || url.pathname === '/oauth/token') return oauth(req, url, send);

    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const tokenValue = (req.headers['private-token'] as string | undefined) ?? bearer;
    const token = tokenValue !== undefined ? options.tokens[tokenValue] : undefined;
    if (tokenValue !== undefined && !token) return send(401, { message: '401 Unauthorized' });
    record.username = token?.username ?? null;
    const now = Date.now() / 1000;
    const until = token ? limitedUntil.get(token.username) : undefined;
    if (until && until > now) {
      return send(429, { message: 'Retry later' }, {
        'retry-after': String(Math.ceil(until - now)),
        'ratelimit-limit': '2000',
        'ratelimit-observed': '2000',
        'ratelimit-remaining': '0',
        'ratelimit-reset': String(Math.ceil(until)),
        'ratelimit-resettime': new Date(until * 1000).toUTCString(),
      });
    }
    const rateHeaders = { 'ratelimit-limit': '2000', 'ratelimit-observed': '1', 'ratelimit-remaining': '1999', 'ratelimit-reset': String(Math.ceil(now + 60)) };
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => send(status, body, { ...rateHeaders, ...headers });

    if (segments[0] !== 'api' || segments[1] !== 'v4') return answer(404, { error: '404 Not Found' });
    const rest = segments.slice(2);
    if (rest[0] === 'user' && rest.length === 1 && req.method === 'GET') {
      if (!token) return answer(401, { message: '401 Unauthorized' });
      return answer(200, userJson(token.username));
    }
    if (rest[0] === 'personal_access_tokens' && rest[1] === 'self' && req.method === 'GET') {
      if (!token) return answer(401, { message: '401 Unauthorized' });
      return answer(200, { id: 42, name: 'repolens', revoked: false, created_at: '2026-01-01T00:00:00.000Z', scopes: token.scopes ?? ['api'], user_id: userId(token.username), last_used_at: null, active: true, expires_at: '2027-01-01' });
    }
    if (rest[0] !== 'projects' || !rest[1]) return answer(404, { error: '404 Not Found' });
    const fullPath = rest[1];
    const bareDir = path.join(options.gitRoot, `${fullPath}.git`);
    const hidden = !token && (options.privateProjects?.(fullPath) ?? false);
    if (hidden || fullPath.includes('..') || !existsSync(bareDir)) return answer(404, { message: '404 Project Not Found' });

    if (rest.length === 2 && req.method === 'GET') {
      const defaultBranch = (await git('git', ['-C', bareDir, 'symbolic-ref', '--short', 'HEAD'])).stdout.trim();
      const statistics = url.searchParams.get('statistics') === 'true' && token;
      const sizeKb = Number((await git('du', ['-sk', bareDir])).stdout.split('\t')[0]);
      return answer(200, projectJson(fullPath, defaultBranch, options.privateProjects?.(fullPath) ?? false, statistics ? sizeKb * 1024 : null));
    }
    if (rest[2] === 'repository' && rest[3] === 'branches' && rest[4] && rest.length === 5 && req.method === 'GET') {
      const branch = rest[4];
      let sha: string | null = null;
      if (!branch.startsWith('-')) {
        sha = await git('git', ['-C', bareDir, 'rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]).then(({ stdout }) => stdout.trim() || null, () => null);
      }
      if (!sha) return answer(404, { message: '404 Branch Not Found' });
      return answer(200, { name: branch, merged: false, protected: false, default: false, developers_can_push: false, developers_can_merge: false, can_push: true, web_url: `https://gitlab.com/${fullPath}/-/tree/${branch}`, commit: { id: sha, short_id: sha.slice(0, 8), title: 'commit', message: 'commit', parent_ids: [], created_at: '2026-01-01T00:00:00.000+00:00' } });
    }
    if (rest[2] === 'repository' && rest[3] === 'compare' && rest.length === 4 && req.method === 'GET') {
      const [base, head] = await Promise.all([commitOf(bareDir, url.searchParams.get('from') ?? ''), commitOf(bareDir, url.searchParams.get('to') ?? '')]);
      if (!base || !head) return answer(404, { message: '404 Ref Not Found' });
      // straight=false (the default): from the merge base, as git diff base...head.
      const from = url.searchParams.get('straight') === 'true' ? base : ((await mergeBase(bareDir, base, head)) ?? base);
      const changes = await rawDiff(bareDir, from, head);
      const mode = (value: string) => (/^0+$/.test(value) ? '0' : value);
      return answer(200, {
        commit: await commitJson(bareDir, fullPath, head),
        commits: await Promise.all((await revList(bareDir, `${from}..${head}`)).map((sha) => commitJson(bareDir, fullPath, sha))),
        diffs: changes.map((change) => ({
          old_path: change.previousPath ?? change.path,
          new_path: change.path,
          a_mode: mode(change.oldMode),
          b_mode: mode(change.newMode),
          new_file: change.status === 'A',
          renamed_file: change.status === 'R',
          deleted_file: change.status === 'D',
          // Patches are not computed here (the service does not read them).
          diff: '',
        })),
        compare_timeout: false,
        compare_same_ref: base === head,
        web_url: `https://gitlab.com/${fullPath}/-/compare/${base}...${head}`,
      });
    }
    if (rest[2] === 'repository' && rest[3] === 'files' && rest[4] && rest.length === 5 && req.method === 'GET') {
      const filePath = rest[4];
      const ref = await commitOf(bareDir, url.searchParams.get('ref') ?? '');
      if (!ref) return answer(400, { error: 'ref is missing' });
      const entry = filePath.split('/').includes('..') ? null : await treeEntry(bareDir, ref, filePath);
      if (!entry || entry.type !== 'blob') return answer(404, { message: '404 File Not Found' });
      const data = await blob(bareDir, entry.sha);
      return answer(200, {
        file_name: filePath.split('/').pop(),
        file_path: filePath,
        size: data.length,
        encoding: 'base64',
        content_sha256: createHash('sha256').update(data).digest('hex'),
        ref: url.searchParams.get('ref'),
        blob_id: entry.sha,
        commit_id: ref,
        last_commit_id: ref,
        execute_filemode: entry.mode === '100755',
        content: data.toString('base64'),
      });
    }
    if (rest[2] === 'hooks') {
      // Hooks need the Maintainer role: 403 otherwise.
      if (!token) return answer(401, { message: '401 Unauthorized' });
      if (token.maintainer === false) return answer(403, { message: '403 Forbidden' });
      const list = hooks.get(fullPath) ?? [];
      hooks.set(fullPath, list);
      if (rest.length === 3 && req.method === 'GET') {
        const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
        const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get('per_page') ?? 20)));
        const pages = Math.max(1, Math.ceil(list.length / perPage));
        const base = `${url.origin}${url.pathname}`;
        const link = (p: number, rel: string) => `<${base}?page=${p}&per_page=${perPage}>; rel="${rel}"`;
        return answer(200, list.slice((page - 1) * perPage, page * perPage).map((hook) => hookJson(fullPath, hook)), {
          'x-total': String(list.length),
          'x-total-pages': String(pages),
          'x-page': String(page),
          'x-per-page': String(perPage),
          'x-next-page': page < pages ? String(page + 1) : '',
          'x-prev-page': page > 1 ? String(page - 1) : '',
          link: [page < pages ? link(page + 1, 'next') : null, link(1, 'first'), link(pages, 'last')].filter(Boolean).join(', '),
        });
      }
      if (rest.length === 3 && req.method === 'POST') {
        const body = await readJson(req);
        if (!body || typeof body.url !== 'string' || !/^https?:\/\//.test(body.url)) return answer(400, { error: 'url is missing' });
        const hook: FakeGitlabHook = {
          id: nextHookId++,
          url: body.url,
          token: typeof body.token === 'string' ? body.token : null,
          push_events: body.push_events !== false,
          tag_push_events: body.tag_push_events === true,
          merge_requests_events: body.merge_requests_events === true,
          enable_ssl_verification: body.enable_ssl_verification !== false,
        };
        list.push(hook);
        return answer(201, hookJson(fullPath, hook));
      }
      const index = list.findIndex((hook) => String(hook.id) === rest[3]);
      if (rest.length === 4 && req.method === 'DELETE' && index >= 0) {
        list.splice(index, 1);
        return answer(204, null);
      }
      return answer(404, { message: '404 Not found' });
    }
    return answer(404, { error: '404 Not Found' });
  }

  const codes = new Map<string, { redirectUri: string; challenge: string | null; scope: string }>();
  const refreshTokens = new Map<string, { accessToken: string; scope: string }>();
  let refreshes = 0;

  /** Issues an access token (registered for the API) and its refresh token. */
  function issue(scope: string) {
    const app = options.oauth!;
    const accessToken = randomBytes(32).toString('hex');
    const refreshToken = randomBytes(32).toString('hex');
    options.tokens[accessToken] = { username: app.username, scopes: scope.split(' ').filter(Boolean) };
    refreshTokens.set(refreshToken, { accessToken, scope });
    return { access_token: accessToken, token_type: 'Bearer', expires_in: app.expiresInS ?? 7200, refresh_token: refreshToken, scope, created_at: Math.floor(Date.now() / 1000) };
  }

  /**
   * GitLab's OAuth 2 provider as documented: authorization code with PKCE (S256), and
   * refresh_token grants that rotate the pair (the old refresh and access tokens stop working).
   */
  async function oauth(req: IncomingMessage, url: URL, send: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    const app = options.oauth;
    if (url.pathname === '/oauth/authorize' && req.method === 'GET') {
      const redirectUri = url.searchParams.get('redirect_uri') ?? '';
      if (!app || url.searchParams.get('client_id') !== app.clientId || url.searchParams.get('response_type') !== 'code' || !/^https?:\/\//.test(redirectUri)) {
        return send(400, { error: 'invalid_request', error_description: 'The request is missing a required parameter or is otherwise malformed.' });
      }
      const method = url.searchParams.get('code_challenge_method');
      const code = randomBytes(16).toString('hex');
      codes.set(code, { redirectUri, challenge: method === 'S256' ? url.searchParams.get('code_challenge') : null, scope: url.searchParams.get('scope') ?? 'api' });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state') ?? '');
      return send(302, null, { location: back.toString() });
    }
    if (url.pathname === '/oauth/token' && req.method === 'POST') {
      const text = await readText(req);
      const form = (req.headers['content-type'] ?? '').includes('json') ? new URLSearchParams(JSON.parse(text) as Record<string, string>) : new URLSearchParams(text);
      const invalidGrant = () => send(400, { error: 'invalid_grant', error_description: 'The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.' });
      if (!app || form.get('client_id') !== app.clientId || form.get('client_secret') !== app.clientSecret) {
        return send(401, { error: 'invalid_client', error_description: 'Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.' });
      }
      if (form.get('grant_type') === 'authorization_code') {
        const issued = codes.get(form.get('code') ?? '');
        if (!issued || issued.redirectUri !== form.get('redirect_uri')) return invalidGrant();
        codes.delete(form.get('code')!);
        const verifier = form.get('code_verifier');
        if (issued.challenge && (!verifier || createHash('sha256').update(verifier).digest('base64url') !== issued.challenge)) return invalidGrant();
        return send(200, issue(issued.scope));
      }
      if (form.get('grant_type') === 'refresh_token') {
        const previous = refreshTokens.get(form.get('refresh_token') ?? '');
        if (!previous) return invalidGrant();
        refreshTokens.delete(form.get('refresh_token')!);
        delete options.tokens[previous.accessToken];
        refreshes++;
        return send(200, issue(previous.scope));
      }
      return send(400, { error: 'unsupported_grant_type', error_description: 'The authorization grant type is not supported by the authorization server.' });
    }
    return send(404, { error: '404 Not Found' });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    hooks: (fullPath) => (hooks.get(fullPath) ?? []).map((hook) => ({ ...hook })),
    rateLimit(username, retryAfterS) {
      limitedUntil.set(username, Date.now() / 1000 + retryAfterS);
    },
    resetRequests() {
      requests.length = 0;
    },
    get refreshes() {
      return refreshes;
    },
    revokeRefreshTokens() {
      refreshTokens.clear();
    },
    setDelay(ms) {
      delayMs = ms;
    },
    tamper(next) {
      rewrite = next;
    },
    get bytesSent() {
      return bytesSent;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

function userId(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32BE(0) % 10_000_000;
}

function userJson(username: string) {
  return { id: userId(username), username, name: username, state: 'active', locked: false, avatar_url: null, web_url: `https://gitlab.com/${username}`, created_at: '2020-01-01T00:00:00.000Z', bot: false };
}

function projectJson(fullPath: string, defaultBranch: string, isPrivate: boolean, repositorySize: number | null) {
  const name = fullPath.split('/').pop()!;
  const namespace = fullPath.split('/').slice(0, -1).join('/');
  return {
    id: userId(fullPath),
    name,
    path: name,
    path_with_namespace: fullPath,
    name_with_namespace: fullPath.split('/').join(' / '),
    namespace: { id: userId(namespace), name: namespace, path: namespace, kind: 'group', full_path: namespace },
    default_branch: defaultBranch,
    visibility: isPrivate ? 'private' : 'public',
    http_url_to_repo: `https://gitlab.com/${fullPath}.git`,
    ssh_url_to_repo: `git@gitlab.com:${fullPath}.git`,
    web_url: `https://gitlab.com/${fullPath}`,
    empty_repo: false,
    archived: false,
    created_at: '2020-01-01T00:00:00.000Z',
    last_activity_at: '2020-01-01T00:00:00.000Z',
    ...(repositorySize === null ? {} : { statistics: { commit_count: 1, storage_size: repositorySize, repository_size: repositorySize, wiki_size: 0, lfs_objects_size: 0, job_artifacts_size: 0, packages_size: 0, snippets_size: 0, uploads_size: 0 } }),
  };
}

function hookJson(fullPath: string, hook: FakeGitlabHook) {
  return {
    id: hook.id,
    url: hook.url,
    project_id: userId(fullPath),
    push_events: hook.push_events,
    tag_push_events: hook.tag_push_events,
    merge_requests_events: hook.merge_requests_events,
    issues_events: false,
    note_events: false,
    enable_ssl_verification: hook.enable_ssl_verification,
    created_at: '2026-01-01T00:00:00.000Z',
  };
}

/** A commit as GitLab's API shows it (dates keep their offsets, unlike GitHub's). */
function gitlabDate(iso: string): string {
  return iso.replace(/(:\d\d)(Z|[+-]\d\d:\d\d)$/, (_, seconds: string, zone: string) => `${seconds}.000${zone === 'Z' ? '+00:00' : zone}`);
}

async function commitJson(bareDir: string, fullPath: string, sha: string) {
  const info = await commitInfo(bareDir, sha);
  return {
    id: sha,
    short_id: sha.slice(0, 8),
    title: info.message.split('\n')[0],
    message: info.message,
    author_name: info.author.name,
    author_email: info.author.email,
    // GitLab's dates: milliseconds and the author's offset ("2012-09-20T09:06:12.000+03:00").
    authored_date: gitlabDate(info.author.date),
    committer_name: info.committer.name,
    committer_email: info.committer.email,
    committed_date: gitlabDate(info.committer.date),
    created_at: gitlabDate(info.committer.date),
    parent_ids: info.parents,
    web_url: `https://gitlab.com/${fullPath}/-/commit/${sha}`,
  };
}
