import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { CreateProjectDocument, ProjectsDocument } from './generated/graphql.js';
import { TestClient } from './support/client.js';
import { createTestDatabase, databaseUrl, dropDatabase, serverUrl } from './support/database.js';
import { freePort, killAllServers, lines, runCli, type CliResult } from './support/serverProcess.js';
import { expectOneLineFailure, serveForTest, stackLine } from './support/cli.js';
import { exists } from './support/wait.js';

const tokenFormat = /^rls_[A-Za-z0-9_-]{43}$/;
/** A token anywhere in a line (serve prints it indented inside a sentence block). */
const tokenInText = /rls_[A-Za-z0-9_-]{43}/g;

const temporary: string[] = [];
const databases: string[] = [];

async function tempDir(prefix = 'repolens-cli-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** A truly empty PostgreSQL database (no migrations), so the migrate-first path runs. */
async function emptyDatabase(): Promise<string> {
  const name = `repolens_test_${Date.now()}_${randomUUID().replace(/-/g, '').slice(0, 8)}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  databases.push(name);
  return databaseUrl(name);
}

async function migrationCount(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      'SELECT count(*) AS n FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

/** `token create` output: one line, exactly a token. */
function expectTokenOutput(result: CliResult): string {
  expect(result.code, `stderr: ${result.stderr}`).toBe(0);
  expect(result.stdout).toMatch(/^[^\n]*\n$/);
  const token = result.stdout.trimEnd();
  expect(token).toMatch(tokenFormat);
  return token;
}

afterAll(async () => {
  await killAllServers();
  await Promise.all(temporary.map((dir) => rm(dir, { recursive: true, force: true })));
  await Promise.all(databases.map((name) => dropDatabase(name).catch(() => undefined)));
});

// Every step starts a node process (Prisma, maybe PGlite): slow on a loaded machine. The tests use
// separate folders, databases and ports, but run one after the other: on two cores, running them
// concurrently only makes every process slower.
describe('repolens CLI', { timeout: 300_000 }, () => {
  describe('token create', () => {
    it('on a fresh PostgreSQL database: migrates it, prints only the token, and the token works against a server started afterwards', async (context) => {
      const url = await emptyDatabase();
      const dataDir = await tempDir();
      const result = await runCli(['token', 'create', '--tenant', 'acme'], { DATABASE_URL: url, DATA_DIR: dataDir });
      const token = expectTokenOutput(result);
      expect(await migrationCount(url)).toBeGreaterThan(0);

      const server = await serveForTest(context, { databaseUrl: url, dataDir });
      // Not embedded: serve never prints a token of its own.
      expect(server.stdout().join('\n')).not.toMatch(tokenInText);
      const client = new TestClient(server.url, token);
      const { createProject } = await client.request(CreateProjectDocument, { name: 'from-cli-token' });
      expect(createProject.project.name).toBe('from-cli-token');
      expect(await new TestClient(server.url, `${token}x`).errorCode(ProjectsDocument, {})).toBe('UNAUTHENTICATED');
    });

    it('on a fresh embedded DATA_DIR (no serve ever ran): prints only the token, which works once serve starts', async (context) => {
      const dataDir = await tempDir();
      const result = await runCli(['token', 'create', '--tenant', 'acme'], { DATA_DIR: dataDir });
      const token = expectTokenOutput(result);
      expect(await exists(path.join(dataDir, 'db'))).toBe(true);
      // The lock is released when the command ends.
      expect(await exists(path.join(dataDir, 'db', 'repolens.lock'))).toBe(false);

      const server = await serveForTest(context, { dataDir });
      // A tenant exists already: no "default" tenant token is printed.
      expect(server.stdout().join('\n')).not.toMatch(tokenInText);
      const client = new TestClient(server.url, token);
      const { createProject } = await client.request(CreateProjectDocument, { name: 'embedded' });
      expect(createProject.project.name).toBe('embedded');
    });

    it('refuses an invalid tenant name with a non-zero exit and one clear line on stderr', async (context) => {
      const database = await createTestDatabase();
      context.onTestFinished(() => database.drop());
      const url = database.url;
      const [invalid, missing] = await Promise.all([
        runCli(['token', 'create', '--tenant', 'not a valid/name!'], { DATABASE_URL: url }),
        runCli(['token', 'create'], { DATABASE_URL: url }),
      ]);
      expect(expectOneLineFailure(invalid)).toMatch(/tenant name/i);
      expect(expectOneLineFailure(missing)).toMatch(/--tenant/);
      // Nothing was created for the refused name.
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM "Tenant"');
        expect(Number(rows[0]!.n)).toBe(0);
      } finally {
        await client.end();
      }
    });

    it('checks the tenant name before touching the database: a refused name creates nothing in a fresh DATA_DIR', async () => {
      const dataDir = await tempDir();
      const result = await runCli(['token', 'create', '--tenant', 'bad name!'], { DATA_DIR: dataDir });
      expect(expectOneLineFailure(result)).toMatch(/tenant name/i);
      // "Bad input gets a clear error and changes nothing" (SPEC §6): no embedded database was initialised.
      expect(await exists(path.join(dataDir, 'db'))).toBe(false);
    });
  });

  describe('migrate', () => {
    it('applies the migrations to an empty database, and a second run says it is up to date', async () => {
      const url = await emptyDatabase();
      const first = await runCli(['migrate'], { DATABASE_URL: url });
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toMatch(/^applied \d+ migration\(s\): \S+/);
      const applied = await migrationCount(url);
      expect(applied).toBeGreaterThan(0);

      const second = await runCli(['migrate'], { DATABASE_URL: url });
      expect(second.code, second.stderr).toBe(0);
      expect(lines(second.stdout)).toEqual(['database is up to date']);
      expect(await migrationCount(url)).toBe(applied);
    });
  });

  describe('bad configuration', () => {
    const bad = { PORT: 'abc', SYNC_CONCURRENCY: '0', DATABASE_URL: 'mysql://x', ENCRYPTION_KEY: 'short' };

    function expectConfigErrors(result: CliResult, variables: string[]): void {
      expect(result.code, result.stderr).not.toBe(0);
      expect(result.code).not.toBeNull();
      const errorLines = lines(result.stderr);
      expect(errorLines.some((line) => stackLine.test(line)), result.stderr).toBe(false);
      expect(errorLines, result.stderr).toHaveLength(variables.length);
      for (const variable of variables) {
        expect(errorLines.filter((line) => new RegExp(`\\b${variable}\\b`).test(line)), `${variable} in:\n${result.stderr}`).toHaveLength(1);
      }
      // Each line names the variable it is about, and only one.
      for (const line of errorLines) {
        expect(variables.filter((variable) => new RegExp(`\\b${variable}\\b`).test(line)), line).toHaveLength(1);
      }
    }

    it('stops serve, migrate and token create with one line per bad variable and no stack trace', async () => {
      const dataDir = await tempDir();
      const env = { DATA_DIR: dataDir, ...bad };
      const [serve, migrate, token, portOnly] = await Promise.all([
        runCli(['serve'], env),
        runCli(['migrate'], env),
        runCli(['token', 'create', '--tenant', 'acme'], env),
        runCli(['serve'], { DATA_DIR: dataDir, PORT: bad.PORT }),
      ]);
      for (const result of [serve, migrate, token]) expectConfigErrors(result, Object.keys(bad));
      expectConfigErrors(portOnly!, ['PORT']);
      for (const result of [serve, migrate, token, portOnly!]) expect(result.stdout).toBe('');
      // Nothing was started or created.
      expect(await exists(path.join(dataDir, 'db'))).toBe(false);
    });
  });

  describe('start-up failures outside the configuration schema', () => {
    it('an unreachable or missing PostgreSQL database stops every command with one clear line, never a stack trace', async () => {
      const closedPort = await freePort();
      const urls = {
        unreachable: `postgresql://postgres@127.0.0.1:${closedPort}/repolens`,
        missing: databaseUrl(`repolens_test_${Date.now()}_missing`),
      };
      const commands = [['migrate'], ['token', 'create', '--tenant', 'acme'], ['serve']];
      const dataDir = await tempDir();
      const cases = [
        ...commands.map((args) => ({ kind: 'unreachable', args, url: urls.unreachable })),
        { kind: 'missing', args: ['migrate'], url: urls.missing },
      ];
      const results = await Promise.all(cases.map((entry) => runCli(entry.args, { DATABASE_URL: entry.url, DATA_DIR: dataDir, PORT: '0' })));
      results.forEach((result, index) => {
        const label = `${cases[index]!.kind} database, repolens ${cases[index]!.args.join(' ')}:\n${result.stderr}`;
        expect.soft(result.code, label).not.toBe(0);
        expect.soft(result.code, label).not.toBeNull();
        expect.soft(lines(result.stderr).some((line) => stackLine.test(line)), label).toBe(false);
        expect.soft(lines(result.stderr), label).toHaveLength(1);
        expect.soft(result.stderr, label).toMatch(/database/i);
      });
    });

    it('serve that cannot listen (port taken, address not local) says so in one line naming PORT / HOST, never a stack trace', async (context) => {
      const database = await createTestDatabase();
      context.onTestFinished(() => database.drop());
      const blocker: Server = createServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      context.onTestFinished(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
      const takenPort = String((blocker.address() as { port: number }).port);
      const dataDir = await tempDir();
      const [taken, foreign] = await Promise.all([
        runCli(['serve'], { DATABASE_URL: database.url, DATA_DIR: dataDir, PORT: takenPort }),
        // TEST-NET-3: never an address of this machine.
        runCli(['serve'], { DATABASE_URL: database.url, DATA_DIR: dataDir, PORT: '0', HOST: '203.0.113.7' }),
      ]);
      for (const [result, variable] of [
        [taken, /PORT/],
        [foreign, /HOST/],
      ] as const) {
        expect.soft(result.code, result.stderr).toBe(1);
        expect.soft(lines(result.stderr).some((line) => stackLine.test(line)), result.stderr).toBe(false);
        expect.soft(lines(result.stderr), result.stderr).toHaveLength(1);
        expect.soft(result.stderr, result.stderr).toMatch(variable);
      }
    });
  });

  describe('zero-configuration first start', () => {
    it('serve with only PORT and DATA_DIR prints one token for tenant "default", once; the token works; SIGTERM when idle exits 0 at once', async (context) => {
      const dataDir = path.join(await tempDir(), 'fresh');
      const first = await serveForTest(context, { dataDir, logLevel: null, allowPrivateHosts: false });
      const printed = first.stdout().join('\n').match(tokenInText) ?? [];
      expect(printed).toHaveLength(1);
      expect(first.stdout().join('\n')).toMatch(/default/);
      const token = printed[0]!;
      const client = new TestClient(first.url, token);
      const { createProject } = await client.request(CreateProjectDocument, { name: 'laptop' });
      expect(createProject.project.name).toBe('laptop');
      expect(await exists(path.join(dataDir, 'db'))).toBe(true);
      expect(await exists(path.join(dataDir, 'secret.key'))).toBe(true);

      // An idle server, with the client's keep-alive connection still open, stops cleanly and at once.
      const stopping = Date.now();
      first.kill('SIGTERM');
      expect(await first.waitForExit(30_000)).toEqual({ code: 0, signal: null });
      expect(Date.now() - stopping).toBeLessThan(5_000);
      expect(first.stderr().some((line) => stackLine.test(line))).toBe(false);
      expect(await exists(path.join(dataDir, 'db', 'repolens.lock'))).toBe(false);

      const second = await serveForTest(context, { dataDir, logLevel: null, allowPrivateHosts: false });
      expect(second.stdout().join('\n')).not.toMatch(tokenInText);
      // Same database: the first token still works and sees the project.
      const projects = await new TestClient(second.url, token).request(ProjectsDocument, { first: 10 });
      expect(projects.projects.edges.map((edge) => edge.node.name)).toEqual(['laptop']);
    });

    it('without DATA_DIR, the data lands in ./data under the working directory', async (context) => {
      const cwd = await tempDir('repolens-cwd-');
      const server = await serveForTest(context, { cwd, logLevel: null, allowPrivateHosts: false });
      const printed = server.stdout().join('\n').match(tokenInText) ?? [];
      expect(printed).toHaveLength(1);
      const { createProject } = await new TestClient(server.url, printed[0]!).request(CreateProjectDocument, { name: 'cwd' });
      expect(createProject.project.name).toBe('cwd');
      expect(await exists(path.join(cwd, 'data', 'db'))).toBe(true);
      expect(await exists(path.join(cwd, 'data', 'secret.key'))).toBe(true);
      expect(await exists(path.join(cwd, 'data', 'repos'))).toBe(true);
      const serving = server.logs().find((record) => record.msg === 'RepoLens Sync is serving');
      expect(serving?.dataDir).toBe(path.join(cwd, 'data'));
    });
  });

  describe('the embedded database lock', () => {
    it('while serve holds it, token create and migrate fail in one clear line; after serve stops (SIGTERM) they work', async (context) => {
      const dataDir = await tempDir();
      const server = await serveForTest(context, { dataDir });
      const printed = server.stdout().join('\n').match(tokenInText) ?? [];
      expect(printed).toHaveLength(1);
      const lockFile = path.join(dataDir, 'db', 'repolens.lock');
      expect((await readFile(lockFile, 'utf8')).trim()).toBe(String(server.pid));

      const [token, migrate] = await Promise.all([
        runCli(['token', 'create', '--tenant', 'acme'], { DATA_DIR: dataDir }),
        runCli(['migrate'], { DATA_DIR: dataDir }),
      ]);
      for (const result of [token, migrate]) {
        const line = expectOneLineFailure(result);
        expect(line).toMatch(/in use/);
        expect(line).toContain(String(server.pid));
      }
      // The refused commands did not disturb the server or take its lock.
      expect((await readFile(lockFile, 'utf8')).trim()).toBe(String(server.pid));
      await new TestClient(server.url, printed[0]!).request(CreateProjectDocument, { name: 'still-serving' });

      server.kill('SIGTERM');
      expect(await server.waitForExit(30_000)).toEqual({ code: 0, signal: null });
      expect(await exists(lockFile)).toBe(false);

      // One after the other: each of them holds the embedded database while it runs.
      const tokenAfter = await runCli(['token', 'create', '--tenant', 'acme'], { DATA_DIR: dataDir });
      expectTokenOutput(tokenAfter);
      const migrateAfter = await runCli(['migrate'], { DATA_DIR: dataDir });
      expect(migrateAfter.code, migrateAfter.stderr).toBe(0);
      expect(lines(migrateAfter.stdout)).toEqual(['database is up to date']);
      expect(await exists(lockFile)).toBe(false);
    });

    it('the stale lock of a SIGKILLed serve does not block the next start, and the data survives', async (context) => {
      const dataDir = await tempDir();
      const crashed = await serveForTest(context, { dataDir });
      const token = (crashed.stdout().join('\n').match(tokenInText) ?? [])[0];
      expect(token).toBeDefined();
      await new TestClient(crashed.url, token!).request(CreateProjectDocument, { name: 'before-the-crash' });
      const lockFile = path.join(dataDir, 'db', 'repolens.lock');

      crashed.killGroup('SIGKILL');
      expect((await crashed.waitForExit(10_000)).signal).toBe('SIGKILL');
      // A crashed serve leaves its lock file behind, naming a dead pid.
      expect((await readFile(lockFile, 'utf8')).trim()).toBe(String(crashed.pid));

      const next = await serveForTest(context, { dataDir });
      expect((await readFile(lockFile, 'utf8')).trim()).toBe(String(next.pid));
      expect(next.stdout().join('\n')).not.toMatch(tokenInText);
      const projects = await new TestClient(next.url, token!).request(ProjectsDocument, { first: 10 });
      expect(projects.projects.edges.map((edge) => edge.node.name)).toEqual(['before-the-crash']);
    });
  });
});
