import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { access, constants, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { freePort, projectRoot } from './serverProcess.js';

/**
 * Neo4j Community 5.26 (org.neo4j.test:neo4j-harness, test/support/neo4j/pom.xml), in process in a
 * JVM that test/support/neo4j/Launcher.java runs, over a temporary folder: Bolt on 127.0.0.1 without
 * TLS, no HTTP, native authentication as user `neo4j` with a random password. globalSetup starts one
 * per test run and provides its address as `neo4j`; all test files share it, each keeping to
 * repositories of its own; `neo4jTestEnv()` gives the variables that point the service at it.
 *
 * As in s3proxy.ts: the classpath comes from Maven, cached under node_modules/.cache/neo4j by the
 * pom's content (.ci/run resolves it beforehand), and a class data sharing archive of the JVM's
 * classes (some 110 MB) is written there as the first run's server exits, to be mapped by later ones
 * (a start some 3 s shorter; NEO4J_CDS=0: none). Launcher.java is compiled once into a jar there too
 * (run as a source file, it is compiled at every start: some 5 s more; and the archive wants jars).
 * A start takes 3.5-6 s with that archive, 7-8 s without, on two (busy) cores; 15-20 s the first time.
 * JVM: -Xmx1g, the C1 compiler only, serial GC; Neo4j's page cache: 96 MB, off heap.
 * TEST_LOGS=1 shows the JVM's output; Neo4j logs to files in its folder (deleted as it stops).
 */

/** What a test file gets through `inject('neo4j')`: a Bolt URL and credentials. */
export interface Neo4jAddress {
  url: string;
  user: string;
  password: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    neo4j: Neo4jAddress;
  }
}

export interface Neo4jServer extends Neo4jAddress {
  stop(): Promise<void>;
}

const launcherSource = path.join(projectRoot, 'test/support/neo4j/Launcher.java');
const pom = path.join(projectRoot, 'test/support/neo4j/pom.xml');
const cacheDir = path.join(projectRoot, 'node_modules/.cache/neo4j');
const execFileAsync = promisify(execFile);

const hash = (text: string | Buffer) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/** `mvn` resolving the pom's dependencies and writing their classpath to a file. */
async function buildClasspath(outputFile: string, offline: boolean): Promise<void> {
  const args = ['-B', '-q', '-Dstyle.color=never', ...(offline ? ['-o'] : []), '-f', pom, 'dependency:build-classpath', `-Dmdep.outputFile=${outputFile}`];
  await execFileAsync(process.env.MVN ?? 'mvn', args, { cwd: projectRoot, maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 });
}

/**
 * Neo4j's classpath (jars in ~/.m2), cached under node_modules/.cache/neo4j by the pom's content;
 * recomputed when a jar it names is gone. Maven runs offline first (everything is usually in ~/.m2
 * already), online if that fails.
 */
export async function neo4jClasspath(): Promise<string> {
  const cacheFile = path.join(cacheDir, `classpath-${hash(await readFile(pom))}.txt`);
  const cached = await readFile(cacheFile, 'utf8').catch(() => null);
  if (cached) {
    const jars = cached.trim().split(path.delimiter);
    const present = await Promise.all(jars.map((jar) => stat(jar).then(() => true, () => false)));
    if (jars.length > 0 && present.every(Boolean)) return cached.trim();
  }
  await mkdir(cacheDir, { recursive: true });
  // Concurrent runs each write their own file and rename it into place: the cache is never half-written.
  const temporary = `${cacheFile}.${process.pid}.${randomUUID()}.tmp`;
  try {
    try {
      await buildClasspath(temporary, true);
    } catch {
      try {
        await buildClasspath(temporary, false);
      } catch (error) {
        const { stdout = '', stderr = '', message } = error as { stdout?: string; stderr?: string; message: string };
        throw new Error(`could not resolve Neo4j's classpath with Maven (mvn -f ${path.relative(projectRoot, pom)} dependency:build-classpath): ${message}\n${stdout}${stderr}`);
      }
    }
    const classpath = (await readFile(temporary, 'utf8')).trim();
    if (!classpath) throw new Error('Maven wrote an empty classpath for Neo4j');
    await rename(temporary, cacheFile);
    return classpath;
  } finally {
    await rm(temporary, { force: true });
  }
}

