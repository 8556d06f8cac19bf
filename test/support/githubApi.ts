import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { blob, commitInfo, commitOf, mergeBase, rawDiff, revCount, revList, textDiff, treeEntry, treeListing } from './gitDiff.js';
import { readJson, readText, writeBody } from './httpBody.js';

/**
 * A fake of GitHub's REST API (the SaaS cannot run here), backed by the real
 * bare repositories of a test git server (`<root>/<owner>/<repo>.git`). It
 * implements only the endpoints the service uses, as GitHub documents them:
 * status codes, JSON error bodies, the rate-limit headers on every answer, a
 * primary rate limit per token (403 with `x-ratelimit-remaining: 0` once
 * spent, restored at `x-ratelimit-reset`), ETags and 304 for conditional
 * requests (which cost no rate limit when authorized), and the
 * `application/vnd.github.sha` media type of "Get a commit".
 */
export interface FakeGithubOptions {
  /** Folder of bare repositories: `<owner>/<repo>.git`. */
  gitRoot: string;
  /** Accepted tokens and whom they belong to. */
  tokens: Record<string, { login: string; scopes?: string[]; /** may manage hooks (admin rights); default true */ hookAdmin?: boolean }>;
  /** Repositories only a token may see (anonymous requests get 404, as GitHub answers). */
  privateRepos?: (fullName: string) => boolean;
  /** Primary rate limit per hour for a token (5,000 on github.com) and for anonymous requests (60). */
  tokenLimit?: number;
  anonymousLimit?: number;
  /** An OAuth app (github.com/login/oauth/…): the user who authorizes it, and whether they refuse. */
  oauth?: { clientId: string; clientSecret: string; login: string; deny?: boolean };
}

export interface FakeGithubRequest {
  method: string;
  path: string;
  accept: string | undefined;
  ifNoneMatch: string | undefined;
  /** Login of the token used; null when anonymous or refused. */
  login: string | null;
  status: number;
}

interface RateWindow {
  limit: number;
  used: number;
  /** Epoch seconds. */
  reset: number;
}

/** A repository webhook as the fake stores it (the secret too: GitHub signs deliveries with it). */
export interface FakeHook {
  id: number;
  name: string;
  active: boolean;
  events: string[];
  config: { url: string; content_type: string; secret?: string; insecure_ssl: string };
  createdBy: string;
}

export interface FakeGithub {
  /** The API root, for GITHUB_API_URL. */
  readonly url: string;
  readonly requests: readonly FakeGithubRequest[];
  /** Sets a token's (or, with null, the anonymous) rate-limit window. */
  setRateLimit(login: string | null, window: Partial<RateWindow>): void;
  rateLimit(login: string | null): RateWindow;
  /** Hooks of a repository ("owner/name"). */
  hooks(fullName: string): FakeHook[];
  resetRequests(): void;
  /** Every answer waits this long first (a slow API). */
  setDelay(ms: number): void;
  /** Rewrites answers before they are sent (a hostile or broken API): JSON as parsed, text as a string; null stops. */
  tamper(rewrite: ((path: string, body: unknown) => unknown) | null): void;
  /** Bytes of the answers' bodies sent so far. */
  readonly bytesSent: number;
  close(): Promise<void>;
}

const git = promisify(execFile);
const docs = 'https://docs.github.com/rest';

