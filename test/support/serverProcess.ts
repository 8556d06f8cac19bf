import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root: where `bin/repolens.js` lives. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const repolensBin = path.join(projectRoot, 'bin/repolens.js');

/** Environment variables a child gets from the test process: only what node and git need to run. */
const inherited = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ'];

export type Env = Record<string, string | undefined>;

/**
 * A minimal environment (PATH, HOME…) plus `env`: nothing else leaks from the
 * test process (no DATABASE_URL, NODE_ENV, …). A key set to undefined is left out.
 */
export function childEnv(env: Env = {}): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = {};
  for (const key of inherited) if (process.env[key] !== undefined) result[key] = process.env[key];
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete result[key];
    else result[key] = value;
  }
  return result;
}

/** A port that was free a moment ago (the server is started on it right after). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CliResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/** Lines of a captured stream, without the empty ones. */
export function lines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line.length > 0);
}

/** Runs `repolens <args>` once to completion. */
export function runCli(args: string[], env: Env = {}, options: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? 90_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [repolensBin, ...args], {
      cwd: options.cwd ?? projectRoot,
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`repolens ${args.join(' ')} did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface ServerOptions {
  /** DATA_DIR; left unset when omitted (the server then uses ./data under cwd). */
  dataDir?: string;
  /** DATABASE_URL; unset ⇒ embedded database. */
  databaseUrl?: string;
  /** LOG_LEVEL; default 'info'; null leaves it unset. */
  logLevel?: string | null;
  /** REPOLENS_ALLOW_PRIVATE_HOSTS=1; default true. */
  allowPrivateHosts?: boolean;
  /** More variables, applied last (undefined removes one). */
  env?: Env;
  /** Working directory; default the project root. */
  cwd?: string;
  /** PORT; default a free port picked here. */
  port?: number;
  /** How long to wait for /healthz; default 90 s (a loaded machine starts slowly). */
  readyTimeoutMs?: number;
}

export interface ServerProcess {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Captured lines so far. */
  stdout(): string[];
  stderr(): string[];
  /** stderr lines that are pino JSON log records. */
  logs(): Record<string, unknown>[];
  /** Signals the server process only (not the git processes it started). */
  kill(signal?: NodeJS.Signals): void;
  /** Signals the server's whole process group: the server and every git it started (a machine crash). */
  killGroup(signal?: NodeJS.Signals): void;
  /** Resolves when the process has exited; rejects past the timeout. */
  waitForExit(timeoutMs?: number): Promise<ExitStatus>;
  /** The exit status, or null while it runs. */
  exitStatus(): ExitStatus | null;
  /** Whether any process of its group (the server or a git child) is still alive (zombies do not count). */
  groupAlive(): boolean;
  /** Waits until a captured line matches. */
  waitForLine(stream: 'stdout' | 'stderr', predicate: (line: string) => boolean, timeoutMs?: number): Promise<string>;
}

const live = new Set<ServerProcess>();

/** SIGKILLs every server (and its git children) still running: for afterEach/afterAll. */
export async function killAllServers(): Promise<void> {
  const running = [...live];
  live.clear();
  await Promise.all(
    running.map(async (server) => {
      server.killGroup('SIGKILL');
      await server.waitForExit(10_000).catch(() => undefined);
    }),
  );
}

process.once('exit', () => {
  for (const server of live) server.killGroup('SIGKILL');
});

/**
 * Live (not zombie) processes of a process group, from /proc: a killed git
 * child stays a zombie until init reaps it, and kill(-pgid, 0) counts zombies.
 */
export function livingGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') members.push(Number(entry));
  }
  return members;
}

function signalGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

class StartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

/** Starts `node bin/repolens.js serve` and waits until /healthz answers. */
export async function startServer(options: ServerOptions = {}): Promise<ServerProcess> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOnce(options, options.port ?? (await freePort()));
    } catch (error) {
      // Another process took the port between freePort() and listen: pick another.
      if (error instanceof StartError && error.addressInUse && options.port === undefined && attempt < 3) continue;
      throw error;
    }
  }
}

async function startOnce(options: ServerOptions, port: number): Promise<ServerProcess> {
  const env: Env = { PORT: String(port) };
  if (options.dataDir !== undefined) env.DATA_DIR = options.dataDir;
  if (options.databaseUrl !== undefined) env.DATABASE_URL = options.databaseUrl;
  if (options.allowPrivateHosts ?? true) env.REPOLENS_ALLOW_PRIVATE_HOSTS = '1';
  const logLevel = options.logLevel === undefined ? 'info' : options.logLevel;
  if (logLevel !== null) env.LOG_LEVEL = logLevel;
  Object.assign(env, options.env);

  const child: ChildProcess = spawn(process.execPath, [repolensBin, 'serve'], {
    cwd: options.cwd ?? projectRoot,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a "crash" can take its git children down too.
    detached: true,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn the server');

  const captured = { stdout: [] as string[], stderr: [] as string[] };
  const partial = { stdout: '', stderr: '' };
  const lineWaiters = new Set<() => void>();
  const capture = (stream: 'stdout' | 'stderr') => (chunk: string) => {
    const text = partial[stream] + chunk;
    const parts = text.split(/\r?\n/);
    partial[stream] = parts.pop() ?? '';
    captured[stream].push(...parts);
    if (process.env.TEST_LOGS) process.stderr.write(`[server ${pid} ${stream}] ${parts.join(`\n[server ${pid} ${stream}] `)}\n`);
    for (const waiter of lineWaiters) waiter();
  };
  child.stdout!.setEncoding('utf8').on('data', capture('stdout'));
  child.stderr!.setEncoding('utf8').on('data', capture('stderr'));

  let status: ExitStatus | null = null;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('close', (code, signal) => {
      for (const stream of ['stdout', 'stderr'] as const) {
        if (partial[stream]) captured[stream].push(partial[stream]);
        partial[stream] = '';
      }
      status = { code, signal };
      resolve(status);
      for (const waiter of lineWaiters) waiter();
    });
  });

  const url = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    url,
    port,
    pid,
    stdout: () => [...captured.stdout],
    stderr: () => [...captured.stderr],
    logs: () =>
      captured.stderr.flatMap((line) => {
        if (!line.startsWith('{')) return [];
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    kill(signal = 'SIGTERM') {
      if (status === null) child.kill(signal);
    },
    killGroup(signal = 'SIGTERM') {
      signalGroup(pid, signal);
    },
    async waitForExit(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          exited,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`server ${pid} did not exit in ${timeoutMs} ms\nstderr:\n${captured.stderr.slice(-20).join('\n')}`)),
              timeoutMs,
            );
          }),
        ]);
      } finally {
        clearTimeout(timer);
        if (status) live.delete(server);
      }
    },
    exitStatus: () => status,
    groupAlive: () => livingGroupMembers(pid).length > 0,
    waitForLine(stream, predicate, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = captured[stream].find(predicate);
          if (line !== undefined || status !== null) {
            lineWaiters.delete(check);
            clearTimeout(timer);
            if (line !== undefined) resolve(line);
            else reject(new Error(`server exited (${JSON.stringify(status)}) before the expected ${stream} line`));
          }
        };
        const timer = setTimeout(() => {
          lineWaiters.delete(check);
          reject(new Error(`no matching ${stream} line in ${timeoutMs} ms; last lines:\n${captured[stream].slice(-20).join('\n')}`));
        }, timeoutMs);
        lineWaiters.add(check);
        check();
      });
    },
  };
  live.add(server);

  const deadline = Date.now() + (options.readyTimeoutMs ?? 90_000);
  while (true) {
    if (status !== null) {
      live.delete(server);
      const stderr = captured.stderr.join('\n');
      throw new StartError(
        `the server exited before it was ready (${JSON.stringify(status)})\nstdout:\n${captured.stdout.join('\n')}\nstderr:\n${stderr}`,
        /address is in use|EADDRINUSE/.test(stderr),
      );
    }
    const healthy = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) }).then(
      (response) => response.ok,
      () => false,
    );
    if (healthy) return server;
    if (Date.now() > deadline) {
      server.killGroup('SIGKILL');
      await server.waitForExit(10_000).catch(() => undefined);
      throw new Error(`the server did not answer /healthz in time\nstderr:\n${captured.stderr.slice(-30).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
