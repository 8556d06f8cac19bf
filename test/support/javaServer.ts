import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { access, constants, mkdir, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { freePort, projectRoot } from './serverProcess.js';

/**
 * What the Java servers the tests start (S3Proxy: s3proxy.ts; Neo4j: neo4j.ts) have in common.
 * - Their jars come from Maven: a pom names them, `mvn dependency:build-classpath` resolves them
 *   (into ~/.m2), and the classpath it writes is cached under node_modules/.cache/<server>, in
 *   `classpath-<the first 16 hex digits of the pom's sha256>.txt` (.ci/run writes it beforehand).
 * - The JVM is $JAVA_HOME's `java`, else the first on PATH.
 * - A class data sharing archive of the server's classes (AppCDS) is written there as the first
 *   run's server exits, and mapped by later ones: a shorter start. <SERVER>_CDS=0: none.
 * - Each runs in a temporary folder, with the classpath in its environment; a server still running
 *   when this process exits (as vitest does when interrupted) is killed then.
 * - A start that loses its port to another process (between freePort() and the JVM's bind), or
 *   chokes on an archive, is tried again.
 */

/** A Java server: where its jars and caches are, how it is named. */
export interface JavaServer {
  /** Its name in messages: `Neo4j`, `S3Proxy`. */
  name: string;
  /** Its name in files and logs: `neo4j`, `s3proxy`. */
  id: string;
  /** The Maven pom whose dependencies are its jars. */
  pom: string;
  /** Where its classpath and class data sharing archive are cached: node_modules/.cache/<id>. */
  cacheDir: string;
  /** The environment variable that, set to 0, turns class data sharing off. */
  cdsVariable: string;
  /** Whether a new archive deletes the others in cacheDir (those of an earlier classpath or JVM). */
  removeStaleArchives: boolean;
}

const execFileAsync = promisify(execFile);

/** The first 16 hex digits of a sha256: the key of a cached file. */
export const hash = (text: string | Buffer) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/** `mvn` resolving the pom's dependencies and writing their classpath to a file. */
async function buildClasspath(pom: string, outputFile: string, offline: boolean): Promise<void> {
  const args = ['-B', '-q', '-Dstyle.color=never', ...(offline ? ['-o'] : []), '-f', pom, 'dependency:build-classpath', `-Dmdep.outputFile=${outputFile}`];
  await execFileAsync(process.env.MVN ?? 'mvn', args, { cwd: projectRoot, maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 });
}

/**
 * The server's classpath (jars in ~/.m2), cached under its cacheDir by the pom's content;
 * recomputed when a jar it names is gone. Maven runs offline first (everything is usually in
 * ~/.m2 already), online if that fails.
 */
export async function mavenClasspath(server: JavaServer): Promise<string> {
  const cacheFile = path.join(server.cacheDir, `classpath-${hash(await readFile(server.pom))}.txt`);
  const cached = await readFile(cacheFile, 'utf8').catch(() => null);
  if (cached) {
    const jars = cached.trim().split(path.delimiter);
    const present = await Promise.all(jars.map((jar) => stat(jar).then(() => true, () => false)));
    if (jars.length > 0 && present.every(Boolean)) return cached.trim();
  }
  await mkdir(server.cacheDir, { recursive: true });
  // Concurrent runs each write their own file and rename it into place: the cache is never half-written.
  const temporary = `${cacheFile}.${process.pid}.${randomUUID()}.tmp`;
  try {
    try {
      await buildClasspath(server.pom, temporary, true);
    } catch {
      try {
        await buildClasspath(server.pom, temporary, false);
      } catch (error) {
        const { stdout = '', stderr = '', message } = error as { stdout?: string; stderr?: string; message: string };
        throw new Error(`could not resolve ${server.name}'s classpath with Maven (mvn -f ${path.relative(projectRoot, server.pom)} dependency:build-classpath): ${message}\n${stdout}${stderr}`);
      }
    }
    const classpath = (await readFile(temporary, 'utf8')).trim();
    if (!classpath) throw new Error(`Maven wrote an empty classpath for ${server.name}`);
    await rename(temporary, cacheFile);
    return classpath;
  } finally {
    await rm(temporary, { force: true });
  }
}

/** The `java` that runs the servers: $JAVA_HOME's, else the first on PATH. */
export function javaCommand(): string {
  return process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** The real path of `java` (symbolic links resolved), or null when it is not found. */
export async function javaBinary(): Promise<string | null> {
  const command = javaCommand();
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return await realpath(candidate);
    } catch {
      // not this one
    }
  }
  return null;
}