/** The `java` that runs Neo4j: $JAVA_HOME's, else the first on PATH. */
function javaCommand(): string {
  return process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** The real path of `java` (symbolic links resolved), or null when it is not found. */
async function javaBinary(): Promise<string | null> {
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

/** A tool of the JDK `java` belongs to (javac, jar), else the one on PATH. */
async function jdkTool(name: string, java: string | null): Promise<string> {
  if (java) {
    const beside = path.join(path.dirname(java), name);
    if (await access(beside, constants.X_OK).then(() => true, () => false)) return beside;
  }
  return name;
}

/**
 * Launcher.java compiled into a jar under node_modules/.cache/neo4j, keyed by its source and the
 * classpath it is compiled against (a jar, not a folder of classes: class data sharing takes jars only).
 */
async function launcherJar(classpath: string, java: string | null): Promise<string> {
  const source = await readFile(launcherSource);
  const jar = path.join(cacheDir, `launcher-${hash(Buffer.concat([source, Buffer.from(`\n${classpath}`)]))}.jar`);
  if (await stat(jar).then((info) => info.size > 0, () => false)) return jar;
  await mkdir(cacheDir, { recursive: true });
  const classes = await mkdtemp(path.join(tmpdir(), 'neo4j-launcher-'));
  const temporary = `${jar}.${process.pid}.${randomUUID()}.tmp`;
  try {
    const options = { cwd: projectRoot, maxBuffer: 16 * 1024 * 1024, timeout: 5 * 60_000, env: { ...process.env, CLASSPATH: classpath } };
    try {
      await execFileAsync(await jdkTool('javac', java), ['-proc:none', '-encoding', 'UTF-8', '-nowarn', '-d', classes, launcherSource], options);
      await execFileAsync(await jdkTool('jar', java), ['--create', '--file', temporary, '-C', classes, '.'], options);
    } catch (error) {
      const { stdout = '', stderr = '', message } = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`could not compile ${path.relative(projectRoot, launcherSource)} (a JDK 17+, with javac and jar, is needed): ${message}\n${stdout}${stderr}`);
    }
    await rename(temporary, jar);
    // Those of an earlier Launcher.java or pom.
    const stale = (await readdir(cacheDir)).filter((name) => /^launcher-[0-9a-f]{16}\.jar$/.test(name) && name !== path.basename(jar));
    await Promise.all(stale.map((name) => rm(path.join(cacheDir, name), { force: true })));
    return jar;
  } finally {
    await rm(temporary, { force: true });
    await rm(classes, { recursive: true, force: true });
  }
}

interface ClassDataSharing {
  args: string[];
  archive: string | null;
  writing: boolean;
  keep(complete: boolean): Promise<void>;
}

/**
 * A class data sharing archive of Neo4j's classes (AppCDS, JDK 13+), as in s3proxy.ts: the first run
 * writes one as it exits (-XX:ArchiveClassesAtExit), later runs map it (-XX:SharedArchiveFile).
 * Cached beside the classpath, keyed by it and by the JVM (its path and modification time); the JVM
 * checks both again (the jars' modification times too) and merely ignores an archive that does not
 * match. NEO4J_CDS=0: none.
 */
async function classDataSharing(classpath: string, java: string | null, jar: string): Promise<ClassDataSharing> {
  const none: ClassDataSharing = { args: [], archive: null, writing: false, keep: async () => {} };
  if (process.env.NEO4J_CDS === '0' || !java) return none;
  const jvm = `${java}@${(await stat(java)).mtimeMs}`;
  // The launcher jar's too: compiled again (its cache emptied), it has another one, which the JVM checks.
  const launcher = `${jar}@${(await stat(jar)).mtimeMs}`;
  const archive = path.join(cacheDir, `classes-${hash(`${jvm}\n${launcher}\n${classpath}`)}.jsa`);
  if (await stat(archive).then((info) => info.size > 0, () => false)) {
    return { args: [`-XX:SharedArchiveFile=${archive}`], archive, writing: false, keep: async () => {} };
  }
  await mkdir(cacheDir, { recursive: true });
  const temporary = `${archive}.${process.pid}.${randomUUID()}.tmp`;
  return {
    args: [`-XX:ArchiveClassesAtExit=${temporary}`],
    archive: null,
    writing: true,
    // Only from a server that started (it has loaded what it needs) and whose JVM exited of itself
    // (at the end of its stdin, or SIGTERM: it writes the archive then), not killed midway.
    async keep(complete) {
      const written = complete && (await stat(temporary).then((info) => info.size > 0, () => false));
      if (!written) {
        await rm(temporary, { force: true });
        return;
      }
      await rename(temporary, archive);
      // The archives of an earlier Launcher.java, pom or JVM (100 MB each) will not be used again.
      const stale = (await readdir(cacheDir)).filter((name) => /^classes-[0-9a-f]{16}\.jsa$/.test(name) && name !== path.basename(archive));
      await Promise.all(stale.map((name) => rm(path.join(cacheDir, name), { force: true })));
    },
  };
}

const running = new Set<() => void>();
process.once('exit', () => {
  for (const end of running) end();
});

class AddressInUse extends Error {}

/**
 * Starts Neo4j with Bolt on a free port of 127.0.0.1, storing into a fresh temporary folder, user
 * `neo4j` with a random password; `stop()` ends it (closes its stdin; SIGTERM, then SIGKILL, if it
 * lingers) and removes the folder. Its JVM also stops of itself when this process ends.
 */
export async function startNeo4j(options: { readyTimeoutMs?: number; tuning?: JvmTuning } = {}): Promise<Neo4jServer> {
  const classpath = await neo4jClasspath();
  const java = await javaBinary();
  const jar = await launcherJar(classpath, java);
  const fullClasspath = [jar, classpath].join(path.delimiter);
  for (let attempt = 0; ; attempt++) {
    const cds = await classDataSharing(fullClasspath, java, jar);
    try {
      return await startOnce(fullClasspath, cds, await freePort(), options.readyTimeoutMs ?? 180_000, options.tuning ?? 'test');
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

/**
 * test: a quick start and little CPU (C1 only, serial GC, 1 GiB heap), for the test suite.
 * throughput: the JVM as Neo4j's own start script runs it (C2, G1, a 2 GiB heap), for benchmarks
 * that measure what a real server does with sustained writes.
 */
export type JvmTuning = 'test' | 'throughput';

const jvmTuning: Record<JvmTuning, string[]> = {
  test: ['-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-Xms128m', '-Xmx1g'],
  throughput: ['-XX:+UseG1GC', '-Xms2g', '-Xmx2g'],
};

async function startOnce(classpath: string, cds: ClassDataSharing, port: number, readyTimeoutMs: number, tuning: JvmTuning): Promise<Neo4jServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'neo4j-'));
  const url = `bolt://127.0.0.1:${port}`;
  const user = 'neo4j';
  const password = randomBytes(18).toString('base64url');
  const readyLine = `NEO4J READY ${url}`;

  const child = spawn(
    javaCommand(),
    [
      // A test server by default: the C1 compiler only (less CPU at start, on a machine that builds
      // and tests meanwhile), class data sharing, a small serial GC.
      ...jvmTuning[tuning],
      '-Xshare:auto',
      ...cds.args,
      // Its warnings (classes it cannot archive: hundreds of lines) say nothing about Neo4j.
      '-Xlog:cds*=off',
      '-XX:+ExitOnOutOfMemoryError',
      // As Neo4j's own start script has it.
      '--add-opens=java.base/java.nio=ALL-UNNAMED',
      '--add-opens=java.base/java.io=ALL-UNNAMED',
      '--add-opens=java.base/sun.nio.ch=ALL-UNNAMED',
      '-Dio.netty.tryReflectionSetAccessible=true',
      '-Djdk.nio.maxCachedBufferSize=1024',
      '-Dlog4j2.disable.jmx=true',
      `-Djava.io.tmpdir=${dir}`,
      'Launcher',
      String(port),
      // It deletes the folder as it stops, whoever stops it.
      dir,
    ],
    {
      cwd: dir,
      // The classpath (240 jars) in the environment rather than on a command line `ps` shows; the
      // password too.
      env: { ...process.env, CLASSPATH: classpath, NEO4J_LAUNCHER_PASSWORD: password },
      // stdin stays open: the Launcher stops at its end (here, or when this process dies).
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let output = '';
  let ready = false;
  let onReady: () => void = () => {};
  const readySignal = new Promise<'ready'>((resolve) => {
    onReady = () => resolve('ready');
  });
  const keep = (chunk: string) => {
    output = (output + chunk).slice(-16_000);
    if (process.env.TEST_LOGS) process.stderr.write(`[neo4j] ${chunk}`);
  };
  // The lines of stdout until the ready one (stderr's chunks may come in between, midline).
  let stdoutLine = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    keep(chunk);
    if (ready) return;
    const lines = (stdoutLine + chunk).split(/\r?\n/);
    stdoutLine = lines.pop() ?? '';
    if (lines.includes(readyLine)) onReady();
  });
  child.stderr.setEncoding('utf8').on('data', keep);
  // Writing to (or closing) the stdin of a JVM that has died: nothing to report.
  child.stdin.on('error', () => undefined);
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
  // This process ends (as vitest does when interrupted): the JVM too, now, and its files.
  const onExit = () => {
    killNow();
    rmSync(dir, { recursive: true, force: true });
  };
  running.add(onExit);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (exited === null && spawnError === null) {
        // The end of its stdin: Neo4j shuts down (and the JVM writes its class data sharing archive,
        // 100+ MB, which takes a while).
        child.stdin.end();
        const term = setTimeout(() => child.kill('SIGTERM'), cds.writing ? 60_000 : 15_000);
        const kill = setTimeout(killNow, cds.writing ? 90_000 : 30_000);
        await closed;
        clearTimeout(term);
        clearTimeout(kill);
      }
      running.delete(onExit);
      await cds.keep(ready && spawnError === null && !killed);
      await rm(dir, { recursive: true, force: true });
    })());

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    readySignal,
    closed.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), readyTimeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (outcome === 'ready') {
    ready = true;
    return { url, user, password, stop };
  }
  // Stuck starting, it would not read its stdin.
  if (outcome === 'timeout') killNow();
  await stop();
  if (outcome === 'timeout') throw new Error(`Neo4j did not start on ${url} in ${readyTimeoutMs} ms:\n${output}`);
  if (/PortBindException|Address already in use/.test(output)) throw new AddressInUse(output);
  const why = spawnError !== null ? String(spawnError) : `exit ${JSON.stringify(exited)}`;
  throw new Error(`Neo4j did not start (${why}; is a JDK 17 on PATH?):\n${output}`);
}

/** The environment variables that point the service at the run's Neo4j. */
export interface Neo4jTestEnv {
  NEO4J_URL: string;
  NEO4J_USER: string;
  NEO4J_PASSWORD: string;
}

/** Inside a test file: the variables for the run's Neo4j (shared by all test files). */
export function neo4jTestEnv(): Neo4jTestEnv {
  const { url, user, password } = inject('neo4j');
  return { NEO4J_URL: url, NEO4J_USER: user, NEO4J_PASSWORD: password };
}
