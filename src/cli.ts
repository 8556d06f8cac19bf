import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from './config.js';
import type { Database } from './storage/database.js';
import { checkTenantName, createApiToken, TenantNameError } from './storage/tenants.js';

const usage = `usage: repolens <command>

  serve                         migrate the database if needed, then serve
  migrate                       apply database migrations and exit
  token create --tenant <name>  print a new API token for the tenant (created if new)
  rotate-key                    re-encrypt every stored secret with a new key, in one transaction
                                (stop every instance first). With ENCRYPTION_KEY set, the new key
                                comes from NEW_ENCRYPTION_KEY (base64, 32 bytes); without it, a new
                                key (or NEW_ENCRYPTION_KEY) replaces $DATA_DIR/secret.key`;

/** Expected failures end the process with one line, never a stack trace. */
class CliError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') return serve(loadConfigOrExit());
  if (command === 'migrate') return migrate(loadConfigOrExit());
  if (command === 'token' && rest[0] === 'create') return tokenCreate(loadConfigOrExit(), rest.slice(1));
  if (command === 'rotate-key') return rotateKey(loadConfigOrExit(), rest);
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
  const [{ startApp }, { createLogger }, { killRunningGit }] = await Promise.all([import('./app.js'), import('./logger.js'), import('./sync/git.js')]);
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
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // A second signal: out now. Nothing half-done is lost: copies are swapped in whole, runs left
      // RUNNING are re-queued at the next start, and temporary clones are removed then.
      logger.warn({ signal, gitKilled: killRunningGit() }, 'second signal: exiting at once');
      process.exit(130);
    }
    stopping = true;
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
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
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

/**
 * Re-encrypts every stored secret from the current key to a new one, in one transaction. The new
 * key never travels in an argument and is never printed: it comes from NEW_ENCRYPTION_KEY, or is
 * generated into $DATA_DIR/secret.key (through secret.key.new, so that a crashed rotation can be
 * finished by running the command again).
 */
async function rotateKey(config: Config, args: string[]): Promise<void> {
  // Not echoed: a key given here by mistake must not reach the output too.
  if (args.length > 0) throw new CliError('rotate-key takes no arguments: the new key comes from NEW_ENCRYPTION_KEY, never from the command line');
  const rotation = await import('./storage/rotateKey.js');
  try {
    if (config.encryptionKey) await rotateConfiguredKey(config, config.encryptionKey, rotation);
    else await rotateKeyFile(config, rotation);
  } catch (error) {
    if (error instanceof rotation.RotationError) throw new CliError(error.message);
    throw error;
  }
}

type Rotation = typeof import('./storage/rotateKey.js');

async function rotateConfiguredKey(config: Config, currentKey: Buffer, rotation: Rotation): Promise<void> {
  // Bad input changes nothing: the new key is checked before a database is opened.
  const newKey = rotation.parseKey(process.env.NEW_ENCRYPTION_KEY, 'NEW_ENCRYPTION_KEY');
  if (newKey.equals(currentKey)) throw new CliError('NEW_ENCRYPTION_KEY is the current ENCRYPTION_KEY: give it a new key; nothing was changed');
  const { db } = await openMigrated(config);
  let counts: Awaited<ReturnType<Rotation['reencryptSecrets']>>;
  try {
    await refuseWhileServing(db);
    counts = await rotation.reencryptSecrets(db.prisma, currentKey, newKey).catch((error: unknown) => {
      if (error instanceof rotation.RotationError) throw new CliError(error.message);
      throw new CliError(`the rotation did not complete: ${describe(error)}; run rotate-key again with the same keys to finish it`);
    });
  } finally {
    await db.close();
  }
  console.log(`${rotation.describeCounts(counts)}, in one transaction`);
  console.log(
    'Every stored secret is now sealed with the key in NEW_ENCRYPTION_KEY. Next: set ENCRYPTION_KEY to that value on every instance, ' +
      'then start them again (keep them stopped until then: an instance still on the old key cannot open the stored secrets).',
  );
}