export interface ClassDataSharing {
  /** For the JVM's command line. */
  args: string[];
  /** The archive it maps, if any (deleted should the JVM choke on it). */
  archive: string | null;
  /** Whether it writes one as it exits (which takes a while). */
  writing: boolean;
  /** As the JVM has exited: keeps the archive it wrote if `complete`, else deletes it. */
  keep(complete: boolean): Promise<void>;
}

/**
 * A class data sharing archive of the server's classes (AppCDS, JDK 13+): the first run writes one
 * as it exits (-XX:ArchiveClassesAtExit), later runs map it (-XX:SharedArchiveFile). Cached beside
 * the classpath, keyed by it, by the JVM and by `files` (each by its path and modification time);
 * the JVM checks them again (the jars' modification times too) and merely ignores an archive that
 * does not match. <cdsVariable>=0, or no `java` found: none.
 */
async function classDataSharing(server: JavaServer, classpath: string, java: string | null, files: string[]): Promise<ClassDataSharing> {
  const none: ClassDataSharing = { args: [], archive: null, writing: false, keep: async () => {} };
  if (process.env[server.cdsVariable] === '0' || !java) return none;
  const identities = [];
  for (const file of [java, ...files]) identities.push(`${file}@${(await stat(file)).mtimeMs}`);
  const archive = path.join(server.cacheDir, `classes-${hash([...identities, classpath].join('\n'))}.jsa`);
  if (await stat(archive).then((info) => info.size > 0, () => false)) {
    return { args: [`-XX:SharedArchiveFile=${archive}`], archive, writing: false, keep: async () => {} };
  }
  await mkdir(server.cacheDir, { recursive: true });
  const temporary = `${archive}.${process.pid}.${randomUUID()}.tmp`;
  return {
    args: [`-XX:ArchiveClassesAtExit=${temporary}`],
    archive: null,
    writing: true,
    // Only from a server that started (it has loaded what it needs) and whose JVM exited of itself
    // (asked to stop, or at SIGTERM: it writes the archive then), not killed midway.
    async keep(complete) {
      const written = complete && (await stat(temporary).then((info) => info.size > 0, () => false));
      if (!written) {
        await rm(temporary, { force: true });
        return;
      }
      await rename(temporary, archive);
      if (!server.removeStaleArchives) return;
      // The archives of an earlier classpath or JVM (tens of MB each) will not be used again.
      const stale = (await readdir(server.cacheDir)).filter((name) => /^classes-[0-9a-f]{16}\.jsa$/.test(name) && name !== path.basename(archive));
      await Promise.all(stale.map((name) => rm(path.join(server.cacheDir, name), { force: true })));
    },
  };
}

/** A server's start failed as another process had taken its port: worth another one. */
export class AddressInUse extends Error {}

/**
 * Starts a server with `startOnce` on a free port of 127.0.0.1, with a class data sharing archive
 * (see classDataSharing; `files`: more files it is keyed by). Tried again (3 times at most) on
 * another port when `startOnce` throws AddressInUse, and without the archive when it fails with one.
 */
export async function startJavaServer<T>(
  server: JavaServer,
  setup: { classpath: string; java: string | null; files?: string[] },
  startOnce: (cds: ClassDataSharing, port: number) => Promise<T>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const cds = await classDataSharing(server, setup.classpath, setup.java, setup.files ?? []);
    try {
      return await startOnce(cds, await freePort());
    } catch (error) {
      // Another process took the port between freePort() and the JVM's bind: pick another.
      if (error instanceof AddressInUse && attempt < 3) continue;
      // A class data sharing archive the JVM choked on: without it.
      if (cds.archive && attempt < 3) {
        await rm(cds.archive, { force: true });
        continue;
      }
      throw error;
    }
  }
}

/** What ends the JVMs still running as this process exits. */
const running = new Set<() => void>();
process.once('exit', () => {
  for (const end of running) end();
});

