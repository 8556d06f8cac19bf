import { parseArgs } from 'node:util';
import { startApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { DatabaseLockedError, openDatabase, type Database } from './storage/database.js';
import { createApiToken, TenantNameError } from './storage/tenants.js';

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

async function open(config: Config): Promise<Database> {
  try {
    return await openDatabase(config);
  } catch (error) {
    if (error instanceof DatabaseLockedError) throw new CliError(error.message);
    throw new CliError(`cannot open the database: ${(error as Error).message}`);
  }
}

async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const db = await open(config);
  await db.migrate();
  if (db.kind === 'embedded' && (await db.prisma.tenant.count()) === 0) {
    // A first start on a laptop is usable at once: one token, printed once.
    const { token } = await createApiToken(db.prisma, 'default');
    console.log(`Created tenant "default". Its API token (shown only now):\n\n  ${token}\n`);
  }
  let app: Awaited<ReturnType<typeof startApp>>;
  try {
    app = await startApp(config, { logger, db });
  } catch (error) {
    await db.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new CliError(`cannot listen on ${config.host}:${config.port}: the address is in use (set PORT or HOST)`);
    }
    throw error;
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
  const db = await open(config);
  try {
    const applied = await db.migrate();
    console.log(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'database is up to date');
  } finally {
    await db.close();
  }
}

async function tokenCreate(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { tenant: { type: 'string' } }, strict: true });
  if (!values.tenant) throw new CliError('usage: repolens token create --tenant <name>');
  const db = await open(config);
  try {
    await db.migrate();
    const { token } = await createApiToken(db.prisma, values.tenant);
    process.stdout.write(`${token}\n`);
  } catch (error) {
    if (error instanceof TenantNameError) throw new CliError(error.message);
    throw error;
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