export async function startFakeGithub(options: FakeGithubOptions): Promise<FakeGithub> {
  const requests: FakeGithubRequest[] = [];
  const hooks = new Map<string, FakeHook[]>();
  let nextHookId = 400_000_000;
  let delayMs = 0;
  let rewrite: ((path: string, body: unknown) => unknown) | null = null;
  let bytesSent = 0;
  const windows = new Map<string, RateWindow>();
  const now = () => Math.floor(Date.now() / 1000);
  const windowOf = (login: string | null): RateWindow => {
    const key = login ?? '';
    let window = windows.get(key);
    if (!window || window.reset <= now()) {
      window = { limit: login ? (options.tokenLimit ?? 5000) : (options.anonymousLimit ?? 60), used: 0, reset: now() + 3600 };
      windows.set(key, window);
    }
    return window;
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { message: `fake GitHub failed: ${(error as Error).message}` });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://github.test');
    const record: FakeGithubRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      accept: req.headers.accept,
      ifNoneMatch: req.headers['if-none-match'],
      login: null,
      status: 0,
    };
    requests.push(record);
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      if (status === 304) {
        res.writeHead(304, headers).end();
      } else {
        const raw = typeof body === 'string' || Buffer.isBuffer(body);
        const value = rewrite ? rewrite(url.pathname, Buffer.isBuffer(body) ? body.toString('utf8') : body) : body;
        const text = raw ? (value as string | Buffer) : JSON.stringify(value);
        const type = raw ? (headers['content-type'] ?? 'text/plain; charset=utf-8') : 'application/json; charset=utf-8';
        bytesSent += writeBody(req, res, status, text, { ...headers, 'content-type': type });
      }
    };

    if (url.pathname.startsWith('/login/oauth/')) return oauth(req, url, send);

    // Authentication: "Authorization: token <t>" or "Bearer <t>" (both documented).
    const authorization = req.headers.authorization;
    let login: string | null = null;
    let refused = false;
    if (authorization) {
      const match = /^(?:token|bearer)\s+(\S+)$/i.exec(authorization);
      const owner = match ? options.tokens[match[1]!] : undefined;
      refused = !owner;
      login = owner?.login ?? null;
      record.login = login;
    }
    // A refused token counts against the anonymous window, as GitHub counts failed logins.
    const window = windowOf(login);
    const rateHeaders = (): Record<string, string> => ({
      'x-ratelimit-limit': String(window.limit),
      'x-ratelimit-remaining': String(Math.max(0, window.limit - window.used)),
      'x-ratelimit-reset': String(window.reset),
      'x-ratelimit-used': String(window.used),
      'x-ratelimit-resource': 'core',
      'x-github-api-version-selected': '2022-11-28',
    });
    if (window.used >= window.limit) {
      return send(
        403,
        { message: `API rate limit exceeded for ${login ? `user ID ${loginId(login)}` : '127.0.0.1'}.`, documentation_url: `${docs}/overview/rate-limits-for-the-rest-api`, status: '403' },
        rateHeaders(),
      );
    }
    // Counted before answering; a 304 to an authorized request is given back below.
    window.used++;
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      if (status === 304 && login) window.used--;
      send(status, body, { ...rateHeaders(), ...headers });
    };
    if (refused) return answer(401, { message: 'Bad credentials', documentation_url: docs, status: '401' });

    if (url.pathname === '/user' && req.method === 'GET') {
      if (!login) return answer(401, { message: 'Requires authentication', documentation_url: `${docs}/users/users#get-the-authenticated-user`, status: '401' });
      const scopes = options.tokens[Object.keys(options.tokens).find((token) => options.tokens[token]!.login === login)!]!.scopes ?? [];
      return answer(200, userJson(login), { 'x-oauth-scopes': scopes.join(', '), 'x-accepted-oauth-scopes': '' });
    }
    const repoPath = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (!repoPath) return answer(404, { message: 'Not Found', documentation_url: docs, status: '404' });
    const owner = decodeURIComponent(repoPath[1]!);
    const repo = decodeURIComponent(repoPath[2]!);
    const fullName = `${owner}/${repo}`;
    const bareDir = path.join(options.gitRoot, owner, `${repo}.git`);
    const hidden = !login && (options.privateRepos?.(fullName) ?? false);
    if (hidden || !existsSync(bareDir) || owner.includes('..') || repo.includes('..')) {
      return answer(404, { message: 'Not Found', documentation_url: `${docs}/repos/repos#get-a-repository`, status: '404' });
    }
    const rest = repoPath[3] ?? '';
    const hookPath = /^\/hooks(?:\/(\d+))?$/.exec(rest);
    if (hookPath) {
      // Hooks need admin rights; GitHub answers 404 (not 403) to a token without them.
      const owner = login ? Object.values(options.tokens).find((entry) => entry.login === login) : undefined;
      if (!owner || owner.hookAdmin === false) return answer(404, { message: 'Not Found', documentation_url: `${docs}/repos/webhooks`, status: '404' });
      const list = hooks.get(fullName) ?? [];
      hooks.set(fullName, list);
      if (!hookPath[1] && req.method === 'GET') return answer(200, list.map((hook) => hookJson(fullName, hook)));
      if (!hookPath[1] && req.method === 'POST') {
        const body = await readJson(req);
        const config = (body?.config ?? {}) as Record<string, unknown>;
        const invalid = (message: string) =>
          answer(422, { message: 'Validation Failed', errors: [{ resource: 'Hook', code: 'custom', message }], documentation_url: `${docs}/repos/webhooks#create-a-repository-webhook`, status: '422' });
        if (!body || typeof config.url !== 'string' || !/^https?:\/\//.test(config.url)) return invalid('Config must contain url for webhook hook');
        if (body.name !== undefined && body.name !== 'web') return invalid('Name must be "web"');
        if (list.some((hook) => hook.config.url === config.url)) return invalid('Hook already exists on this repository');
        const hook: FakeHook = {
          id: nextHookId++,
          name: 'web',
          active: body.active !== false,
          events: Array.isArray(body.events) ? body.events.map(String) : ['push'],
          config: {
            url: config.url,
            content_type: typeof config.content_type === 'string' ? config.content_type : 'form',
            ...(typeof config.secret === 'string' ? { secret: config.secret } : {}),
            insecure_ssl: String(config.insecure_ssl ?? '0'),
          },
          createdBy: login!,
        };
        list.push(hook);
        return answer(201, hookJson(fullName, hook), { location: `${docs}/repos/${fullName}/hooks/${hook.id}` });
      }
      const index = list.findIndex((hook) => String(hook.id) === hookPath[1]);
      if (hookPath[1] && index >= 0 && req.method === 'GET') return answer(200, hookJson(fullName, list[index]!));
      if (hookPath[1] && index >= 0 && req.method === 'DELETE') {
        list.splice(index, 1);
        return answer(204, '');
      }
      return answer(404, { message: 'Not Found', documentation_url: `${docs}/repos/webhooks`, status: '404' });
    }
    if (req.method !== 'GET') return answer(404, { message: 'Not Found', documentation_url: docs, status: '404' });
    if (rest === '') {
      const defaultBranch = (await git('git', ['-C', bareDir, 'symbolic-ref', '--short', 'HEAD'])).stdout.trim();
      const sizeKb = Number((await git('du', ['-sk', bareDir])).stdout.split('\t')[0]);
      return answer(200, repositoryJson(owner, repo, defaultBranch, options.privateRepos?.(fullName) ?? false, sizeKb));
    }
    const compare = /^\/compare\/(.+)$/.exec(rest);
    if (compare && req.method === 'GET') {
      const [baseRef, headRef] = decodeURIComponent(compare[1]!).split('...');
      const [base, head] = await Promise.all([commitOf(bareDir, baseRef ?? ''), commitOf(bareDir, headRef ?? '')]);
      if (!base || !head) return answer(404, { message: 'Not Found', documentation_url: `${docs}/commits/commits#compare-two-commits`, status: '404' });
      // The diff media type: the patch from the merge base, every file (binary ones only named).
      if ((req.headers.accept ?? '').includes('application/vnd.github.diff')) {
        return answer(200, await textDiff(bareDir, base, head), { 'content-type': 'application/vnd.github.diff; charset=utf-8' });
      }
      return answer(200, await comparisonJson(bareDir, fullName, base, head));
    }
    const contents = /^\/contents\/(.+)$/.exec(rest);
    if (contents && req.method === 'GET') {
      const filePath = decodeURIComponent(contents[1]!);
      const ref = await commitOf(bareDir, url.searchParams.get('ref') ?? 'HEAD');
      const entry = ref && !filePath.split('/').includes('..') ? await treeEntry(bareDir, ref, filePath) : null;
      // Directories and submodules are not served by this fake (the service reads files).
      if (!entry || entry.type !== 'blob') return answer(404, { message: 'Not Found', documentation_url: `${docs}/repos/contents#get-repository-content`, status: '404' });
      return answer(200, await contentJson(bareDir, fullName, filePath, ref!, entry));
    }
    const gitCommit = /^\/git\/commits\/([^/]+)$/.exec(rest);
    if (gitCommit) {
      const sha = decodeURIComponent(gitCommit[1]!);
      const found = /^[0-9a-f]{40}$/.test(sha) ? await commitOf(bareDir, sha) : null;
      if (found !== sha) return answer(404, { message: 'Not Found', documentation_url: `${docs}/git/commits#get-a-commit-object`, status: '404' });
      return answer(200, await gitCommitJson(bareDir, fullName, sha));
    }
    const tree = /^\/git\/trees\/([^/]+)$/.exec(rest);
    if (tree) {
      const sha = decodeURIComponent(tree[1]!);
      const listing = /^[0-9a-f]{40}$/.test(sha) ? await treeListing(bareDir, sha) : null;
      if (!listing) return answer(404, { message: 'Not Found', documentation_url: `${docs}/git/trees#get-a-tree`, status: '404' });
      return answer(200, {
        sha,
        url: `${api}/repos/${fullName}/git/trees/${sha}`,
        truncated: false,
        tree: listing.map((entry) => ({
          path: entry.name,
          mode: entry.mode,
          type: entry.type,
          sha: entry.sha,
          ...(entry.type === 'blob' ? { size: entry.size } : {}),
          url: `${api}/repos/${fullName}/git/${entry.type === 'tree' ? 'trees' : 'blobs'}/${entry.sha}`,
        })),
      });
    }
    const commit = /^\/commits\/(.+)$/.exec(rest);
    if (commit) {
      const ref = decodeURIComponent(commit[1]!);
      const sha = await resolveCommit(bareDir, ref);
      if (!sha) return answer(422, { message: `No commit found for SHA: ${ref}`, documentation_url: `${docs}/commits/commits#get-a-commit`, status: '422' });
      const media = (req.headers.accept ?? '').includes('application/vnd.github.sha') ? 'sha' : 'json';
      const etag = `"${createHash('sha256').update(`${media} ${sha}`).digest('hex')}"`;
      if (etagMatches(req.headers['if-none-match'], etag)) return answer(304, null, { etag });
      if (media === 'sha') return answer(200, sha, { etag, 'content-type': 'application/vnd.github.sha; charset=utf-8' });
      // The full commit (the JSON media type) is not something the service asks for.
      return answer(415, { message: 'the fake serves "Get a commit" only as application/vnd.github.sha', documentation_url: `${docs}/commits/commits#get-a-commit`, status: '415' });
    }
    return answer(404, { message: 'Not Found', documentation_url: docs, status: '404' });
  }

  /** Codes issued by the authorize step: single use, bound to the client and redirect_uri. */
  const codes = new Map<string, { redirectUri: string; scope: string }>();

  /**
   * The OAuth web flow as GitHub documents it: /login/oauth/authorize sends the browser back to
   * redirect_uri with code and state (or error=access_denied); /login/oauth/access_token answers
   * 200 with either the token or an `error` field (GitHub's way, also for bad codes).
   */
  async function oauth(req: IncomingMessage, url: URL, send: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    const app = options.oauth;
    if (url.pathname === '/login/oauth/authorize' && req.method === 'GET') {
      const redirectUri = url.searchParams.get('redirect_uri') ?? '';
      if (!app || url.searchParams.get('client_id') !== app.clientId || !/^https?:\/\//.test(redirectUri)) return send(404, 'Not Found');
      const back = new URL(redirectUri);
      back.searchParams.set('state', url.searchParams.get('state') ?? '');
      if (app.deny) {
        back.searchParams.set('error', 'access_denied');
        back.searchParams.set('error_description', 'The user has denied your application access.');
      } else {
        const code = randomBytes(10).toString('hex');
        codes.set(code, { redirectUri, scope: url.searchParams.get('scope') ?? '' });
        back.searchParams.set('code', code);
      }
      return send(302, '', { location: back.toString() });
    }
    if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
      const form = new URLSearchParams(await readText(req));
      const error = (code: string, description: string) => send(200, { error: code, error_description: description, error_uri: `${docs}/apps/oauth-apps` });
      if (!app || form.get('client_id') !== app.clientId || form.get('client_secret') !== app.clientSecret) return error('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
      const issued = codes.get(form.get('code') ?? '');
      if (!issued) return error('bad_verification_code', 'The code passed is incorrect or expired.');
      codes.delete(form.get('code')!);
      if (form.get('redirect_uri') && form.get('redirect_uri') !== issued.redirectUri) return error('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
      const token = `gho_${randomBytes(18).toString('hex')}`;
      const scopes = issued.scope.split(/[\s,]+/).filter(Boolean);
      options.tokens[token] = { login: app.login, scopes };
      return send(200, { access_token: token, token_type: 'bearer', scope: scopes.join(',') });
    }
    return send(404, 'Not Found');
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setRateLimit(login, window) {
      Object.assign(windowOf(login), window);
    },
    rateLimit: (login) => ({ ...windowOf(login) }),
    hooks: (fullName) => (hooks.get(fullName) ?? []).map((hook) => ({ ...hook, config: { ...hook.config } })),
    resetRequests() {
      requests.length = 0;
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

/** A hook as GitHub returns it: the secret is never shown, only that there is one. */
function hookJson(fullName: string, hook: FakeHook) {
  const base = `https://api.github.com/repos/${fullName}/hooks/${hook.id}`;
  const { secret, ...config } = hook.config;
  return {
    type: 'Repository',
    id: hook.id,
    name: hook.name,
    active: hook.active,
    events: hook.events,
    config: { ...config, ...(secret ? { secret: '********' } : {}) },
    updated_at: '2020-01-01T00:00:00Z',
    created_at: '2020-01-01T00:00:00Z',
    url: base,
    test_url: `${base}/test`,
    ping_url: `${base}/pings`,
    deliveries_url: `${base}/deliveries`,
    last_response: { code: null, status: 'unused', message: null },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(body));
}

/** If-None-Match: a list of ETags (weak or strong), or `*`. */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((candidate) => {
    const value = candidate.trim().replace(/^W\//, '');
    return value === '*' || value === etag;
  });
}

/** "heads/<branch>", "tags/<tag>", a branch or tag name, or a commit id, as "Get a commit" takes them. */
async function resolveCommit(bareDir: string, ref: string): Promise<string | null> {
  if (ref.startsWith('-')) return null;
  const name = ref.startsWith('heads/') || ref.startsWith('tags/') ? `refs/${ref}` : ref;
  // A branch is read from its ref file (no git process: the benchmarks poll a thousand of them).
  if (ref.startsWith('heads/') && !ref.includes('..')) {
    const loose = await readFile(path.join(bareDir, name), 'utf8').catch(() => null);
    if (loose && /^[0-9a-f]{40}\n?$/.test(loose)) return loose.trim();
  }
  try {
    const { stdout } = await git('git', ['-C', bareDir, 'rev-parse', '--verify', '--quiet', `${name}^{commit}`]);
    return stdout.trim() || null;
  } catch {
    return null;
  }
}

function loginId(login: string): number {
  return createHash('sha256').update(login).digest().readUInt32BE(0);
}

const api = 'https://api.github.com';

/** A simple-user as GitHub shows an account (every property its schema requires). */
function simpleUser(login: string) {
  const id = loginId(login);
  const url = `${api}/users/${login}`;
  return {
    login,
    id,
    node_id: `U_${id}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    gravatar_id: '',
    url,
    html_url: `https://github.com/${login}`,
    followers_url: `${url}/followers`,
    following_url: `${url}/following{/other_user}`,
    gists_url: `${url}/gists{/gist_id}`,
    starred_url: `${url}/starred{/owner}{/repo}`,
    subscriptions_url: `${url}/subscriptions`,
    organizations_url: `${url}/orgs`,
    repos_url: `${url}/repos`,
    events_url: `${url}/events{/privacy}`,
    received_events_url: `${url}/received_events`,
    type: 'User',
    site_admin: false,
  };
}

/** GET /user: the private-user view of the token's owner. */
function userJson(login: string) {
  return {
    ...simpleUser(login),
    user_view_type: 'private',
    name: null,
    company: null,
    blog: '',
    location: null,
    email: null,
    hireable: null,
    bio: null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: '2020-01-01T00:00:00Z',
    updated_at: '2020-01-01T00:00:00Z',
    private_gists: 0,
    total_private_repos: 0,
    owned_private_repos: 0,
    disk_usage: 0,
    collaborators: 0,
    two_factor_authentication: true,
  };
}

/** GET /repos/{owner}/{repo}: a full-repository (every property its schema requires). */
function repositoryJson(owner: string, repo: string, defaultBranch: string, isPrivate: boolean, sizeKb: number) {
  const id = loginId(`${owner}/${repo}`);
  const full = `${owner}/${repo}`;
  const url = `${api}/repos/${full}`;
  const templates: Record<string, string> = {
    archive_url: '/{archive_format}{/ref}', assignees_url: '/assignees{/user}', blobs_url: '/git/blobs{/sha}', branches_url: '/branches{/branch}',
    collaborators_url: '/collaborators{/collaborator}', comments_url: '/comments{/number}', commits_url: '/commits{/sha}', compare_url: '/compare/{base}...{head}',
    contents_url: '/contents/{+path}', contributors_url: '/contributors', deployments_url: '/deployments', downloads_url: '/downloads', events_url: '/events',
    forks_url: '/forks', git_commits_url: '/git/commits{/sha}', git_refs_url: '/git/refs{/sha}', git_tags_url: '/git/tags{/sha}', hooks_url: '/hooks',
    issue_comment_url: '/issues/comments{/number}', issue_events_url: '/issues/events{/number}', issues_url: '/issues{/number}', keys_url: '/keys{/key_id}',
    labels_url: '/labels{/name}', languages_url: '/languages', merges_url: '/merges', milestones_url: '/milestones{/number}',
    notifications_url: '/notifications{?since,all,participating}', pulls_url: '/pulls{/number}', releases_url: '/releases{/id}', stargazers_url: '/stargazers',
    statuses_url: '/statuses/{sha}', subscribers_url: '/subscribers', subscription_url: '/subscription', tags_url: '/tags', teams_url: '/teams', trees_url: '/git/trees{/sha}',
  };
  return {
    id,
    node_id: `R_${id}`,
    name: repo,
    full_name: full,
    owner: simpleUser(owner),
    private: isPrivate,
    visibility: isPrivate ? 'private' : 'public',
    html_url: `https://github.com/${full}`,
    description: null,
    fork: false,
    url,
    ...Object.fromEntries(Object.entries(templates).map(([name, suffix]) => [name, `${url}${suffix}`])),
    clone_url: `https://github.com/${full}.git`,
    git_url: `git://github.com/${full}.git`,
    ssh_url: `git@github.com:${full}.git`,
    svn_url: `https://github.com/${full}`,
    mirror_url: null,
    homepage: null,
    language: null,
    default_branch: defaultBranch,
    size: sizeKb,
    forks: 0,
    forks_count: 0,
    stargazers_count: 0,
    watchers: 0,
    watchers_count: 0,
    open_issues: 0,
    open_issues_count: 0,
    network_count: 0,
    subscribers_count: 0,
    has_issues: true,
    has_projects: true,
    has_wiki: true,
    has_pages: false,
    has_discussions: false,
    archived: false,
    disabled: false,
    license: null,
    pushed_at: '2020-01-01T00:00:00Z',
    created_at: '2020-01-01T00:00:00Z',
    updated_at: '2020-01-01T00:00:00Z',
  };
}

function utc(date: string): string {
  return new Date(date).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** "Get a commit object" of the Git database API (the `git-commit` schema). */
async function gitCommitJson(bareDir: string, fullName: string, sha: string) {
  const info = await commitInfo(bareDir, sha);
  return {
    sha,
    node_id: `C_${sha.slice(0, 16)}`,
    url: `${api}/repos/${fullName}/git/commits/${sha}`,
    html_url: `https://github.com/${fullName}/commit/${sha}`,
    author: { ...info.author, date: utc(info.author.date) },
    committer: { ...info.committer, date: utc(info.committer.date) },
    tree: { sha: info.tree, url: `${api}/repos/${fullName}/git/trees/${info.tree}` },
    message: info.message,
    parents: info.parents.map((parent) => ({ sha: parent, url: `${api}/repos/${fullName}/git/commits/${parent}`, html_url: `https://github.com/${fullName}/commit/${parent}` })),
    verification: { verified: false, reason: 'unsigned', signature: null, payload: null, verified_at: null },
  };
}

/** A commit as the REST API shows it (the `commit` schema). */
async function commitJson(bareDir: string, fullName: string, sha: string) {
  const info = await commitInfo(bareDir, sha);
  const url = `${api}/repos/${fullName}/commits/${sha}`;
  return {
    url,
    sha,
    node_id: `C_${sha.slice(0, 16)}`,
    html_url: `https://github.com/${fullName}/commit/${sha}`,
    comments_url: `${url}/comments`,
    commit: {
      url: `${api}/repos/${fullName}/git/commits/${sha}`,
      // GitHub gives commit dates in UTC ("2011-04-14T16:00:49Z"): the author's offset is not shown.
      author: { ...info.author, date: utc(info.author.date) },
      committer: { ...info.committer, date: utc(info.committer.date) },
      message: info.message,
      comment_count: 0,
      tree: { sha: info.tree, url: `${api}/repos/${fullName}/git/trees/${info.tree}` },
      verification: { verified: false, reason: 'unsigned', signature: null, payload: null, verified_at: null },
    },
    // Commit authors are not matched to accounts here.
    author: null,
    committer: null,
    parents: info.parents.map((parent) => ({ sha: parent, url: `${api}/repos/${fullName}/commits/${parent}`, html_url: `https://github.com/${fullName}/commit/${parent}` })),
  };
}

/** "Compare two commits": status, counts, up to 250 commits and at most 300 files (GitHub's limits). */
async function comparisonJson(bareDir: string, fullName: string, base: string, head: string) {
  const [ahead, behind, baseOfBoth, changes] = await Promise.all([revCount(bareDir, `${base}..${head}`), revCount(bareDir, `${head}..${base}`), mergeBase(bareDir, base, head), rawDiff(bareDir, base, head)]);
  const commits = (await revList(bareDir, `${base}..${head}`)).slice(0, 250);
  const status = ahead === 0 && behind === 0 ? 'identical' : behind === 0 ? 'ahead' : ahead === 0 ? 'behind' : 'diverged';
  const url = `${api}/repos/${fullName}/compare/${base}...${head}`;
  const statusOf = (change: (typeof changes)[number]) =>
    ({ A: 'added', D: 'removed', R: 'renamed', T: 'changed', M: change.oldSha === change.newSha ? 'changed' : 'modified' })[change.status];
  return {
    url,
    html_url: `https://github.com/${fullName}/compare/${base}...${head}`,
    permalink_url: `https://github.com/${fullName}/compare/${base}...${head}`,
    diff_url: `https://github.com/${fullName}/compare/${base}...${head}.diff`,
    patch_url: `https://github.com/${fullName}/compare/${base}...${head}.patch`,
    base_commit: await commitJson(bareDir, fullName, base),
    merge_base_commit: await commitJson(bareDir, fullName, baseOfBoth ?? base),
    status,
    ahead_by: ahead,
    behind_by: behind,
    total_commits: ahead,
    commits: await Promise.all(commits.map((sha) => commitJson(bareDir, fullName, sha))),
    files: changes.slice(0, 300).map((change) => ({
      sha: change.status === 'D' ? change.oldSha : change.newSha,
      filename: change.path,
      status: statusOf(change),
      // Line counts are not computed here (the service does not read them).
      additions: 0,
      deletions: 0,
      changes: 0,
      blob_url: `https://github.com/${fullName}/blob/${head}/${change.path}`,
      raw_url: `https://github.com/${fullName}/raw/${head}/${change.path}`,
      contents_url: `${api}/repos/${fullName}/contents/${change.path}?ref=${head}`,
      ...(change.previousPath ? { previous_filename: change.previousPath } : {}),
    })),
  };
}

/** "Get repository content" for a file or symlink (base64 content; none over 1 MB, as GitHub does). */
async function contentJson(bareDir: string, fullName: string, filePath: string, ref: string, entry: { mode: string; sha: string }) {
  const data = await blob(bareDir, entry.sha);
  const url = `${api}/repos/${fullName}/contents/${filePath}?ref=${ref}`;
  const common = {
    name: filePath.split('/').pop()!,
    path: filePath,
    sha: entry.sha,
    size: data.length,
    url,
    git_url: `${api}/repos/${fullName}/git/blobs/${entry.sha}`,
    html_url: `https://github.com/${fullName}/blob/${ref}/${filePath}`,
    download_url: `https://raw.githubusercontent.com/${fullName}/${ref}/${filePath}`,
    _links: { self: url, git: `${api}/repos/${fullName}/git/blobs/${entry.sha}`, html: `https://github.com/${fullName}/blob/${ref}/${filePath}` },
  };
  if (entry.mode === '120000') return { type: 'symlink', target: data.toString('utf8'), ...common };
  const small = data.length <= 1024 * 1024;
  // GitHub wraps the base64 at 60 characters.
  const content = small ? (data.toString('base64').match(/.{1,60}/g) ?? []).join('\n') + '\n' : '';
  return { type: 'file', encoding: small ? 'base64' : 'none', content, ...common };
}
