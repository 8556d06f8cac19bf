import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId } from '../src/schema/globalId.js';
import { StartOAuthDocument } from './generated/graphql.js';
import { startTestApp, type TestApp } from './support/app.js';
import type { GraphQLErrorShape, TestClient } from './support/client.js';
import { startFakeGithub, type FakeGithub } from './support/githubApi.js';
import { startFakeGitlab, type FakeGitlab } from './support/gitlabApi.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// The OAuth authorization-code flow end to end: startOAuth, the provider's
// authorize page (the fakes approve at once, as a user clicking "Authorize"),
// the provider's redirect to /oauth/<provider>/callback, the code exchange,
// and the browser sent on to the client's redirectUri with the credential.
// GitLab with PKCE, and refresh tokens that rotate.

const GITHUB_APP = { clientId: 'Iv1.repolens', clientSecret: `ghsecret-${randomBytes(16).toString('hex')}` };
const GITLAB_APP = { clientId: 'gitlab-repolens', clientSecret: `glsecret-${randomBytes(16).toString('hex')}` };
const REDIRECT = 'https://ui.example.test/connected?from=settings';

let server: GitServer;
let github: FakeGithub;
let gitlab: FakeGitlab;
let testApp: TestApp;
let client: TestClient;

beforeAll(async () => {
  server = await startGitServer();
  github = await startFakeGithub({ gitRoot: server.root, tokens: {}, oauth: { ...GITHUB_APP, login: 'octo-user' } });
  gitlab = await startFakeGitlab({ gitRoot: server.root, tokens: {}, oauth: { ...GITLAB_APP, username: 'lab-user' } });
  testApp = await startTestApp({
    env: {
      GITHUB_API_URL: github.url,
      GITLAB_URL: gitlab.url,
      GITHUB_CLIENT_ID: GITHUB_APP.clientId,
      GITHUB_CLIENT_SECRET: GITHUB_APP.clientSecret,
      GITLAB_CLIENT_ID: GITLAB_APP.clientId,
      GITLAB_CLIENT_SECRET: GITLAB_APP.clientSecret,
    },
  });
  client = await testApp.client('oauth');
});

afterAll(async () => {
  await testApp?.close();
  await github?.close();
  await gitlab?.close();
  await server?.close();
});

/** What a browser does: follows the authorize URL to the provider, which redirects to our callback; returns our answer. */
async function authorize(authorizeUrl: string): Promise<{ callbackUrl: string; response: Response }> {
  const atProvider = await fetch(authorizeUrl, { redirect: 'manual' });
  expect(atProvider.status).toBe(302);
  const callbackUrl = atProvider.headers.get('location')!;
  expect(callbackUrl.startsWith(`${testApp.url}/oauth/`)).toBe(true);
  return { callbackUrl, response: await fetch(callbackUrl, { redirect: 'manual' }) };
}

async function start(provider: 'GITHUB' | 'GITLAB', redirectUri = REDIRECT) {
  return (await client.request(StartOAuthDocument, { input: { provider, redirectUri } })).startOAuth;
}

function secretsInLogs(): string[] {
  const logs = testApp.logs.join('\n');
  return [GITHUB_APP.clientSecret, GITLAB_APP.clientSecret].filter((secret) => logs.includes(secret));
}

