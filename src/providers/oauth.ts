import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { BadUserInputError, ProviderError } from '../errors.js';
import type { Credential, Provider } from '../generated/prisma/client.js';
import { encodeGlobalId } from '../schema/globalId.js';
import type { Prisma } from '../storage/database.js';
import type { SecretBox } from '../storage/secrets.js';
import { withoutSecrets } from '../sync/redact.js';
import { PlatformError, withTimeout } from './platform.js';
import type { Platforms } from './platforms.js';

type OAuthProvider = Exclude<Provider, 'GIT'>;

/** How long a started authorization may take. */
const stateTtlMs = 10 * 60_000;
/** How long a credential row read for a sync serves other syncs. */
const credentialCacheMs = 1000;
/** A GitLab access token this close to its expiry is refreshed before use (GitLab's last two hours). */
const refreshMarginMs = 5 * 60_000;

/** What the provider's token endpoint answered. */
interface TokenAnswer {
  accessToken: string;
  refreshToken: string | null;
  expiresAt: Date | null;
  scopes: string[] | null;
}

/** The answer to a provider's redirect: where the user's browser goes, or a plain error. */
export type CallbackAnswer = { status: 302; location: string } | { status: 400; body: { error: string } };

/**
 * The OAuth authorization-code flow (SPEC §4 startOAuth): GitHub OAuth apps,
 * and GitLab applications with PKCE (S256). `start` records a single-use,
 * ten-minute state (only its hash) for the tenant; the provider sends the
 * browser to /oauth/<provider>/callback, where the code is exchanged, the
 * token checked with the API, the credential stored, and the browser sent on
 * to the redirectUri with `credentialId` (or `error`). GitLab access tokens
 * last two hours: `accessToken` refreshes them before use, and the new pair
 * (GitLab rotates refresh tokens) is written in one conditional statement,
 * so two processes refreshing at once keep one pair, not a dead one.
 */
export class OAuthService {
  private readonly refreshing = new Map<string, Promise<string>>();

  constructor(
    private readonly prisma: Prisma,
    private readonly secretBox: SecretBox,
    private readonly config: Pick<Config, 'oauth' | 'publicUrl' | 'githubApiUrl' | 'gitlabUrl' | 'providerTimeoutMs'>,
    private readonly platforms: Platforms,
    private readonly logger: Logger,
  ) {}

  async start(tenantId: string, provider: Provider, redirectUri: string): Promise<{ authorizeUrl: string; state: string }> {
    if (provider === 'GIT') throw new BadUserInputError('OAuth is for GITHUB and GITLAB; a plain git host takes addCredential');
    const app = this.app(provider);
    checkRedirectUri(redirectUri);
    const state = randomBytes(32).toString('base64url');
    const verifier = provider === 'GITLAB' ? randomBytes(32).toString('base64url') : null;
    const now = new Date();
    await this.prisma.oAuthState.deleteMany({ where: { expiresAt: { lt: now } } });
    await this.prisma.oAuthState.create({
      data: {
        stateHash: hash(state),
        tenantId,
        provider,
        redirectUri,
        codeVerifier: verifier ? this.secretBox.encrypt(verifier) : null,
        expiresAt: new Date(now.getTime() + stateTtlMs),
      },
    });
    const params = new URLSearchParams({ client_id: app.clientId, redirect_uri: this.callbackUrl(provider), state });
    if (provider === 'GITHUB') {
      params.set('scope', 'repo admin:repo_hook');
      return { authorizeUrl: `${this.webBase('GITHUB')}/login/oauth/authorize?${params}`, state };
    }
    params.set('response_type', 'code');
    params.set('scope', 'api');
    params.set('code_challenge', createHash('sha256').update(verifier!).digest('base64url'));
    params.set('code_challenge_method', 'S256');
    return { authorizeUrl: `${this.webBase('GITLAB')}/oauth/authorize?${params}`, state };
  }

