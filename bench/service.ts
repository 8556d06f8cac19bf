import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { TestClient } from '../test/support/client.js';
import { databaseUrl, serverUrl } from '../test/support/database.js';
import { sleep } from './timing.js';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
const cli = path.join(projectRoot, 'bin/repolens.js');
const running = new Set<ChildProcess>();
/** USER_HZ, 100 on Linux (x86, arm64). */
const clockTicksPerSecond = 100;

// A crashed or interrupted bench must not leave servers behind.
const killAll = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.once('exit', killAll);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(code);
  });
}

/**
 * The service under test as a real child process (`repolens serve`) with its
 * own DATA_DIR and a fresh PostgreSQL database. The database is named
 * repolens_bench_* (created empty; the CLI migrates it) so that a concurrent
 * `vitest` globalSetup, which drops every repolens_test_* database, cannot
 * pull it away mid-run.
 */
export class Service {
  private child: ChildProcess | undefined;
  /** Other server processes on this database (startPeer), each with its own DATA_DIR. */
  private readonly peers: ChildProcess[] = [];
  private output: string[] = [];
  private ownQueries = 0;
  url = '';
  client: TestClient = new TestClient('', null);

  private constructor(
    private readonly database: string,
    /** Environment shared by every process of this service (database, data folder). */
    private readonly baseEnv: NodeJS.ProcessEnv,
    private readonly token: string,
    /** The service's database, for setup and completion checks (through `query`). */
    private readonly db: pg.Pool,
  ) {}

  static async start(dataDir: string, env: Record<string, string> = {}): Promise<Service> {
    const database = `repolens_bench_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    await admin(`CREATE DATABASE "${database}"`);
    const db = new pg.Pool({ connectionString: databaseUrl(database), max: 2 });
    let service: Service | undefined;
    try {
      await mkdir(dataDir, { recursive: true });
      const baseEnv = {
        ...process.env,
        DATABASE_URL: databaseUrl(database),
        DATA_DIR: dataDir,
        HOST: '127.0.0.1',
        REPOLENS_ALLOW_PRIVATE_HOSTS: '1',
        LOG_LEVEL: 'warn',
        // The benches add up to 1000 repositories with one token in seconds: the per-token mutation rate is off.
        REPOLENS_MUTATIONS_PER_MINUTE: '0',
      };
      const { stdout: token } = await promisify(execFile)(process.execPath, [cli, 'token', 'create', '--tenant', 'bench'], {
        env: baseEnv,
        cwd: projectRoot,
      });
      service = new Service(database, baseEnv, token.trim(), db);
      await service.launch(env);
      return service;
    } catch (error) {
      service?.child?.kill('SIGKILL');
      await db.end();
      await admin(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      throw error;
    }
  }

  /** Stops the server process and starts a new one on the same database and data folder, with `env`. */
  async restart(env: Record<string, string>): Promise<void> {
    await this.stopProcess();
    await this.launch(env);
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** How many warning and error lines the service logged (LOG_LEVEL=warn): non-zero makes a result suspect. */
  get warnings(): number {
    return this.output.length;
  }

  /** The last `lines` warning and error lines the service logged, to say what `warnings` counted. */
  lastOutput(lines = 20): string[] {
    return this.output.slice(-lines);
  }

  /** VmHWM of the server process: its peak resident set so far. */
  peakRssMb(): Promise<number> {
    return this.memoryMb('VmHWM');
  }

  /** VmRSS of the server process: its resident set now. */
  rssMb(): Promise<number> {
    return this.memoryMb('VmRSS');
  }

  private async memoryMb(field: 'VmHWM' | 'VmRSS'): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
    return Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? Number.NaN) / 1024;
  }

  /** CPU the server process has used so far: its own (node) and its reaped children's (git). */
  async cpuMs(): Promise<{ node: number; git: number }> {
    const stat = await readFile(`/proc/${this.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime is field 14 of stat(5).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    const ms = (ticks: number | undefined) => ((ticks ?? 0) * 1000) / clockTicksPerSecond;
    return { node: ms(fields[11]) + ms(fields[12]), git: ms(fields[13]) + ms(fields[14]) };
  }

  async query<Row extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<Row[]> {
    this.ownQueries++;
    return (await this.db.query<Row>(text, values)).rows;
  }

  /**
   * Transactions committed in the service's database, minus the bench's own
   * queries: a count of the server's database round trips (a Prisma
   * `$transaction` counts once). PostgreSQL publishes a backend's counters
   * within about a second of it going idle, hence the wait.
   */
  async serverTransactions(): Promise<number> {
    await sleep(1500);
    const [row] = await this.query<{ xacts: string }>(
      'SELECT xact_commit + xact_rollback AS xacts FROM pg_stat_database WHERE datname = current_database()',
    );
    return Number(row?.xacts) - this.ownQueries;
  }

  async stop(): Promise<void> {
    await this.stopProcess();
    await this.db.end();
    await admin(`DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
  }

  private async launch(env: Record<string, string>): Promise<void> {
    const { child, url } = await this.spawnServer(env);
    this.child = child;
    this.url = url;
    this.client = new TestClient(this.url, this.token);
  }

  /**
   * One more instance of the service (SPEC §1 "Several processes"): a server
   * process on the same database with its own DATA_DIR. Stopped with the service.
   */
  async startPeer(dataDir: string, env: Record<string, string> = {}): Promise<{ client: TestClient; pid: number }> {
    await mkdir(dataDir, { recursive: true });
    const { child, url } = await this.spawnServer({ ...env, DATA_DIR: dataDir });
    this.peers.push(child);
    return { client: new TestClient(url, this.token), pid: child.pid ?? 0 };
  }

  private async spawnServer(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
    const port = await freePort();
    // The V8 flag `npm start` and the bin script's shebang give the server.
    const child = spawn(process.execPath, ['--max-semi-space-size=4', ...profileFlags(), cli, 'serve'], {
      env: { ...this.baseEnv, PORT: String(port), ...env },
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    const keep = (chunk: Buffer) => this.output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const url = `http://127.0.0.1:${port}`;
    await this.waitReady(child, url);
    return { child, url };
  }

  private async stopProcess(): Promise<void> {
    const children = [...this.peers.splice(0), ...(this.child ? [this.child] : [])];
    this.child = undefined;
    await Promise.all(children.map((child) => stopChild(child)));
  }

  private async waitReady(child: ChildProcess, url: string): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}):\n${this.output.slice(-20).join('\n')}`);
      const ready = await fetch(`${url}/readyz`).then((response) => response.ok, () => false);
      if (ready) return;
      if (Date.now() > deadline) throw new Error(`the service did not become ready:\n${this.output.slice(-20).join('\n')}`);
      await sleep(200);
    }
  }
}

/** SIGTERM, then SIGKILL if it has not exited 20 s later. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }
  running.delete(child);
}

/** BENCH_CPU_PROFILE_DIR: each server writes a V8 CPU profile there when it stops (see bench/profile.ts). */
function profileFlags(): string[] {
  const dir = process.env.BENCH_CPU_PROFILE_DIR;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(dir)}`] : [];
}

async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
