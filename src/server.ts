import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import { useServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { tokenRequiredMessage } from './errors.js';
import { isDatabaseUnavailable, unavailableRetrySeconds, type Database } from './storage/database.js';
import type { Metrics } from './metrics.js';
import { schema } from './schema/index.js';
import type { GraphQLContext, Services } from './schema/context.js';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { createErrorMasker, useInputErrorCodes, withoutInputValues } from './schema/errors.js';
import { useMutationRateLimit, useQueryCostLimit } from './schema/limits.js';
import { pageSize } from './schema/pagination.js';
import { authenticateToken, bearerToken } from './storage/tenants.js';

export interface HttpServer {
  server: Server;
  /** Stops accepting, closes WebSockets and subscriptions. */
  close(): Promise<void>;
}

interface ServerDependencies {
  db: Database;
  services: Services;
  metrics: Metrics;
  logger: Logger;
}

/** SPEC §4: a webhook body over 25 MiB is answered 413. */
const maxWebhookBytes = 25 * 1024 * 1024;

/** How long the rest of a refused body is read and dropped before the connection is cut. */
const lingerMs = 1_000;

/**
 * 413 (or 411), then the connection is closed rather than the rest of a huge
 * body stored. Closing at once would reset it while the client still sends
 * (unread data makes the kernel answer RST), and a client that is still
 * writing often loses the answer with it: the rest is read and dropped for
 * up to a second first (a lingering close).
 */
function refuseBody(req: IncomingMessage, res: ServerResponse, status: number, error: string): void {
  res.setHeader('Connection', 'close');
  res.once('finish', () => {
    req.resume();
    setTimeout(() => req.destroy(), lingerMs).unref();
  });
  send(res, status, { error });
}

function refuseTooLarge(req: IncomingMessage, res: ServerResponse): void {
  refuseBody(req, res, 413, `webhook body larger than ${maxWebhookBytes} bytes`);
}

/**
 * The whole body; 'too large' as soon as it passes `limit` bytes (the rest is
 * not read); 'aborted' when the client went away before it ended.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size <= limit) return void chunks.push(chunk);
      req.off('data', onData);
      req.pause();
      resolve('too large');
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    // An aborted request emits 'error' (ECONNRESET) and 'close' without 'end'.
    req.once('error', () => resolve('aborted'));
    req.once('close', () => {
      if (!req.complete) resolve('aborted');
    });
  });
}

type InitialContext = { request?: Request; connectionParams?: Record<string, unknown> };

/** One HTTP server: GraphQL (HTTP, SSE, graphql-ws), health and metrics routes. */
export function createHttpServer(deps: ServerDependencies): HttpServer {
  const { db, services, metrics, logger } = deps;
  const limits = services.config.limits;
  const yoga: YogaServerInstance<InitialContext, GraphQLContext> = createYoga<InitialContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    graphiql: { title: 'RepoLens Sync', headers: JSON.stringify({ Authorization: 'Bearer <token>' }) },
    maskedErrors: { maskError: createErrorMasker(logger) },
    // SPEC §6 limits: a query's tokens, depth and aliases are checked before it runs (graphql-armor), its
    // estimated cost with its variables (ours), and each token's mutations are rate-limited; page sizes are
    // capped by the schema (100).
    plugins: [
      maxTokensPlugin({ n: limits.maxTokens }),
      maxDepthPlugin({ n: limits.maxDepth, flattenFragments: true }),
      maxAliasesPlugin({ n: limits.maxAliases }),
      useQueryCostLimit(limits.maxCost, pageSize.defaultSize),
      useMutationRateLimit(services.limits),
      useInputErrorCodes(),
    ],
    // One operation per request: an array of operations is refused.
    batching: false,
    // Yoga reports client mistakes (a missing token, a bad query) as errors;
    // unexpected errors are logged by the masker, so these stay below error.
    logging: {
      debug: (...args) => logger.debug(logLine(args)),
      info: (...args) => logger.debug(logLine(args)),
      warn: (...args) => logger.warn(logLine(args)),
      error: (...args) => logger.warn(logLine(args)),
    },
    context: async (initial): Promise<GraphQLContext> => {
      const header = initial.request?.headers.get('authorization') ?? initial.connectionParams?.authorization;
      const token = await authenticateToken(db.prisma, bearerToken(typeof header === 'string' ? header : null));
      if (!token) {
        throw new GraphQLError(tokenRequiredMessage, {
          extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } } },
        });
      }
      return { tenantId: token.tenantId, tokenId: token.tokenId, prisma: db.prisma, services };
    },
  });

  // Request line and headers at most maxHeaderBytes (431 past it); a request (headers and body) that takes longer
  // than requestTimeoutMs is answered 408 and closed: a client that trickles its body does not hold a socket forever.
  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: Math.min(limits.requestTimeoutMs, 60_000),
      // How often those timeouts are checked (Node: every 30 s; here within half the request timeout, at most 5 s).
      connectionsCheckingInterval: Math.min(5_000, Math.max(250, Math.floor(limits.requestTimeoutMs / 2))),
    },
    (req, res) => void route(req, res),
  );

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (path === '/graphql') {
        const refused = graphqlBodyRefusal(req);
        if (refused) return refuseBody(req, res, refused.status, refused.error);
        return void (await yoga(req, res));
      }
      if (path === '/webhooks/github' || path === '/webhooks/gitlab') return await webhook(req, res, path === '/webhooks/github' ? 'GITHUB' : 'GITLAB');
      if (path === '/oauth/github/callback' || path === '/oauth/gitlab/callback') return await oauthCallback(req, res, path === '/oauth/github/callback' ? 'GITHUB' : 'GITLAB');
      if (path === '/healthz') return send(res, 200, { status: 'ok' });
      if (path === '/readyz') {
        const ready = await db.checkReady().then(
          () => null,
          (error: Error) => error.message,
        );
        return send(res, ready ? 503 : 200, ready ? { status: 'unavailable', reason: ready } : { status: 'ready' });
      }
      if (path === '/metrics') {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        return void res.end(await metrics.registry.metrics());
      }
      send(res, 404, { error: 'not found' });
    } catch (error) {
      if (isDatabaseUnavailable(error)) {
        // Nothing was stored: the sender (a webhook's provider, a client) is told to try again.
        logger.warn({ err: (error as Error).message, path }, 'request refused: the database is unreachable');
        if (res.headersSent) return void res.destroy();
        res.setHeader('Retry-After', String(unavailableRetrySeconds));
        return send(res, 503, { error: 'the database is unreachable; nothing was stored, try again shortly' });
      }
      logger.error({ err: error, path }, 'request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  }

  /** GET /oauth/{github,gitlab}/callback: the provider's redirect after the user authorized (or refused). */
  async function oauthCallback(req: IncomingMessage, res: ServerResponse, provider: 'GITHUB' | 'GITLAB'): Promise<void> {
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return send(res, 405, { error: 'the OAuth callback is a GET' });
    }
    const answer = await services.oauth.callback(provider, new URL(req.url ?? '/', 'http://localhost').searchParams);
    if (answer.status === 400) return send(res, 400, answer.body);
    // The code and state are in this request's URL: no Referer carries them on.
    res.writeHead(302, { location: answer.location, 'referrer-policy': 'no-referrer', 'cache-control': 'no-store' }).end();
  }

  /** POST /webhooks/{github,gitlab}: the raw body (signatures are over its bytes), at most 25 MiB. */
  async function webhook(req: IncomingMessage, res: ServerResponse, provider: 'GITHUB' | 'GITLAB'): Promise<void> {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return send(res, 405, { error: 'webhooks are delivered with POST' });
    }
    const declared = Number(req.headers['content-length']);
    if (declared > maxWebhookBytes) return refuseTooLarge(req, res);
    const body = await readBody(req, maxWebhookBytes);
    if (body === 'too large') return refuseTooLarge(req, res);
    if (body === 'aborted') return void res.destroy();
    const answer = await services.webhooks.accept(provider, req.headers, body);
    if (answer.status >= 400) logger.info({ provider, status: answer.status, reason: answer.body.error }, 'webhook delivery refused');
    send(res, answer.status, answer.body);
  }

  /** A GraphQL POST declares its body's length (411 otherwise) and stays within maxBodyBytes (413). */
  function graphqlBodyRefusal(req: IncomingMessage): { status: number; error: string } | null {
    if (req.method !== 'POST') return null;
    const declared = req.headers['content-length'];
    if (declared === undefined) return { status: 411, error: 'a GraphQL request body needs a Content-Length' };
    if (Number(declared) > limits.maxBodyBytes) return { status: 413, error: `GraphQL request body larger than ${limits.maxBodyBytes} bytes` };
    return null;
  }

  // noServer: the HTTP server's own errors (a port in use) stay with it instead of being re-emitted here.
  // A WebSocket message is held to the same size as an HTTP body.
  const wsServer = new WebSocketServer({ noServer: true, maxPayload: limits.maxBodyBytes });
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/graphql') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    wsServer.handleUpgrade(req, socket, head, (ws) => wsServer.emit('connection', ws, req));
  });
  const wsCleanup = useServer(
    {
      onConnect: async (ctx) => {
        const header = ctx.connectionParams?.authorization;
        const token = await authenticateToken(db.prisma, bearerToken(typeof header === 'string' ? header : null));
        // graphql-ws closes with 4403 on `false`; our 4401 says which problem it is.
        if (!token) ctx.extra.socket.close(4401, 'UNAUTHENTICATED: a valid API token is required');
        return Boolean(token);
      },
      execute: (args) => (args.rootValue as { execute: typeof import('graphql').execute }).execute(args),
      subscribe: (args) => (args.rootValue as { subscribe: typeof import('graphql').subscribe }).subscribe(args),
      onSubscribe: async (ctx, _id, params) => {
        const { schema: envelopedSchema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
        });
        let contextValue: unknown;
        try {
          contextValue = await contextFactory();
        } catch (error) {
          return [error instanceof GraphQLError ? error : new GraphQLError('internal error', { extensions: { code: 'INTERNAL' } })];
        }
        let document;
        try {
          document = parse(params.query);
        } catch (error) {
          return [error as GraphQLError];
        }
        const errors = validate(envelopedSchema, document);
        if (errors.length) return errors;
        return {
          schema: envelopedSchema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue,
          rootValue: { execute, subscribe },
        };
      },
    },
    wsServer,
  );

  return {
    server,
    async close() {
      await wsCleanup.dispose();
      for (const client of wsServer.clients) client.terminate();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // In-flight requests get a moment to finish; SSE streams would never end by themselves.
      const force = setTimeout(() => server.closeAllConnections(), 1_000);
      await yoga.dispose();
      await closed;
      clearTimeout(force);
    },
  };
}

function logLine(args: unknown[]): string {
  return withoutInputValues(args.map(String).join(' '));
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