  async callback(provider: OAuthProvider, query: URLSearchParams): Promise<CallbackAnswer> {
    const state = query.get('state');
    if (!state) return { status: 400, body: { error: 'the OAuth callback has no state' } };
    // Single use: the row goes whatever happens next.
    const [pending] = await this.prisma.$queryRaw<{ tenantId: string; redirectUri: string; codeVerifier: string | null; expiresAt: Date }[]>`
      DELETE FROM "OAuthState" WHERE "stateHash" = ${hash(state)} AND provider = ${provider}::"Provider"
      RETURNING "tenantId", "redirectUri", "codeVerifier", "expiresAt"`;
    if (!pending || pending.expiresAt.getTime() < Date.now()) {
      return { status: 400, body: { error: 'unknown, used or expired OAuth state; start the authorization again' } };
    }
    const back = (params: Record<string, string>) => ({ status: 302 as const, location: withParams(pending.redirectUri, params) });
    const denied = query.get('error');
    if (denied) return back({ error: /^[a-z_]{1,64}$/.test(denied) ? denied : 'authorization_failed' });
    const code = query.get('code');
    if (!code) return back({ error: 'missing_code' });
    try {
      const answer = await this.exchange(provider, { grant_type: 'authorization_code', code, ...(pending.codeVerifier ? { code_verifier: this.secretBox.decrypt(pending.codeVerifier) } : {}) });
      const owner = await this.platforms.forHost(provider, this.host(provider), answer.accessToken)!.tokenOwner();
      const credential = await this.prisma.credential.create({
        data: {
          tenantId: pending.tenantId,
          provider,
          host: this.host(provider),
          login: owner.login,
          scopes: answer.scopes ?? owner.scopes,
          encryptedSecret: this.secretBox.encrypt(answer.accessToken),
          encryptedRefreshToken: answer.refreshToken ? this.secretBox.encrypt(answer.refreshToken) : null,
          expiresAt: answer.expiresAt,
        },
      });
      this.logger.info({ provider, credentialId: credential.id, login: owner.login }, 'OAuth credential connected');
      return back({ credentialId: encodeGlobalId('Credential', credential.id) });
    } catch (error) {
      this.logger.warn({ provider, err: (error as Error).message }, 'OAuth code exchange failed');
      return back({ error: 'token_exchange_failed' });
    }
  }

  /**
   * A credential row as read within the last second: a check pass over thousands of repositories
   * sharing a credential reads it once a second, not once per repository. A refresh or removal in
   * this process forgets it at once; one in another process shows within the second.
   */
  credential(id: string): Promise<Credential | null> {
    const cached = this.credentials.get(id);
    if (cached && Date.now() - cached.at < credentialCacheMs) return cached.row;
    const row = this.prisma.credential.findUnique({ where: { id } });
    if (this.credentials.size >= 10_000) this.credentials.clear();
    this.credentials.set(id, { at: Date.now(), row });
    // A failed read is not kept.
    row.catch(() => this.credentials.delete(id));
    return row;
  }

  /** Forgets what `credential` read (the credential was changed or removed here). */
  forget(id: string): void {
    this.credentials.delete(id);
  }

  private readonly credentials = new Map<string, { at: number; row: Promise<Credential | null> }>();

  /** The credential's access token, refreshed first when it is about to expire (GitLab OAuth). */
  async accessToken(credential: Credential): Promise<string> {
    const expiring = credential.expiresAt && credential.expiresAt.getTime() - Date.now() < refreshMarginMs;
    if (!expiring || !credential.encryptedRefreshToken || credential.provider === 'GIT') return this.secretBox.decrypt(credential.encryptedSecret);
    let refresh = this.refreshing.get(credential.id);
    if (!refresh) {
      refresh = this.refresh(credential).finally(() => this.refreshing.delete(credential.id));
      this.refreshing.set(credential.id, refresh);
    }
    return refresh;
  }

  private async refresh(credential: Credential): Promise<string> {
    const provider = credential.provider as OAuthProvider;
    let answer: TokenAnswer;
    try {
      answer = await this.exchange(provider, { grant_type: 'refresh_token', refresh_token: this.secretBox.decrypt(credential.encryptedRefreshToken!) });
    } catch (error) {
      // Another process may have rotated the pair a moment ago: its token serves.
      const current = await this.prisma.credential.findUnique({ where: { id: credential.id } });
      if (current && current.encryptedRefreshToken !== credential.encryptedRefreshToken && current.expiresAt && current.expiresAt.getTime() > Date.now()) {
        return this.secretBox.decrypt(current.encryptedSecret);
      }
      throw new ProviderError(`the ${provider === 'GITLAB' ? 'GitLab' : 'GitHub'} authorization of credential ${encodeGlobalId('Credential', credential.id)} could not be refreshed (${(error as Error).message}); connect it again`);
    }
    // Only over the pair this refresh started from: a concurrent refresh elsewhere wins, and its token is used.
    const written = await this.prisma.credential.updateMany({
      where: { id: credential.id, encryptedRefreshToken: credential.encryptedRefreshToken },
      data: {
        encryptedSecret: this.secretBox.encrypt(answer.accessToken),
        encryptedRefreshToken: answer.refreshToken ? this.secretBox.encrypt(answer.refreshToken) : null,
        expiresAt: answer.expiresAt,
      },
    });
    this.forget(credential.id);
    if (written.count === 0) {
      const current = await this.prisma.credential.findUnique({ where: { id: credential.id } });
      if (current) return this.secretBox.decrypt(current.encryptedSecret);
    }
    this.logger.info({ credentialId: credential.id }, 'OAuth token refreshed');
    return answer.accessToken;
  }

