import path from 'node:path';
import { z } from 'zod';

const flag = z
  .enum(['0', '1', 'true', 'false', ''])
  .optional()
  .transform((value) => value === '1' || value === 'true');

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const optionalUrl = z.url({ protocol: /^https?$/ }).optional();

const schema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65535).default(4000),
    HOST: z.string().min(1).default('127.0.0.1'),
    DATA_DIR: z.string().min(1).default('./data'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// connection string')
      .optional(),
    PUBLIC_URL: optionalUrl,
    ENCRYPTION_KEY: z
      .string()
      .refine((value) => Buffer.from(value, 'base64').length === 32, 'must be 32 bytes, base64-encoded')
      .optional(),
    SYNC_CONCURRENCY: positiveInt(4),
    SYNC_HOST_CONCURRENCY: positiveInt(2),
    REPOLENS_ALLOW_PRIVATE_HOSTS: flag,
    REPOLENS_GIT_TIMEOUT_MS: positiveInt(10 * 60_000),
    REPOLENS_GIT_IDLE_TIMEOUT_MS: positiveInt(2 * 60_000),
    REPOLENS_SCHEDULER_INTERVAL_MS: z.coerce.number().int().min(0).default(15_000),
    REPOLENS_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(10_000),
    REPOLENS_ORPHAN_SWEEP_MS: z.coerce.number().int().min(0).default(30_000),
    REPOLENS_HEARTBEAT_MS: positiveInt(2_000),
    REPOLENS_GRAPHQL_MAX_DEPTH: positiveInt(12),
    REPOLENS_GRAPHQL_MAX_COST: positiveInt(50_000),
    REPOLENS_GRAPHQL_MAX_ALIASES: positiveInt(100),
    REPOLENS_GRAPHQL_MAX_TOKENS: positiveInt(10_000),
    REPOLENS_MAX_BODY_BYTES: positiveInt(1024 * 1024),
    REPOLENS_MAX_HEADER_BYTES: positiveInt(16 * 1024),
    REPOLENS_REQUEST_TIMEOUT_MS: positiveInt(60_000),
    REPOLENS_MUTATIONS_PER_MINUTE: z.coerce.number().int().min(0).default(600),
    REPOLENS_MAX_SUBSCRIPTIONS_PER_TOKEN: z.coerce.number().int().min(0).default(100),
    REPOLENS_INSTANCE_TTL_MS: positiveInt(15_000),
    GITHUB_WEBHOOK_SECRET: z.string().min(1).optional(),
    GITLAB_WEBHOOK_SECRET: z.string().min(1).optional(),
    S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name').optional(),
    S3_ENDPOINT: optionalUrl,
    S3_REGION: z.string().min(1).optional(),
    S3_FORCE_PATH_STYLE: flag,
    AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
    AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    AWS_SESSION_TOKEN: z.string().min(1).optional(),
    REPOLENS_KEEP_SNAPSHOTS: positiveInt(10),
    REPOLENS_LOCAL_BUDGET_BYTES: z.coerce.number().int().positive().optional(),
    REPOLENS_LOCAL_MAX_IDLE_MS: z.coerce.number().int().positive().optional(),
    REPOLENS_RESTORE_MAX_BYTES: positiveInt(64 * 1024 ** 3),
    REPOLENS_RESTORE_MAX_ENTRIES: positiveInt(2_000_000),
    REPOLENS_ARCHIVE_RETRY_MS: z.coerce.number().int().min(0).default(1000),
    REPOLENS_ARCHIVE_COLLECT_GRACE_MS: z.coerce.number().int().min(0).default(15 * 60_000),
    NEO4J_URL: z.url({ protocol: /^(bolt|neo4j)(\+s|\+ssc)?$/ }).optional(),
    NEO4J_USER: z.string().min(1).optional(),
    NEO4J_PASSWORD: z.string().optional(),
    REPOLENS_INDEX_MAX_FILE_BYTES: positiveInt(1024 * 1024),
    GITHUB_API_URL: z.url().default('https://api.github.com'),
    GITLAB_URL: z.url().default('https://gitlab.com'),
    REPOLENS_PROVIDER_TIMEOUT_MS: positiveInt(30_000),
    GITHUB_CLIENT_ID: z.string().min(1).optional(),
    GITHUB_CLIENT_SECRET: z.string().min(1).optional(),
    GITLAB_CLIENT_ID: z.string().min(1).optional(),
    GITLAB_CLIENT_SECRET: z.string().min(1).optional(),
    REPOLENS_PROVIDER_MAX_WAIT_S: z.coerce.number().int().min(0).default(15 * 60),
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
    REPOLENS_DELTA_AUTO_MIN_BYTES: z.coerce.number().int().min(0).default(1024 ** 3),
    REPOLENS_MAX_REPO_BYTES: z.coerce.number().int().positive().optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .superRefine((env, context) => {
    // An OAuth app is its id and its secret: one without the other is a mistake, not "OAuth off".
    for (const [id, secret] of [['GITHUB_CLIENT_ID', 'GITHUB_CLIENT_SECRET'], ['GITLAB_CLIENT_ID', 'GITLAB_CLIENT_SECRET']] as const) {
      if (Boolean(env[id]) !== Boolean(env[secret])) {
        context.addIssue({ code: 'custom', path: [env[id] ? secret : id], message: `must be set together with ${env[id] ? id : secret}` });
      }
    }
    // A live instance renews its heartbeat several times within the TTL, or the others drop it between two beats.
    if (env.REPOLENS_INSTANCE_TTL_MS < 3 * env.REPOLENS_HEARTBEAT_MS) {
      context.addIssue({ code: 'custom', path: ['REPOLENS_INSTANCE_TTL_MS'], message: 'must be at least 3 × REPOLENS_HEARTBEAT_MS' });
    }
  })
  .transform((env) => {
    const dataDir = path.resolve(env.DATA_DIR);
    return {
      port: env.PORT,
      host: env.HOST,
      dataDir,
      databaseUrl: env.DATABASE_URL,
      publicUrl: (env.PUBLIC_URL ?? `http://${env.HOST}:${env.PORT}`).replace(/\/+$/, ''),
      /** false: publicUrl is derived from the listen address (and follows the bound port). */
      publicUrlConfigured: env.PUBLIC_URL !== undefined,
      encryptionKey: env.ENCRYPTION_KEY ? Buffer.from(env.ENCRYPTION_KEY, 'base64') : undefined,
      syncConcurrency: env.SYNC_CONCURRENCY,
      hostConcurrency: env.SYNC_HOST_CONCURRENCY,
      allowPrivateHosts: env.REPOLENS_ALLOW_PRIVATE_HOSTS,
      gitTimeoutMs: env.REPOLENS_GIT_TIMEOUT_MS,
      gitIdleTimeoutMs: env.REPOLENS_GIT_IDLE_TIMEOUT_MS,
      shutdownGraceMs: env.REPOLENS_SHUTDOWN_GRACE_MS,
      schedulerIntervalMs: env.REPOLENS_SCHEDULER_INTERVAL_MS,
      orphanSweepMs: env.REPOLENS_ORPHAN_SWEEP_MS,
      /** Several instances (SPEC §1): heartbeat period, and how stale a heartbeat makes an instance gone. */
      heartbeatMs: env.REPOLENS_HEARTBEAT_MS,
      /** Limits of the API (SPEC §6): query shape, request size and time, per-token rates. */
      limits: {
        maxDepth: env.REPOLENS_GRAPHQL_MAX_DEPTH,
        maxCost: env.REPOLENS_GRAPHQL_MAX_COST,
        maxAliases: env.REPOLENS_GRAPHQL_MAX_ALIASES,
        maxTokens: env.REPOLENS_GRAPHQL_MAX_TOKENS,
        maxBodyBytes: env.REPOLENS_MAX_BODY_BYTES,
        maxHeaderBytes: env.REPOLENS_MAX_HEADER_BYTES,
        requestTimeoutMs: env.REPOLENS_REQUEST_TIMEOUT_MS,
        mutationsPerMinute: env.REPOLENS_MUTATIONS_PER_MINUTE,
        maxSubscriptionsPerToken: env.REPOLENS_MAX_SUBSCRIPTIONS_PER_TOKEN,
      },
      instanceTtlMs: env.REPOLENS_INSTANCE_TTL_MS,
      /** Provider-wide webhook secrets: they verify deliveries for every registration. */
      githubWebhookSecret: env.GITHUB_WEBHOOK_SECRET,
      /** Provider REST APIs (GitHub, GitLab): each call's limit, and the longest rate-limit wait before a call fails. */
      providerTimeoutMs: env.REPOLENS_PROVIDER_TIMEOUT_MS,
      providerMaxWaitS: env.REPOLENS_PROVIDER_MAX_WAIT_S,
      /** Sync events across instances through Redis (yoga's Redis event target); without it, PostgreSQL LISTEN/NOTIFY. */
      redisUrl: env.REDIS_URL,
      /** AUTO tries DELTA for a repository its platform reported at least this large (0: every repository with a platform credential). */
      deltaAutoMinBytes: env.REPOLENS_DELTA_AUTO_MIN_BYTES,
      /**
       * A repository bigger than this is refused (unset: no limit): at addRepository when its
       * platform reports the size, and during a sync as soon as the transfer takes it past.
       */
      maxRepoBytes: env.REPOLENS_MAX_REPO_BYTES,
      /** OAuth apps (startOAuth): both the id and the secret, or OAuth with that provider is off. */
      oauth: {
        GITHUB: env.GITHUB_CLIENT_ID && env.GITHUB_CLIENT_SECRET ? { clientId: env.GITHUB_CLIENT_ID, clientSecret: env.GITHUB_CLIENT_SECRET } : undefined,
        GITLAB: env.GITLAB_CLIENT_ID && env.GITLAB_CLIENT_SECRET ? { clientId: env.GITLAB_CLIENT_ID, clientSecret: env.GITLAB_CLIENT_SECRET } : undefined,
      },
      gitlabWebhookSecret: env.GITLAB_WEBHOOK_SECRET,
      /** S3 when a bucket is named, else $DATA_DIR/archives (SPEC §2). */
      s3: env.S3_BUCKET
        ? {
            bucket: env.S3_BUCKET,
            endpoint: env.S3_ENDPOINT,
            region: env.S3_REGION,
            forcePathStyle: env.S3_FORCE_PATH_STYLE,
            credentials:
              env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
                ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN }
                : undefined,
          }
        : undefined,
      archive: {
        keepSnapshots: env.REPOLENS_KEEP_SNAPSHOTS,
        /** Working copies above this many bytes in all are evicted, least recently used first (archived ones only). */
        localBudgetBytes: env.REPOLENS_LOCAL_BUDGET_BYTES,
        /** Archived working copies unused for this long are evicted. */
        localMaxIdleMs: env.REPOLENS_LOCAL_MAX_IDLE_MS,
        restoreLimits: { maxBytes: env.REPOLENS_RESTORE_MAX_BYTES, maxEntries: env.REPOLENS_RESTORE_MAX_ENTRIES },
        /** First wait between attempts to store an archive (doubled each time, three attempts). */
        retryMs: env.REPOLENS_ARCHIVE_RETRY_MS,
        /** Unreferenced archive objects younger than this survive a collection. */
        collectGraceMs: env.REPOLENS_ARCHIVE_COLLECT_GRACE_MS,
      },
      /** Code graph in Neo4j when NEO4J_URL is set (SPEC §2); metadata is always indexed. */
      neo4j: env.NEO4J_URL ? { url: env.NEO4J_URL, user: env.NEO4J_USER, password: env.NEO4J_PASSWORD } : undefined,
      index: {
        /** Files bigger than this are not parsed, nor their lines counted. */
        maxFileBytes: env.REPOLENS_INDEX_MAX_FILE_BYTES,
      },
      githubApiUrl: env.GITHUB_API_URL,
      gitlabUrl: env.GITLAB_URL,
      logLevel: env.LOG_LEVEL,
    };
  });

export type Config = z.output<typeof schema>;

export class ConfigError extends Error {}

/** Reads the configuration once; a bad variable is named in one line per problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const variable = String(issue.path[0] ?? 'environment');
    return `invalid configuration: ${variable} ${issue.message.replace(/^Invalid input: /, '')}`;
  });
  throw new ConfigError(lines.join('\n'));
}
