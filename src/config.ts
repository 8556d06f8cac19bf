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
    GITHUB_WEBHOOK_SECRET: z.string().min(1).optional(),
    GITLAB_WEBHOOK_SECRET: z.string().min(1).optional(),
    GITHUB_API_URL: z.url().default('https://api.github.com'),
    GITLAB_URL: z.url().default('https://gitlab.com'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
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
      /** Provider-wide webhook secrets: they verify deliveries for every registration. */
      githubWebhookSecret: env.GITHUB_WEBHOOK_SECRET,
      gitlabWebhookSecret: env.GITLAB_WEBHOOK_SECRET,
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