export interface JavaProcessOptions {
  server: JavaServer;
  /** The JVM's arguments (its options, the main class and its arguments). */
  args: string[];
  classpath: string;
  /** Environment variables for it besides this process's and CLASSPATH. */
  env?: Record<string, string>;
  /** Its temporary folder (its working directory), removed as it stops. */
  dir: string;
  cds: ClassDataSharing;
  /**
   * How stop() ends it: `stdin`, the end of its stdin (open until then), SIGTERM after termAfterMs;
   * `SIGTERM` at once (stdin: none). SIGKILL after killAfterMs either way.
   */
  stop: { by: 'stdin'; termAfterMs: number; killAfterMs: number } | { by: 'SIGTERM'; killAfterMs: number };
  /** Whether its folder is removed too, at once, when this process exits with the JVM running. */
  removeDirAtExit: boolean;
  /** Each chunk of its stdout (once kept in `output`). */
  onStdout?: (chunk: string) => void;
}

export interface JavaProcess {
  /** The last 16,000 characters of its stdout and stderr (TEST_LOGS=1 shows them as they come). */
  readonly output: string;
  /** Settles when it has exited, or could not be spawned. */
  readonly closed: Promise<void>;
  /** Null while it runs; else how it ended (`exit {…}`, or the spawn error), for a message. */
  ended(): string | null;
  /** Set once the server is up: a class data sharing archive it writes as it exits is then kept. */
  ready: boolean;
  /** SIGKILL, if it still runs. */
  killNow(): void;
  /** Ends it (see JavaProcessOptions.stop), keeps or drops its archive, removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** Spawns `java` for a server, in its folder, with its classpath in the environment. */
export function spawnJava(options: JavaProcessOptions): JavaProcess {
  const { server, dir, cds } = options;
  // The classpath (hundreds of jars) in the environment rather than on a command line `ps` shows.
  const spawnOptions = { cwd: dir, env: { ...process.env, CLASSPATH: options.classpath, ...options.env } };
  const child: ChildProcessByStdio<Writable | null, Readable, Readable> =
    options.stop.by === 'stdin'
      ? spawn(javaCommand(), options.args, { ...spawnOptions, stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn(javaCommand(), options.args, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: string) => {
    output = (output + chunk).slice(-16_000);
    if (process.env.TEST_LOGS) process.stderr.write(`[${server.id}] ${chunk}`);
  };
  const onStdout = options.onStdout;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    keep(chunk);
    onStdout?.(chunk);
  });
  child.stderr.setEncoding('utf8').on('data', keep);
  // Writing to (or closing) the stdin of a JVM that has died: nothing to report.
  child.stdin?.on('error', () => undefined);
  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let spawnError: Error | null = null;
  const closed = new Promise<void>((resolve) => {
    child.once('error', (error) => {
      spawnError = error;
      resolve();
    });
    child.once('close', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  let killed = false;
  const killNow = () => {
    if (exited === null && spawnError === null) {
      killed = true;
      child.kill('SIGKILL');
    }
  };
  // This process ends: the JVM too, now (and its files, if so told).
  const onExit = options.removeDirAtExit
    ? () => {
        killNow();
        rmSync(dir, { recursive: true, force: true });
      }
    : killNow;
  running.add(onExit);

  let stopping: Promise<void> | undefined;
  const proc: JavaProcess = {
    get output() {
      return output;
    },
    closed,
    ended: () => (spawnError !== null ? String(spawnError) : exited !== null ? `exit ${JSON.stringify(exited)}` : null),
    ready: false,
    killNow,
    stop: () =>
      (stopping ??= (async () => {
        if (exited === null && spawnError === null) {
          const how = options.stop;
          let term: NodeJS.Timeout | undefined;
          if (how.by === 'stdin') {
            child.stdin?.end();
            term = setTimeout(() => child.kill('SIGTERM'), how.termAfterMs);
          } else {
            child.kill('SIGTERM');
          }
          const kill = setTimeout(killNow, how.killAfterMs);
          await closed;
          clearTimeout(term);
          clearTimeout(kill);
        }
        running.delete(onExit);
        await cds.keep(proc.ready && spawnError === null && !killed);
        await rm(dir, { recursive: true, force: true });
      })()),
  };
  return proc;
}