describe('GitHub OAuth', () => {
  it('connects a credential: authorize URL, callback, code exchange, redirect back with the credential id', async () => {
    const { authorizeUrl, state } = await start('GITHUB');
    const url = new URL(authorizeUrl);
    expect(`${url.origin}${url.pathname}`).toBe(`${github.url}/login/oauth/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({ client_id: GITHUB_APP.clientId, redirect_uri: `${testApp.url}/oauth/github/callback`, scope: 'repo admin:repo_hook', state });

    const { callbackUrl, response } = await authorize(authorizeUrl);
    expect(response.status).toBe(302);
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    const back = new URL(response.headers.get('location')!);
    expect(`${back.origin}${back.pathname}`).toBe('https://ui.example.test/connected');
    expect(back.searchParams.get('from')).toBe('settings');
    const credentialId = decodeGlobalId(back.searchParams.get('credentialId')!).id;
    const credential = await testApp.app.db.prisma.credential.findUniqueOrThrow({ where: { id: credentialId } });
    expect(credential).toMatchObject({ provider: 'GITHUB', host: new URL(github.url).host, login: 'octo-user', scopes: ['repo', 'admin:repo_hook'], expiresAt: null, encryptedRefreshToken: null });
    const code = new URL(callbackUrl).searchParams.get('code')!;
    expect(credential.encryptedSecret.startsWith('v1.')).toBe(true);

    // The same callback again (a replayed or reloaded URL): the state was single use.
    const replay = await fetch(callbackUrl, { redirect: 'manual' });
    expect(replay.status).toBe(400);
    expect(await replay.json()).toEqual({ error: 'unknown, used or expired OAuth state; start the authorization again' });
    expect(await testApp.app.db.prisma.credential.count({ where: { provider: 'GITHUB' } })).toBe(1);
    expect(testApp.logs.join('\n')).not.toContain(code);
    expect(secretsInLogs()).toEqual([]);
  });

  it('refuses a state it did not issue, and one that expired, storing nothing', async () => {
    const before = await testApp.app.db.prisma.credential.count();
    const forged = await fetch(`${testApp.url}/oauth/github/callback?code=abc&state=${randomBytes(32).toString('base64url')}`, { redirect: 'manual' });
    expect(forged.status).toBe(400);

    const { authorizeUrl } = await start('GITHUB');
    await testApp.app.db.prisma.oAuthState.updateMany({ data: { expiresAt: new Date(Date.now() - 1000) } });
    const { response } = await authorize(authorizeUrl);
    expect(response.status).toBe(400);
    // A state issued for GitHub is not accepted at the GitLab callback either.
    const other = await start('GITHUB');
    const wrongProvider = await fetch(`${testApp.url}/oauth/gitlab/callback?code=abc&state=${other.state}`, { redirect: 'manual' });
    expect(wrongProvider.status).toBe(400);
    expect(await testApp.app.db.prisma.credential.count()).toBe(before);
  });

  it('sends the browser back with error=access_denied when the user refuses', async () => {
    const before = await testApp.app.db.prisma.credential.count();
    const denying = await startFakeGithub({ gitRoot: server.root, tokens: {}, oauth: { ...GITHUB_APP, login: 'octo-user', deny: true } });
    try {
      const { authorizeUrl } = await start('GITHUB');
      const { response } = await authorize(authorizeUrl.replace(github.url, denying.url));
      const back = new URL(response.headers.get('location')!);
      expect(back.searchParams.get('error')).toBe('access_denied');
      expect(back.searchParams.get('credentialId')).toBeNull();
    } finally {
      await denying.close();
    }
    expect(await testApp.app.db.prisma.credential.count()).toBe(before);
  });

  it('refuses bad input to startOAuth clearly', async () => {
    for (const [input, message] of [
      [{ provider: 'GIT', redirectUri: REDIRECT }, /OAuth is for GITHUB and GITLAB/],
      [{ provider: 'GITHUB', redirectUri: 'javascript:alert(1)' }, /redirectUri must be an http\(s\) URL/],
      [{ provider: 'GITHUB', redirectUri: 'https://user:pw@ui.example.test/' }, /without credentials/],
      [{ provider: 'GITHUB', redirectUri: 'not a url' }, /absolute http\(s\) URL/],
    ] as const) {
      const result = await client.raw(StartOAuthDocument, { input });
      expect((result.errors?.[0] as GraphQLErrorShape | undefined)?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.message).toMatch(message);
    }
  });

  it('says which variables are missing when the provider has no OAuth app configured', async () => {
    const bare = await startTestApp({ env: { GITHUB_API_URL: github.url } });
    try {
      const result = await (await bare.client('no-oauth')).raw(StartOAuthDocument, { input: { provider: 'GITHUB', redirectUri: REDIRECT } });
      expect(result.errors?.[0]?.message).toBe('OAuth with GITHUB is not configured (GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET)');
    } finally {
      await bare.close();
    }
  });
});

describe('GitLab OAuth (PKCE, rotating refresh tokens)', () => {
  let credentialId: string;

  it('connects with PKCE: S256 challenge in the authorize URL, the verifier in the exchange', async () => {
    const { authorizeUrl } = await start('GITLAB');
    const url = new URL(authorizeUrl);
    expect(`${url.origin}${url.pathname}`).toBe(`${gitlab.url}/oauth/authorize`);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('response_type')).toBe('code');

    const { response } = await authorize(authorizeUrl);
    const back = new URL(response.headers.get('location')!);
    expect(back.searchParams.get('error')).toBeNull();
    credentialId = decodeGlobalId(back.searchParams.get('credentialId')!).id;
    const credential = await testApp.app.db.prisma.credential.findUniqueOrThrow({ where: { id: credentialId } });
    expect(credential).toMatchObject({ provider: 'GITLAB', login: 'lab-user', scopes: ['api'] });
    expect(credential.encryptedRefreshToken?.startsWith('v1.')).toBe(true);
    // GitLab access tokens last two hours.
    expect(credential.expiresAt!.getTime() - Date.now()).toBeGreaterThan(7100_000);
    expect(credential.expiresAt!.getTime() - Date.now()).toBeLessThanOrEqual(7200_000);
  });

  it('a PKCE verifier that does not match is refused by GitLab: no credential', async () => {
    const before = await testApp.app.db.prisma.credential.count();
    const { authorizeUrl } = await start('GITLAB');
    // Someone swaps the challenge on the way (a code stolen from another authorization would look the same).
    const tampered = new URL(authorizeUrl);
    tampered.searchParams.set('code_challenge', 'A'.repeat(43));
    const { response } = await authorize(tampered.toString());
    expect(new URL(response.headers.get('location')!).searchParams.get('error')).toBe('token_exchange_failed');
    expect(await testApp.app.db.prisma.credential.count()).toBe(before);
  });

  it('refreshes a token about to expire once, even when asked twice at once, and stores the rotated pair', async () => {
    const oauth = testApp.app.services.oauth;
    const stale = await testApp.app.db.prisma.credential.update({ where: { id: credentialId }, data: { expiresAt: new Date(Date.now() + 60_000) } });
    const oldToken = testApp.app.services.secretBox.decrypt(stale.encryptedSecret);
    const oldRefresh = testApp.app.services.secretBox.decrypt(stale.encryptedRefreshToken!);
    const refreshesBefore = gitlab.refreshes;

    const [first, second] = await Promise.all([oauth.accessToken(stale), oauth.accessToken(stale)]);
    expect(first).toBe(second);
    expect(first).not.toBe(oldToken);
    expect(gitlab.refreshes).toBe(refreshesBefore + 1);
    const stored = await testApp.app.db.prisma.credential.findUniqueOrThrow({ where: { id: credentialId } });
    expect(testApp.app.services.secretBox.decrypt(stored.encryptedSecret)).toBe(first);
    expect(testApp.app.services.secretBox.decrypt(stored.encryptedRefreshToken!)).not.toBe(oldRefresh);
    expect(stored.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 7100_000);

    // The new token works on the API; the old one was revoked by the rotation.
    const user = (token: string) => fetch(`${gitlab.url}/api/v4/user`, { headers: { authorization: `Bearer ${token}` } }).then((response) => response.status);
    expect(await user(first)).toBe(200);
    expect(await user(oldToken)).toBe(401);

    // A token that is not about to expire is used as it is.
    expect(await oauth.accessToken(stored)).toBe(first);
    expect(gitlab.refreshes).toBe(refreshesBefore + 1);

    // Another process that rotated first: this one's refresh token is dead, and the stored pair serves.
    const elsewhere = { ...stale, expiresAt: new Date(Date.now() + 60_000) };
    expect(await oauth.accessToken(elsewhere)).toBe(first);

    const logs = testApp.logs.join('\n');
    for (const secret of [first, oldToken, oldRefresh]) expect(logs).not.toContain(secret);
  });

  it('a revoked authorization fails clearly, naming the credential, not the tokens', async () => {
    gitlab.revokeRefreshTokens();
    const credential = await testApp.app.db.prisma.credential.update({ where: { id: credentialId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const error = await testApp.app.services.oauth.accessToken(credential).catch((caught: unknown) => caught as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/could not be refreshed \(the token endpoint refused the grant \(invalid_grant\)\); connect it again/);
    expect((error as Error).message).not.toContain(testApp.app.services.secretBox.decrypt(credential.encryptedRefreshToken!));
    expect(secretsInLogs()).toEqual([]);
  });
});
