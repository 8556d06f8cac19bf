import { BadUserInputError, NotFoundError, ProviderError } from '../errors.js';
import { PlatformError, type GitPlatform, type TokenOwner } from '../providers/platform.js';
import { builder } from './builder.js';
import { ProviderEnum } from './enums.js';
import { parseGlobalId } from './globalId.js';

export const Credential = builder.prismaNode('Credential', {
  id: { field: 'id' },
  // An absent or foreign object resolves to null (Relay), not an error.
  nullable: true,
  findUnique: (id, ctx) => ({ id, tenantId: ctx.tenantId }),
  fields: (t) => ({
    provider: t.expose('provider', { type: ProviderEnum }),
    host: t.exposeString('host'),
    login: t.exposeString('login', { nullable: true }),
    scopes: t.exposeStringList('scopes'),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

builder.queryField('credentials', (t) =>
  t.prismaField({
    type: ['Credential'],
    args: { provider: t.arg({ type: ProviderEnum }) },
    resolve: (query, _root, args, ctx) =>
      ctx.prisma.credential.findMany({
        ...query,
        where: { tenantId: ctx.tenantId, ...(args.provider ? { provider: args.provider } : {}) },
        orderBy: { createdAt: 'desc' },
      }),
  }),
);

/** The token's owner by the platform's API; refused tokens are the user's mistake, an unreachable API is not. */
async function tokenOwner(platform: GitPlatform | null): Promise<TokenOwner | null> {
  if (!platform) return null;
  try {
    return await platform.tokenOwner();
  } catch (error) {
    if (error instanceof PlatformError && error.failure === 'auth') throw new BadUserInputError(`the token was refused: ${error.message}`);
    if (error instanceof PlatformError) throw new ProviderError(`the token could not be checked: ${error.message}`);
    throw error;
  }
}

const hostPattern = /^[a-z0-9.-]+(:\d{1,5})?$/i;

builder.relayMutationField(
  'addCredential',
  {
    inputFields: (t) => ({
      provider: t.field({ type: ProviderEnum, required: true }),
      token: t.string({ required: true, description: 'access token or password; stored encrypted, never returned' }),
      host: t.string({ description: 'host[:port] the credential is for; default: the provider host' }),
      login: t.string({ description: 'user name for Basic auth on plain git hosts' }),
    }),
  },
  {
    resolve: async (_root, { input }, ctx) => {
      const config = ctx.services.config;
      const defaultHosts = { GITHUB: new URL(config.githubApiUrl).host.replace(/^api\./, ''), GITLAB: new URL(config.gitlabUrl).host };
      const host = (input.host ?? (input.provider === 'GIT' ? '' : defaultHosts[input.provider])).trim().toLowerCase();
      if (!hostPattern.test(host)) throw new BadUserInputError('host must be a host name with an optional port');
      if (!input.token || input.token.length > 4096 || /[\s\u0000-\u001f]/.test(input.token)) {
        throw new BadUserInputError('token must be 1-4096 characters without whitespace');
      }
      if (input.login != null && !/^[^\s:\u0000-\u001f]{1,255}$/.test(input.login)) {
        throw new BadUserInputError('login must be 1-255 characters without whitespace or ":"');
      }
      // A token for a host whose platform API we know is checked there before it is stored.
      const owner = await tokenOwner(ctx.services.platforms.forHost(input.provider, host, input.token));
      const credential = await ctx.prisma.credential.create({
        data: {
          tenantId: ctx.tenantId,
          provider: input.provider,
          host,
          login: owner?.login ?? input.login ?? null,
          scopes: owner?.scopes ?? [],
          encryptedSecret: ctx.services.secretBox.encrypt(input.token),
        },
      });
      return { credential };
    },
  },
  { outputFields: (t) => ({ credential: t.field({ type: Credential, resolve: (payload) => payload.credential }) }) },
);

builder.relayMutationField(
  'removeCredential',
  { inputFields: (t) => ({ credentialId: t.id({ required: true }) }) },
  {
    resolve: async (_root, { input }, ctx) => {
      const { count } = await ctx.prisma.credential.deleteMany({
        where: { id: parseGlobalId(input.credentialId, 'Credential'), tenantId: ctx.tenantId },
      });
      if (!count) throw new NotFoundError('credential');
      ctx.services.oauth.forget(parseGlobalId(input.credentialId, 'Credential'));
      return { removedCredentialId: input.credentialId };
    },
  },
  { outputFields: (t) => ({ removedCredentialId: t.id({ resolve: (payload) => payload.removedCredentialId }) }) },
);

builder.relayMutationField(
  'startOAuth',
  {
    inputFields: (t) => ({
      provider: t.field({ type: ProviderEnum, required: true }),
      redirectUri: t.string({ required: true, description: "where the user's browser goes when the authorization ends (with credentialId or error)" }),
    }),
  },
  {
    resolve: (_root, { input }, ctx) => ctx.services.oauth.start(ctx.tenantId, input.provider, input.redirectUri),
  },
  {
    outputFields: (t) => ({
      authorizeUrl: t.string({ description: 'send the user here', resolve: (payload) => payload.authorizeUrl }),
      state: t.string({ description: 'single use, valid for 10 minutes', resolve: (payload) => payload.state }),
    }),
  },
);
