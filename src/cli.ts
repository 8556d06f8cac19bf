import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from './config.js';
import type { Database } from './storage/database.js';
import { checkTenantName, createApiToken, TenantNameError } from './storage/tenants.js';

const usage = `usage: repolens <command>

  serve                         migrate the database if needed, then serve
  migrate                       apply database migrations and exit
  token create --tenant <name>  print a new API token for the tenant (created if new)`;

/** Expected failures end the process with one line, never a stack trace. */
class CliError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') return serve(loadConfigOrExit());
  if (command === 'migrate') return migrate(loadConfigOrExit());
  if (command === 'token' && rest[0] === 'create') return tokenCreate(loadConfigOrExit(), rest.slice(1));
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(usage);
    return;
  }
  throw new CliError(`unknown command "${argv.join(' ')}"\n${usage}`);
}

function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/** Opens the database (loaded on demand: `--help` and bad configuration answer at once) and applies migrations. */
async function openMigrated(config: Config): Promise<{ db: Database; applied: string[] }> {
  const { DatabaseLockedError, openDatabase } = await import('./storage/database.js');
  let db: Database;
  try {
    db = await openDatabase(config);
  } catch (error) {
    if (error instanceof DatabaseLockedError) throw new CliError(error.message);
    throw new CliError(`cannot open the database: ${describe(error)}`);
  }
  try {
    return { db, applied: await db.migrate() };
  } catch (error) {
    await db.close().catch(() => undefined);
    throw new CliError(`cannot migrate the database: ${describe(error)}`);
  }
}

/** One line for an error: connection failures can be an AggregateError with an empty message. */
function describe(error: unknown): string {
  const { message, code, errors } = error as { message?: string; code?: string; errors?: unknown[] };
  const text = message || (errors?.length ? describe(errors[0]) : '') || code || String(error);
  return text.split('\n')[0]!.trim();
}

/** Listen failures in one line naming the variable to change. */
function listenError(error: unknown, config: Config): CliError | undefined {
  const where = `${config.host}:${config.port}`;
  switch ((error as NodeJS.ErrnoException).code) {
    case 'EADDRINUSE':
      return new CliError(`cannot listen on ${where}: the address is in use (set PORT or HOST)`);
    case 'EADDRNOTAVAIL':
      return new CliError(`cannot listen on ${where}: HOST is not an address of this machine`);
    case 'EACCES':
      return new CliError(`cannot listen on ${where}: permission denied (set PORT above 1023)`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new CliError(`cannot listen on ${where}: HOST does not resolve`);
    default:
      return undefined;
  }
}

async function serve(config: Config): Promise<void> {
  const [{ startApp }, { createLogger }] = await Promise.all([import('./app.js'), import('./logger.js')]);
  const logger = createLogger(config.logLevel);
  const { db } = await openMigrated(config);
  if (db.kind === 'embedded' && (await db.prisma.tenant.count()) === 0) {
    // A first start on a laptop is usable at once: one token, printed once.
    const { token } = await createApiToken(db.prisma, 'default');
    console.log(`Created tenant "default". Its API token (shown only now):\n\n  ${token}\n`);
  }
  let app: Awaited<ReturnType<typeof startApp>>;
  try {
    app = await startApp(config, { logger, db });
  } catch (error) {
    await db.close().catch(() => undefined);
    throw listenError(error, config) ?? error;
  }
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    void app
      .close()
      .then(() => db.close())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'unclean shutdown');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

async function migrate(config: Config): Promise<void> {
  const { db, applied } = await openMigrated(config);
  await db.close();
  console.log(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'database is up to date');
}

async function tokenCreate(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { tenant: { type: 'string' } }, strict: true });
  if (!values.tenant) throw new CliError('usage: repolens token create --tenant <name>');
  // Bad input changes nothing: the name is checked before a database is opened (or created).
  try {
    checkTenantName(values.tenant);
  } catch (error) {
    if (error instanceof TenantNameError) throw new CliError(error.message);
    throw error;
  }
  const { db } = await openMigrated(config);
  try {
    const { token } = await createApiToken(db.prisma, values.tenant);
    process.stdout.write(`${token}\n`);
  } finally {
    await db.close();
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof CliError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`repolens: ${(error as Error).message}`);
  } else {
    console.error(`repolens: unexpected error: ${(error as Error).stack ?? String(error)}`);
  }
  process.exit(1);
});