async function rotateKeyFile(config: Config, rotation: Rotation): Promise<void> {
  const files = rotation.keyFiles(config.dataDir);
  const currentKey = await rotation.readKeyFile(files.current);
  if (currentKey === null) {
    throw new CliError(`there is no key to rotate: ${files.current} does not exist (serve creates it at its first start) and ENCRYPTION_KEY is not set`);
  }
  if (currentKey === 'invalid') throw new CliError(`${files.current} does not hold a 32-byte base64 key; nothing was changed`);
  const requested = process.env.NEW_ENCRYPTION_KEY?.trim() ? rotation.parseKey(process.env.NEW_ENCRYPTION_KEY, 'NEW_ENCRYPTION_KEY') : undefined;
  if (requested?.equals(currentKey)) throw new CliError(`NEW_ENCRYPTION_KEY is the key ${files.current} holds now: give it a new key; nothing was changed`);
  // A rotation that stopped half-way left its key in secret.key.new (written before the transaction):
  // its secrets may be sealed with it already, so it is finished with that key. A file that holds no
  // key was cut short before the transaction, which then never ran: it is replaced.
  let pending = await rotation.readKeyFile(files.pending);
  if (pending === 'invalid' || pending?.equals(currentKey)) pending = null;
  if (pending && requested && !requested.equals(pending)) {
    throw new CliError(
      `an unfinished rotation left ${files.pending}: run rotate-key again without NEW_ENCRYPTION_KEY to finish it with that file's key; nothing was changed`,
    );
  }
  const newKey = pending ?? requested ?? rotation.generateKey();

  const { db } = await openMigrated(config);
  let counts: Awaited<ReturnType<Rotation['reencryptSecrets']>>;
  try {
    await refuseWhileServing(db);
    if (pending) console.log(`finishing the rotation that ${files.pending} was left from`);
    // The new key is on disk before any secret is sealed with it.
    else await rotation.writeKeyFile(files.pending, newKey);
    try {
      counts = await rotation.reencryptSecrets(db.prisma, currentKey, newKey);
    } catch (error) {
      if (error instanceof rotation.RotationError) {
        // Refused before anything was written: this attempt's key file goes too.
        if (!pending) await rotation.removePendingKey(config.dataDir);
        throw new CliError(error.message);
      }
      // The database failed, maybe as it committed: the key file stays, and a rerun finishes the rotation.
      throw new CliError(`the rotation did not complete: ${describe(error)}; ${files.pending} is kept: run rotate-key again to finish it`);
    }
    await rotation.promotePendingKey(config.dataDir);
  } finally {
    await db.close();
  }
  console.log(`${rotation.describeCounts(counts)}, in one transaction`);
  console.log(`${files.current} now holds the new key; the old key is gone. Start repolens serve again.`);
}

/**
 * Instances keep the key they started with: one serving during a rotation would seal new secrets
 * with the old key, or fail to open the re-encrypted ones. The embedded database's lock already
 * refuses a second process; on PostgreSQL an instance is serving while its lease is held.
 */
async function refuseWhileServing(db: Database): Promise<void> {
  if (db.kind !== 'postgresql') return;
  const { randomUUID } = await import('node:crypto');
  const lease = await db.leaseInstance(`rotate-key-${process.pid}-${randomUUID()}`);
  try {
    const live: string[] = [];
    for (const { id } of await db.prisma.instance.findMany({ select: { id: true }, orderBy: { id: 'asc' } })) {
      if (await lease.isAlive(id)) live.push(id);
    }
    if (live.length > 0) {
      throw new CliError(
        `${live.length} repolens instance(s) are serving on this database (${live.join(', ')}): stop every instance before rotating the key; nothing was changed`,
      );
    }
  } finally {
    await lease.release();
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
