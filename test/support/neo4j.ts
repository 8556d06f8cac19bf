import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { AddressInUse, hash, javaBinary, mavenClasspath, spawnJava, startJavaServer, type ClassDataSharing, type JavaProcess, type JavaServer } from './javaServer.js';
import { projectRoot } from './serverProcess.js';

/**
 * Neo4j Community 5.26 (org.neo4j.test:neo4j-harness, test/support/neo4j/pom.xml), in process in a
 * JVM that test/support/neo4j/Launcher.java runs, over a temporary folder: Bolt on 127.0.0.1 without
 * TLS, no HTTP, native authentication as user `neo4j` with a random password. globalSetup starts one
 * per test run and provides its address as `neo4j`; all test files share it, each keeping to
 * repositories of its own; `neo4jTestEnv()` gives the variables that point the service at it.
 *
 * As for S3Proxy (javaServer.ts): the classpath comes from Maven, cached under node_modules/.cache/neo4j
 * by the pom's content (.ci/run resolves it beforehand), and a class data sharing archive of the JVM's
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
const server: JavaServer = {
  name: 'Neo4j',
  id: 'neo4j',
  pom: path.join(projectRoot, 'test/support/neo4j/pom.xml'),
  cacheDir: path.join(projectRoot, 'node_modules/.cache/neo4j'),
  cdsVariable: 'NEO4J_CDS',
  // Those of an earlier Launcher.java, pom or JVM: 100 MB each.
  removeStaleArchives: true,
};
const { cacheDir } = server;
const execFileAsync = promisify(execFile);

/**
 * Neo4j's classpath (jars in ~/.m2), cached under node_modules/.cache/neo4j by the pom's content
 * (see mavenClasspath in javaServer.ts).
 */
export async function neo4jClasspath(): Promise<string> {
  return mavenClasspath(server);
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
  // The class data sharing archive is keyed by the launcher jar too: compiled again (its cache
  // emptied), it has another modification time, which the JVM checks.
  return startJavaServer(server, { classpath: fullClasspath, java, files: [jar] }, (cds, port) =>
    startOnce(fullClasspath, cds, port, options.readyTimeoutMs ?? 180_000, options.tuning ?? 'test'),
  );
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

  let onReady: () => void = () => {};
  const readySignal = new Promise<'ready'>((resolve) => {
    onReady = () => resolve('ready');
  });
  // The lines of stdout until the ready one (stderr's chunks may come in between, midline).
  let stdoutLine = '';
  const jvm: JavaProcess = spawnJava({
    server,
    args: [
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
    // The classpath (240 jars) in the environment; the password too (not on a command line `ps` shows).
    classpath,
    env: { NEO4J_LAUNCHER_PASSWORD: password },
    dir,
    cds,
    // stdin stays open: the Launcher stops at its end (here, or when this process dies). Neo4j shuts
    // down then (and the JVM writes its class data sharing archive, 100+ MB, which takes a while).
    stop: { by: 'stdin', termAfterMs: cds.writing ? 60_000 : 15_000, killAfterMs: cds.writing ? 90_000 : 30_000 },
    // This process ends (as vitest does when interrupted): the JVM too, now, and its files.
    removeDirAtExit: true,
    onStdout: (chunk) => {
      if (jvm.ready) return;
      const lines = (stdoutLine + chunk).split(/\r?\n/);
      stdoutLine = lines.pop() ?? '';
      if (lines.includes(readyLine)) onReady();
    },
  });

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    readySignal,
    jvm.closed.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), readyTimeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (outcome === 'ready') {
    jvm.ready = true;
    return { url, user, password, stop: jvm.stop };
  }
  // Stuck starting, it would not read its stdin.
  if (outcome === 'timeout') jvm.killNow();
  await jvm.stop();
  if (outcome === 'timeout') throw new Error(`Neo4j did not start on ${url} in ${readyTimeoutMs} ms:\n${jvm.output}`);
  if (/PortBindException|Address already in use/.test(jvm.output)) throw new AddressInUse(jvm.output);
  throw new Error(`Neo4j did not start (${jvm.ended()}; is a JDK 17 on PATH?):\n${jvm.output}`);
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