  /** POST to the provider's token endpoint (form-encoded, JSON answer); errors carry no secret. */
  private async exchange(provider: OAuthProvider, grant: Record<string, string>): Promise<TokenAnswer> {
    const app = this.app(provider);
    const url = provider === 'GITHUB' ? `${this.webBase('GITHUB')}/login/oauth/access_token` : `${this.webBase('GITLAB')}/oauth/token`;
    const body = new URLSearchParams({ client_id: app.clientId, client_secret: app.clientSecret, redirect_uri: this.callbackUrl(provider), ...grant });
    const response = await fetch(url, {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'repolens-sync' },
      body,
      signal: withTimeout(null, this.config.providerTimeoutMs),
    });
    const text = await response.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new PlatformError(`the token endpoint answered HTTP ${response.status} without JSON`, 'invalid-answer', response.status);
    }
    // GitHub answers errors with 200 and an `error` field; GitLab with 400/401.
    if (!response.ok || typeof parsed.error === 'string' || typeof parsed.access_token !== 'string') {
      // The endpoint's `error` is a code; one that repeats what it was sent (the code, a refresh token) loses it here.
      const sent = Object.entries(grant).filter(([name]) => name !== 'grant_type').map(([, value]) => value);
      const reason = typeof parsed.error === 'string' ? withoutSecrets(parsed.error, [...sent, app.clientSecret]) : `HTTP ${response.status}`;
      throw new PlatformError(`the token endpoint refused the grant (${reason})`, 'auth', response.status);
    }
    const expiresIn = Number(parsed.expires_in);
    const scope = typeof parsed.scope === 'string' ? parsed.scope : null;
    return {
      accessToken: parsed.access_token,
      refreshToken: typeof parsed.refresh_token === 'string' ? parsed.refresh_token : null,
      expiresAt: Number.isFinite(expiresIn) && expiresIn > 0 ? new Date(Date.now() + expiresIn * 1000) : null,
      // GitHub separates scopes with commas, GitLab with spaces.
      scopes: scope === null ? null : scope.split(/[\s,]+/).filter(Boolean),
    };
  }

  private app(provider: OAuthProvider): { clientId: string; clientSecret: string } {
    const app = this.config.oauth[provider];
    if (!app) throw new BadUserInputError(`OAuth with ${provider} is not configured (${provider}_CLIENT_ID and ${provider}_CLIENT_SECRET)`);
    return app;
  }

  /** Where the provider sends the browser back: register this URL with the OAuth app. */
  callbackUrl(provider: OAuthProvider): string {
    return `${this.config.publicUrl}/oauth/${provider.toLowerCase()}/callback`;
  }

  /** The provider's web origin: github.com for api.github.com, the GitHub Enterprise host for its /api/v3, GITLAB_URL. */
  private webBase(provider: OAuthProvider): string {
    if (provider === 'GITLAB') return this.config.gitlabUrl.replace(/\/+$/, '');
    const api = new URL(this.config.githubApiUrl);
    const host = api.host.replace(/^api\./, '');
    return `${api.protocol}//${host}`;
  }

  /** The host a connected credential is for: the provider's web host. */
  private host(provider: OAuthProvider): string {
    return new URL(this.webBase(provider)).host;
  }
}

function hash(state: string): string {
  return createHash('sha256').update(state).digest('hex');
}

function checkRedirectUri(redirectUri: string): void {
  let url: URL;
  try {
    url = new URL(redirectUri);
  } catch {
    throw new BadUserInputError('redirectUri must be an absolute http(s) URL');
  }
  if (!['http:', 'https:'].includes(url.protocol) || url.username || url.password || redirectUri.length > 2048) {
    throw new BadUserInputError('redirectUri must be an http(s) URL without credentials, at most 2048 characters');
  }
}

function withParams(target: string, params: Record<string, string>): string {
  const url = new URL(target);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.toString();
}
