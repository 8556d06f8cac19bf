import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/storage/database.js';
import { createSecretBox, loadEncryptionKey } from '../src/storage/secrets.js';
import { identityKey } from '../src/sync/webhooks.js';
import { createTestDatabase } from './support/database.js';
import { killAllServers, lines, runCli, type CliResult, type Env, type ServerProcess } from './support/serverProcess.js';
import { expectOneLineFailure, serveForTest } from './support/cli.js';
import { exists } from './support/wait.js';
import { deliver, githubHeaders, loadFixture, retarget } from './support/webhooks.js';

const temporary: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'repolens-rotate-'));
  temporary.push(dir);
  return dir;
}

afterAll(async () => {
  await killAllServers();
  await Promise.all(temporary.map((dir) => rm(dir, { recursive: true, force: true })));
});

const newKey = () => randomBytes(32);
const b64 = (key: Buffer) => key.toString('base64');

/** Where a database lives: a PostgreSQL URL, or an embedded DATA_DIR. */
type Place = { databaseUrl: string } | { dataDir: string };

async function withDb<T>(place: Place, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase('databaseUrl' in place ? { databaseUrl: place.databaseUrl, dataDir: '/nonexistent' } : { dataDir: place.dataDir });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** One sealed column of one row. */
interface Sealed {
  table: 'Credential' | 'Repository' | 'OAuthState';
  column: string;
  id: string;
  value: string | null;
}

/** Every sealed column of every row, as stored (raw), in a stable order; Repository.updatedAt too. */
async function snapshot(db: Database): Promise<{ sealed: Sealed[]; repositoryUpdatedAt: Record<string, string> }> {
  const [credentials, repositories, states] = await Promise.all([
    db.prisma.credential.findMany({ select: { id: true, encryptedSecret: true, encryptedRefreshToken: true }, orderBy: { id: 'asc' } }),
    db.prisma.repository.findMany({ select: { id: true, webhookSecret: true, updatedAt: true }, orderBy: { id: 'asc' } }),
    db.prisma.oAuthState.findMany({ select: { id: true, codeVerifier: true }, orderBy: { id: 'asc' } }),
  ]);
  const sealed: Sealed[] = [
    ...credentials.flatMap((row) => [
      { table: 'Credential' as const, column: 'encryptedSecret', id: row.id, value: row.encryptedSecret },
      { table: 'Credential' as const, column: 'encryptedRefreshToken', id: row.id, value: row.encryptedRefreshToken },
    ]),
    ...repositories.map((row) => ({ table: 'Repository' as const, column: 'webhookSecret', id: row.id, value: row.webhookSecret })),
    ...states.map((row) => ({ table: 'OAuthState' as const, column: 'codeVerifier', id: row.id, value: row.codeVerifier })),
  ];
  return { sealed, repositoryUpdatedAt: Object.fromEntries(repositories.map((row) => [row.id, row.updatedAt.toISOString()])) };
}

const slot = (entry: { table: string; column: string; id: string }) => `${entry.table}.${entry.column}.${entry.id}`;

/** The seeded rows and the plaintext of each sealed value (null: the column is empty). */
interface Seeded {
  plaintexts: Map<string, string | null>;
  /** The repository a GitHub ping can be delivered to, and its webhook secret. */
  hook: { target: { url: string; name: string }; secret: string };
}

const secretText = (prefix: string) => `${prefix}_${randomBytes(18).toString('base64url')}`;

/**
 * 3 credentials (2 with a refresh token), 3 repositories (2 with a webhook secret), 2 OAuth states
 * (1 with a code verifier), sealed with `key`: 8 sealed values, 4 empty columns.
 */
async function seed(db: Database, key: Buffer): Promise<Seeded> {
  const box = createSecretBox(key);
  const plaintexts = new Map<string, string | null>();
  const sealOrNull = (table: Sealed['table'], column: string, id: string, plaintext: string | null) => {
    plaintexts.set(slot({ table, column, id }), plaintext);
    return plaintext === null ? null : box.encrypt(plaintext);
  };
  const tenant = await db.prisma.tenant.create({ data: { name: `rotate-${randomBytes(4).toString('hex')}` } });
  const project = await db.prisma.project.create({ data: { tenantId: tenant.id, name: 'keys' } });
  const credentials = [
    { provider: 'GITHUB' as const, host: 'github.com', secret: secretText('ghp'), refresh: null },
    { provider: 'GITLAB' as const, host: 'gitlab.com', secret: secretText('glpat'), refresh: secretText('glrt') },
    { provider: 'GITLAB' as const, host: 'gitlab.example.com', secret: secretText('glpat'), refresh: secretText('glrt') },
  ];
  for (const credential of credentials) {
    const id = randomUUID();
    await db.prisma.credential.create({
      data: {
        id,
        tenantId: tenant.id,
        provider: credential.provider,
        host: credential.host,
        encryptedSecret: sealOrNull('Credential', 'encryptedSecret', id, credential.secret)!,
        encryptedRefreshToken: sealOrNull('Credential', 'encryptedRefreshToken', id, credential.refresh),
      },
    });
  }
  const hook = { target: { url: 'https://github.com/acme/widgets.git', name: 'acme/widgets' }, secret: secretText('whsec') };
  const repositories = [
    { name: 'acme/widgets', secret: hook.secret },
    { name: 'acme/gadgets', secret: secretText('whsec') },
    { name: 'acme/plain', secret: null },
  ];
  for (const repository of repositories) {
    const id = randomUUID();
    await db.prisma.repository.create({
      data: {
        id,
        tenantId: tenant.id,
        projectId: project.id,
        provider: 'GITHUB',
        name: repository.name,
        url: `https://github.com/${repository.name}.git`,
        host: 'github.com',
        branch: 'main',
        identityKey: identityKey('github.com', repository.name),
        webhookSecret: sealOrNull('Repository', 'webhookSecret', id, repository.secret),
        // Never due: the server started on this data checks nothing upstream.
        nextCheckAt: null,
      },
    });
  }
  for (const verifier of [secretText('pkce'), null]) {
    const id = randomUUID();
    await db.prisma.oAuthState.create({
      data: {
        id,
        stateHash: randomBytes(16).toString('hex'),
        tenantId: tenant.id,
        provider: 'GITLAB',
        redirectUri: 'https://app.example.com/done',
        codeVerifier: sealOrNull('OAuthState', 'codeVerifier', id, verifier),
        expiresAt: new Date(Date.now() + 600_000),
      },
    });
  }
  return { plaintexts, hook };
}

const expectedCounts = 're-encrypted 3 credentials, 2 refresh tokens, 2 webhook secrets, 1 OAuth states';

function opensWith(key: Buffer, sealed: string): string | null {
  try {
    return createSecretBox(key).decrypt(sealed);
  } catch {
    return null;
  }
}

/** Every sealed value opens with `key` (and not with any of `not`) to its seeded plaintext; empty columns stay empty. */
function expectSealedWith(after: Sealed[], seeded: Seeded, key: Buffer, not: Buffer[]): void {
  expect(after.map(slot).sort()).toEqual([...seeded.plaintexts.keys()].sort());
  for (const entry of after) {
    const plaintext = seeded.plaintexts.get(slot(entry));
    if (plaintext === null) {
      expect(entry.value, slot(entry)).toBeNull();
      continue;
    }
    expect(entry.value, slot(entry)).toMatch(/^v1\./);
    expect(opensWith(key, entry.value!), slot(entry)).toBe(plaintext);
    for (const other of not) expect(opensWith(other, entry.value!), `${slot(entry)} still opens with another key`).toBeNull();
  }
}

/** Neither a key (in any usual spelling) nor a plaintext secret appears in the command's output. */
function expectNoLeak(result: CliResult, keys: Buffer[], seeded: Seeded): void {
  const output = result.stdout + result.stderr;
  for (const key of keys) {
    for (const spelling of [key.toString('base64'), key.toString('base64url'), key.toString('hex'), key.toString('base64').slice(0, 16)]) {
      expect(output.includes(spelling), 'a key appears in the output').toBe(false);
    }
  }
  for (const plaintext of seeded.plaintexts.values()) {
    if (plaintext !== null) expect(output.includes(plaintext), 'a plaintext secret appears in the output').toBe(false);
  }
}

function expectSuccess(result: CliResult): string[] {
  expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
  expect(result.stderr).toBe('');
  return lines(result.stdout);
}

/** A GitHub ping for the seeded repository, signed with `secret`: 200 only if the server opened the stored secret. */
async function ping(server: ServerProcess, seeded: Seeded, secret: string): Promise<number> {
  const body = retarget(await loadFixture('github-ping-repo-octokit.json'), seeded.hook.target);
  return (await deliver(server.url, 'github', githubHeaders('ping', body, secret), body)).status;
}

async function fileMode(file: string): Promise<number> {
  return (await stat(file)).mode & 0o777;
}

async function keyFileKey(file: string): Promise<Buffer> {
  return Buffer.from((await readFile(file, 'utf8')).trim(), 'base64');
}

// Every step starts a node process (and PGlite, on the embedded path): one after the other.
describe('repolens rotate-key', { timeout: 300_000 }, () => {
  describe('on PostgreSQL with ENCRYPTION_KEY', () => {
    it('re-encrypts every sealed value with NEW_ENCRYPTION_KEY in one run, prints the counts and what to do, and never the keys or secrets; a rerun changes nothing', async (context) => {
      const database = await createTestDatabase();
      context.onTestFinished(() => database.drop());
      const place = { databaseUrl: database.url };
      const [oldKey, nextKey] = [newKey(), newKey()];
      const seeded = await withDb(place, (db) => seed(db, oldKey));
      const before = await withDb(place, snapshot);

      const env: Env = { DATABASE_URL: database.url, DATA_DIR: await tempDir(), ENCRYPTION_KEY: b64(oldKey), NEW_ENCRYPTION_KEY: b64(nextKey) };
      const result = await runCli(['rotate-key'], env);
      const output = expectSuccess(result);
      expect(output[0]).toBe(`${expectedCounts}, in one transaction`);
      expect(result.stdout).toMatch(/set ENCRYPTION_KEY to that value on every instance/);
      expect(result.stdout).toMatch(/start them again/);
      expectNoLeak(result, [oldKey, nextKey], seeded);

      const after = await withDb(place, snapshot);
      expectSealedWith(after.sealed, seeded, nextKey, [oldKey]);
      // Every sealed value was rewritten; re-sealing is no change of the repository row.
      for (const entry of after.sealed) {
        const previous = before.sealed.find((candidate) => slot(candidate) === slot(entry))!;
        if (entry.value !== null) expect(entry.value, slot(entry)).not.toBe(previous.value);
      }
      expect(after.repositoryUpdatedAt).toEqual(before.repositoryUpdatedAt);

      // The same command again (ENCRYPTION_KEY not yet changed): everything already has the new key.
      const again = await runCli(['rotate-key'], env);
      expect(expectSuccess(again)[0]).toBe('re-encrypted 0 credentials, 0 refresh tokens, 0 webhook secrets, 0 OAuth states (8 sealed value(s) already had the new key), in one transaction');
      expectNoLeak(again, [oldKey, nextKey], seeded);
      expect((await withDb(place, snapshot)).sealed).toEqual(after.sealed);
    });

    it('refuses while an instance serves on the database; once it is stopped, rotates, and a server on the new key opens the stored secrets', async (context) => {
      const database = await createTestDatabase();
      context.onTestFinished(() => database.drop());
      const place = { databaseUrl: database.url };
      const [oldKey, nextKey] = [newKey(), newKey()];
      const seeded = await withDb(place, (db) => seed(db, oldKey));
      const dataDir = await tempDir();
      const env: Env = { DATABASE_URL: database.url, DATA_DIR: dataDir, ENCRYPTION_KEY: b64(oldKey), NEW_ENCRYPTION_KEY: b64(nextKey) };

      const running = await serveForTest(context, { databaseUrl: database.url, dataDir, env: { ENCRYPTION_KEY: b64(oldKey) } });
      expect(await ping(running, seeded, seeded.hook.secret)).toBe(200);
      const before = await withDb(place, snapshot);
      const refused = await runCli(['rotate-key'], env);
      expect(expectOneLineFailure(refused)).toMatch(/1 repolens instance\(s\) are serving on this database .*stop every instance/);
      expectNoLeak(refused, [oldKey, nextKey], seeded);
      expect(await withDb(place, snapshot)).toEqual(before);

      running.kill('SIGTERM');
      expect(await running.waitForExit(30_000)).toEqual({ code: 0, signal: null });
      const rotated = await runCli(['rotate-key'], env);
      expect(expectSuccess(rotated)[0]).toBe(`${expectedCounts}, in one transaction`);
      expectSealedWith((await withDb(place, snapshot)).sealed, seeded, nextKey, [oldKey]);

      const restarted = await serveForTest(context, { databaseUrl: database.url, dataDir, env: { ENCRYPTION_KEY: b64(nextKey) } });
      expect(await ping(restarted, seeded, seeded.hook.secret)).toBe(200);
      expect(await ping(restarted, seeded, 'not-the-secret')).toBe(401);
    });

    it('bad input changes nothing: NEW_ENCRYPTION_KEY missing, malformed, the wrong length or the current key, or a key on the command line', async (context) => {
      const database = await createTestDatabase();
      context.onTestFinished(() => database.drop());
      const place = { databaseUrl: database.url };
      const oldKey = newKey();
      const seeded = await withDb(place, (db) => seed(db, oldKey));
      const before = await withDb(place, snapshot);
      const base: Env = { DATABASE_URL: database.url, DATA_DIR: await tempDir(), ENCRYPTION_KEY: b64(oldKey) };
      const given = newKey();
      const cases: { name: string; args?: string[]; env: Env; message: RegExp }[] = [
        { name: 'missing', env: {}, message: /NEW_ENCRYPTION_KEY is not set/ },
        { name: 'empty', env: { NEW_ENCRYPTION_KEY: '' }, message: /NEW_ENCRYPTION_KEY is not set/ },
        { name: '16 bytes', env: { NEW_ENCRYPTION_KEY: b64(randomBytes(16)) }, message: /NEW_ENCRYPTION_KEY must be 32 bytes, base64-encoded \(it decodes to 16 bytes\)/ },
        { name: 'not base64', env: { NEW_ENCRYPTION_KEY: 'this is not a key at all, not even close!!' }, message: /NEW_ENCRYPTION_KEY must be 32 bytes, base64-encoded/ },
        { name: 'the current key', env: { NEW_ENCRYPTION_KEY: b64(oldKey) }, message: /NEW_ENCRYPTION_KEY is the current ENCRYPTION_KEY/ },
        { name: 'on the command line', args: [b64(given)], env: { NEW_ENCRYPTION_KEY: b64(given) }, message: /takes no arguments/ },
      ];
      const results = await Promise.all(cases.map((entry) => runCli(['rotate-key', ...(entry.args ?? [])], { ...base, ...entry.env })));
      results.forEach((result, index) => {
        const entry = cases[index]!;
        expect(expectOneLineFailure(result), entry.name).toMatch(entry.message);
        expectNoLeak(result, [oldKey, given], seeded);
      });
      expect(await withDb(place, snapshot)).toEqual(before);
    });

    it('a value sealed with a foreign key stops the rotation with its table and row id, and no row changes', async (context) => {
      const database = await createTestDatabase();
      context.onTestFinished(() => database.drop());
      const place = { databaseUrl: database.url };
      const [oldKey, nextKey, foreignKey] = [newKey(), newKey(), newKey()];
      const seeded = await withDb(place, (db) => seed(db, oldKey));
      // The OAuth states are read last: the credentials and repositories before it would have been re-sealed already.
      const foreignPlaintext = secretText('foreign');
      const foreignId = await withDb(place, async (db) => {
        const state = await db.prisma.oAuthState.findFirstOrThrow({ where: { codeVerifier: { not: null } } });
        await db.prisma.oAuthState.update({ where: { id: state.id }, data: { codeVerifier: createSecretBox(foreignKey).encrypt(foreignPlaintext) } });
        return state.id;
      });
      seeded.plaintexts.set(slot({ table: 'OAuthState', column: 'codeVerifier', id: foreignId }), foreignPlaintext);
      const before = await withDb(place, snapshot);

      const result = await runCli(['rotate-key'], { DATABASE_URL: database.url, DATA_DIR: await tempDir(), ENCRYPTION_KEY: b64(oldKey), NEW_ENCRYPTION_KEY: b64(nextKey) });
      const line = expectOneLineFailure(result);
      expect(line).toBe(`repolens: OAuthState ${foreignId}: codeVerifier opens with neither the current key nor the new key; nothing was changed`);
      expectNoLeak(result, [oldKey, nextKey, foreignKey], seeded);
      expect(await withDb(place, snapshot)).toEqual(before);
    });
  });

  describe('with the generated key in $DATA_DIR/secret.key (embedded database)', () => {
    async function embedded(): Promise<{ dataDir: string; keyFile: string; oldKey: Buffer; seeded: Seeded }> {
      const dataDir = await tempDir();
      // The key serve generates at its first start.
      const oldKey = await loadEncryptionKey(dataDir);
      const seeded = await withDb({ dataDir }, async (db) => {
        await db.migrate();
        return seed(db, oldKey);
      });
      return { dataDir, keyFile: path.join(dataDir, 'secret.key'), oldKey, seeded };
    }

    it('replaces the key file (0600) and re-encrypts; refused while serve holds the database; serve then starts on the new key and opens the stored secrets', async (context) => {
      const { dataDir, keyFile, oldKey, seeded } = await embedded();
      const before = await withDb({ dataDir }, snapshot);

      // Refused while serve runs (the embedded database's lock), and nothing changes.
      const running = await serveForTest(context, { dataDir });
      expect(await ping(running, seeded, seeded.hook.secret)).toBe(200);
      const refused = await runCli(['rotate-key'], { DATA_DIR: dataDir });
      expect(expectOneLineFailure(refused)).toMatch(new RegExp(`in use by another repolens process \\(pid ${running.pid}\\)`));
      expect(await keyFileKey(keyFile)).toEqual(oldKey);
      expect(await exists(`${keyFile}.new`)).toBe(false);
      running.kill('SIGTERM');
      expect(await running.waitForExit(30_000)).toEqual({ code: 0, signal: null });
      expect(await withDb({ dataDir }, snapshot)).toEqual(before);

      const result = await runCli(['rotate-key'], { DATA_DIR: dataDir });
      const output = expectSuccess(result);
      expect(output[0]).toBe(`${expectedCounts}, in one transaction`);
      expect(output[1]).toBe(`${keyFile} now holds the new key; the old key is gone. Start repolens serve again.`);
      const rotatedKey = await keyFileKey(keyFile);
      expect(rotatedKey).toHaveLength(32);
      expect(rotatedKey.equals(oldKey)).toBe(false);
      expect(await fileMode(keyFile)).toBe(0o600);
      expect(await exists(`${keyFile}.new`)).toBe(false);
      expectNoLeak(result, [oldKey, rotatedKey], seeded);
      expectSealedWith((await withDb({ dataDir }, snapshot)).sealed, seeded, rotatedKey, [oldKey]);

      const restarted = await serveForTest(context, { dataDir });
      expect(await ping(restarted, seeded, seeded.hook.secret)).toBe(200);
      expect(await ping(restarted, seeded, 'not-the-secret')).toBe(401);
      expect(restarted.stderr().join('\n')).not.toMatch(/cannot be decrypted/);
    });

    it('takes NEW_ENCRYPTION_KEY when given; a foreign value, or NEW_ENCRYPTION_KEY equal to the current key, changes nothing and leaves no secret.key.new', async () => {
      const { dataDir, keyFile, oldKey, seeded } = await embedded();
      const foreignId = await withDb({ dataDir }, async (db) => {
        const repository = await db.prisma.repository.findFirstOrThrow({ where: { webhookSecret: { not: null } }, orderBy: { id: 'asc' } });
        await db.prisma.repository.update({ where: { id: repository.id }, data: { webhookSecret: createSecretBox(newKey()).encrypt('foreign') } });
        return repository.id;
      });
      const before = await withDb({ dataDir }, snapshot);
      const given = newKey();

      const foreign = await runCli(['rotate-key'], { DATA_DIR: dataDir, NEW_ENCRYPTION_KEY: b64(given) });
      expect(expectOneLineFailure(foreign)).toMatch(new RegExp(`^repolens: Repository ${foreignId}: webhookSecret opens with neither the current key nor the new key`));
      const same = await runCli(['rotate-key'], { DATA_DIR: dataDir, NEW_ENCRYPTION_KEY: b64(oldKey) });
      expect(expectOneLineFailure(same)).toMatch(/NEW_ENCRYPTION_KEY is the key .*secret\.key holds now/);
      for (const result of [foreign, same]) expectNoLeak(result, [oldKey, given], seeded);
      expect(await keyFileKey(keyFile)).toEqual(oldKey);
      expect(await exists(`${keyFile}.new`)).toBe(false);
      expect(await withDb({ dataDir }, snapshot)).toEqual(before);

      // The foreign value put right (sealed with the current key again): NEW_ENCRYPTION_KEY becomes the key.
      await withDb({ dataDir }, (db) =>
        db.prisma.repository.update({ where: { id: foreignId }, data: { webhookSecret: createSecretBox(oldKey).encrypt(seeded.plaintexts.get(slot({ table: 'Repository', column: 'webhookSecret', id: foreignId }))!) } }),
      );
      const rotated = await runCli(['rotate-key'], { DATA_DIR: dataDir, NEW_ENCRYPTION_KEY: b64(given) });
      expect(expectSuccess(rotated)[0]).toBe(`${expectedCounts}, in one transaction`);
      expectNoLeak(rotated, [oldKey, given], seeded);
      expect(await keyFileKey(keyFile)).toEqual(given);
      expect(await fileMode(keyFile)).toBe(0o600);
      expectSealedWith((await withDb({ dataDir }, snapshot)).sealed, seeded, given, [oldKey]);
    });

    it('a rotation interrupted after its commit (secret.key.new left, secrets already under it) is finished by running the command again', async () => {
      const { dataDir, keyFile, oldKey, seeded } = await embedded();
      // What a crash between the commit and the rename leaves: the new key file, and every value sealed with it.
      const pendingKey = newKey();
      await writeFile(`${keyFile}.new`, `${b64(pendingKey)}\n`, { mode: 0o600 });
      await withDb({ dataDir }, async (db) => {
        const [current, next] = [createSecretBox(oldKey), createSecretBox(pendingKey)];
        const reseal = (value: string) => next.encrypt(current.decrypt(value));
        for (const row of await db.prisma.credential.findMany()) {
          await db.prisma.credential.update({
            where: { id: row.id },
            data: { encryptedSecret: reseal(row.encryptedSecret), encryptedRefreshToken: row.encryptedRefreshToken && reseal(row.encryptedRefreshToken) },
          });
        }
        for (const row of await db.prisma.repository.findMany({ where: { webhookSecret: { not: null } } })) {
          await db.prisma.repository.update({ where: { id: row.id }, data: { webhookSecret: reseal(row.webhookSecret!) } });
        }
        for (const row of await db.prisma.oAuthState.findMany({ where: { codeVerifier: { not: null } } })) {
          await db.prisma.oAuthState.update({ where: { id: row.id }, data: { codeVerifier: reseal(row.codeVerifier!) } });
        }
      });
      const before = await withDb({ dataDir }, snapshot);
      // Serve on this state could open nothing: the key file still holds the old key.
      expectSealedWith(before.sealed, seeded, pendingKey, [oldKey]);

      // A different NEW_ENCRYPTION_KEY would strand the secrets: refused.
      const conflicting = await runCli(['rotate-key'], { DATA_DIR: dataDir, NEW_ENCRYPTION_KEY: b64(newKey()) });
      expect(expectOneLineFailure(conflicting)).toMatch(/an unfinished rotation left .*secret\.key\.new: run rotate-key again without NEW_ENCRYPTION_KEY/);
      expect(await keyFileKey(keyFile)).toEqual(oldKey);
      expect(await keyFileKey(`${keyFile}.new`)).toEqual(pendingKey);

      const result = await runCli(['rotate-key'], { DATA_DIR: dataDir });
      const output = expectSuccess(result);
      expect(output[0]).toBe(`finishing the rotation that ${keyFile}.new was left from`);
      expect(output[1]).toBe('re-encrypted 0 credentials, 0 refresh tokens, 0 webhook secrets, 0 OAuth states (8 sealed value(s) already had the new key), in one transaction');
      expectNoLeak(result, [oldKey, pendingKey], seeded);
      expect(await keyFileKey(keyFile)).toEqual(pendingKey);
      expect(await fileMode(keyFile)).toBe(0o600);
      expect(await exists(`${keyFile}.new`)).toBe(false);
      expect(await withDb({ dataDir }, snapshot)).toEqual(before);
    });

    it('a rotation interrupted before its commit (secret.key.new left, secrets still under the old key) is finished with that key', async () => {
      const { dataDir, keyFile, oldKey, seeded } = await embedded();
      const pendingKey = newKey();
      await writeFile(`${keyFile}.new`, `${b64(pendingKey)}\n`, { mode: 0o600 });

      const result = await runCli(['rotate-key'], { DATA_DIR: dataDir });
      const output = expectSuccess(result);
      expect(output[0]).toBe(`finishing the rotation that ${keyFile}.new was left from`);
      expect(output[1]).toBe(`${expectedCounts}, in one transaction`);
      expectNoLeak(result, [oldKey, pendingKey], seeded);
      expect(await keyFileKey(keyFile)).toEqual(pendingKey);
      expect(await exists(`${keyFile}.new`)).toBe(false);
      expectSealedWith((await withDb({ dataDir }, snapshot)).sealed, seeded, pendingKey, [oldKey]);
    });
  });
});
