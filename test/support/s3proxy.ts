import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { freePort, projectRoot } from './serverProcess.js';

/**
 * S3Proxy (https://github.com/gaul/s3proxy, 2.6.0), a Java S3 API server, over a
 * temporary folder: the real S3 wire protocol (SigV4, multipart uploads,
 * ListObjectsV2 pages of 1000, DeleteObjects) for the archive store's tests.
 * globalSetup starts one per test run and provides its address as `s3`;
 * `s3TestEnv()` gives a test a bucket of its own there.
 *
 * TEST_LOGS=1 shows its log (warnings; S3PROXY_LOG_LEVEL=DEBUG for more).
 * Where it differs from S3 (as of 2.6.0, filesystem-nio2 backend):
 * - a multipart upload under way shows up in a listing of the whole bucket as
 *   objects `.mpus-<uploadId>-<key>-stub` and `<uploadId>` (S3 never lists them);
 * - DeleteObjects in a missing bucket answers 200, every key "deleted" (S3: NoSuchBucket);
 * - a multipart object's ETag has no `-<parts>` suffix;
 * - the SDK's x-amz-checksum-crc32 is ignored, not checked (see ignore-unknown-headers below).
 */

/** What a test file gets through `inject('s3')`. */
export interface S3ProxyAddress {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3ProxyAddress;
  }
}

export interface S3Proxy extends S3ProxyAddress {
  stop(): Promise<void>;
}

const pom = path.join(projectRoot, 'test/support/s3proxy/pom.xml');
const cacheDir = path.join(projectRoot, 'node_modules/.cache/s3proxy');
const execFileAsync = promisify(execFile);

/** `mvn` resolving the pom's dependencies and writing their classpath to a file. */
async function buildClasspath(outputFile: string, offline: boolean): Promise<void> {
  const args = ['-B', '-q', '-Dstyle.color=never', ...(offline ? ['-o'] : []), '-f', pom, 'dependency:build-classpath', `-Dmdep.outputFile=${outputFile}`];
  await execFileAsync(process.env.MVN ?? 'mvn', args, { cwd: projectRoot, maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 });
}

/**
 * S3Proxy's classpath (jars in ~/.m2), cached under node_modules/.cache/s3proxy
 * by the pom's content; recomputed when a jar it names is gone. Maven runs
 * offline first (everything is usually in ~/.m2 already), online if that fails.
 */
export async function s3ProxyClasspath(): Promise<string> {
  const pomText = await readFile(pom);
  const cacheFile = path.join(cacheDir, `classpath-${createHash('sha256').update(pomText).digest('hex').slice(0, 16)}.txt`);
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
        throw new Error(`could not resolve S3Proxy's classpath with Maven (mvn -f ${path.relative(projectRoot, pom)} dependency:build-classpath): ${message}\n${stdout}${stderr}`);
      }
    }
    const classpath = (await readFile(temporary, 'utf8')).trim();
    if (!classpath) throw new Error('Maven wrote an empty classpath for S3Proxy');
    await rename(temporary, cacheFile);
    return classpath;
  } finally {
    await rm(temporary, { force: true });
  }
}

/** The `java` that runs S3Proxy: $JAVA_HOME's, else the first on PATH. */
function javaCommand(): string {
  return process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** Which JVM `java` is (its real path and modification time), or null when it is not found. */
async function javaIdentity(): Promise<string | null> {
  const command = javaCommand();
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      const real = await realpath(candidate);
      return `${real}@${(await stat(real)).mtimeMs}`;
    } catch {
      // not this one
    }
  }
  return null;
}

/**
 * A class data sharing archive of S3Proxy's classes (AppCDS, JDK 13+) takes about a second off
 * the JVM's start: the first run writes one as it exits (-XX:ArchiveClassesAtExit), later runs
 * map it (-XX:SharedArchiveFile). Cached beside the classpath, keyed by the classpath and the JVM
 * (the JVM checks both again, and merely ignores an archive that does not match). S3PROXY_CDS=0: none.
 */
async function classDataSharing(classpath: string): Promise<{ args: string[]; archive: string | null; writing: boolean; keep(complete: boolean): Promise<void> }> {
  const none = { args: [], archive: null, writing: false, keep: async () => {} };
  const jvm = process.env.S3PROXY_CDS === '0' ? null : await javaIdentity();
  if (!jvm) return none;
  const archive = path.join(cacheDir, `classes-${createHash('sha256').update(`${jvm}\n${classpath}`).digest('hex').slice(0, 16)}.jsa`);
  if (await stat(archive).then((info) => info.size > 0, () => false)) {
    return { args: [`-XX:SharedArchiveFile=${archive}`], archive, writing: false, keep: async () => {} };
  }
  await mkdir(cacheDir, { recursive: true });
  const temporary = `${archive}.${process.pid}.${randomUUID()}.tmp`;
  return {
    args: [`-XX:ArchiveClassesAtExit=${temporary}`],
    archive: null,
    writing: true,
    // Only from a server that started (it has loaded what it needs), and whose JVM exited of itself
    // (SIGTERM included: it writes the archive then), not killed midway.
    async keep(complete) {
      const written = complete && (await stat(temporary).then((info) => info.size > 0, () => false));
      if (written) await rename(temporary, archive);
      else await rm(temporary, { force: true });
    },
  };
}

/** Resolves once something answers HTTP on the port (S3Proxy says 403 to an anonymous GET /). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', method: 'GET', timeout: 2_000 }, (response) => {
      response.resume();
      resolve(true);
    });
    req.once('error', () => resolve(false));
    req.once('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

const running = new Set<() => void>();
process.once('exit', () => {
  for (const kill of running) kill();
});

class AddressInUse extends Error {}

/**
 * Starts S3Proxy on a free port of 127.0.0.1, storing into a fresh temporary
 * folder, with random credentials; `stop()` ends it (SIGTERM, then SIGKILL)
 * and removes the folder.
 */
export async function startS3Proxy(options: { readyTimeoutMs?: number } = {}): Promise<S3Proxy> {
  const classpath = await s3ProxyClasspath();
  for (let attempt = 0; ; attempt++) {
    const cds = await classDataSharing(classpath);
    try {
      return await startOnce(classpath, cds, await freePort(), options.readyTimeoutMs ?? 60_000);
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

async function startOnce(classpath: string, cds: Awaited<ReturnType<typeof classDataSharing>>, port: number, readyTimeoutMs: number): Promise<S3Proxy> {
  const dir = await mkdtemp(path.join(tmpdir(), 's3proxy-'));
  const dataDir = path.join(dir, 'data');
  await mkdir(dataDir);
  const endpoint = `http://127.0.0.1:${port}`;
  // Letters and digits only: neither needs escaping in a properties file nor in SigV4.
  const accessKeyId = `S3PROXYTEST${randomBytes(6).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(24).toString('hex');
  const properties = path.join(dir, 's3proxy.properties');
  await writeFile(
    properties,
    [
      `s3proxy.endpoint=${endpoint}`,
      's3proxy.authorization=aws-v2-or-v4',
      // The AWS SDK (v3.729+) sends x-amz-checksum-crc32 on every upload and on DeleteObjects (and
      // x-amz-checksum-algorithm on CreateMultipartUpload); S3Proxy 2.6 knows only the CRC64NVME one
      // and answers 501 NotImplemented to any other x-amz-* header it does not know, unless told to ignore them.
      's3proxy.ignore-unknown-headers=true',
      `s3proxy.identity=${accessKeyId}`,
      `s3proxy.credential=${secretAccessKey}`,
      // Not jclouds' `filesystem` (deprecated by S3Proxy): it lists every folder above a key as an
      // object of its own (`repos/`, `repos/r1/`…, 4096 bytes), which S3 never does.
      'jclouds.provider=filesystem-nio2',
      `jclouds.filesystem.basedir=${dataDir}`,
      // The backend's own credentials (a filesystem ignores them).
      `jclouds.identity=${accessKeyId}`,
      `jclouds.credential=${secretAccessKey}`,
      '',
    ].join('\n'),
  );
  // Without a configuration logback logs every Jetty DEBUG line: warnings only. To stdout: S3Proxy
  // replaces System.err by a stream into its own logger when it has no console (a loop, so nothing).
  const logback = path.join(dir, 'logback.xml');
  await writeFile(
    logback,
    `<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.out</target>
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.gaul.s3proxy" level="${process.env.S3PROXY_LOG_LEVEL ?? 'WARN'}"/>
  <logger name="org.gaul.s3proxy.Main" level="ERROR"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
`,
  );

  const child = spawn(
    javaCommand(),
    [
      // A short-lived test server: the C1 compiler only and class data sharing start it fastest.
      '-XX:TieredStopAtLevel=1',
      '-Xshare:auto',
      ...cds.args,
      '-XX:+UseSerialGC',
      '-Xss512k',
      '-Xms32m',
      '-Xmx384m',
      `-Dlogback.configurationFile=${logback}`,
      `-Djava.io.tmpdir=${dir}`,
      'org.gaul.s3proxy.Main',
      '--properties',
      properties,
    ],
    // The classpath (130 jars) in the environment rather than on a command line `ps` shows.
    { cwd: dir, env: { ...process.env, CLASSPATH: classpath }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: string) => {
    output = (output + chunk).slice(-16_000);
    if (process.env.TEST_LOGS) process.stderr.write(`[s3proxy] ${chunk}`);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
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
  running.add(killNow);

  let ready = false;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (exited === null && spawnError === null) {
        child.kill('SIGTERM');
        // Writing a class data sharing archive (some 30 MB) at exit takes a moment.
        const timer = setTimeout(killNow, cds.writing ? 60_000 : 5_000);
        await closed;
        clearTimeout(timer);
      }
      running.delete(killNow);
      await cds.keep(ready && spawnError === null && !killed);
      await rm(dir, { recursive: true, force: true });
    })());

  const deadline = Date.now() + readyTimeoutMs;
  while (!(await answers(port))) {
    if (spawnError !== null || exited !== null) {
      await stop();
      const why = spawnError !== null ? String(spawnError) : `exit ${JSON.stringify(exited)}`;
      if (/Address already in use|BindException/.test(output)) throw new AddressInUse(output);
      throw new Error(`S3Proxy did not start (${why}; is Java 17+ on PATH?):\n${output}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`S3Proxy did not answer on ${endpoint} in ${readyTimeoutMs} ms:\n${output}`);
    }
    await sleep(50);
  }
  ready = true;
  return { endpoint, accessKeyId, secretAccessKey, stop };
}

/** The environment variables that point the service (or an S3ArchiveStore) at a bucket of the run's S3Proxy. */
export interface S3TestEnv {
  S3_BUCKET: string;
  S3_ENDPOINT: string;
  S3_REGION: 'us-east-1';
  S3_FORCE_PATH_STYLE: '1';
  AWS_ACCESS_KEY_ID: string;
  AWS_SECRET_ACCESS_KEY: string;
}

/** An S3 client for an S3Proxy (path-style addressing, its own keys). */
export function s3ClientFor(s3: S3ProxyAddress): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

/** A bucket name nobody else uses (S3 rules: 3–63 characters, lower case, digits, hyphens). */
export function uniqueBucketName(prefix = 'test'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/**
 * Inside a test file: creates a bucket on the run's S3Proxy (a fresh unique
 * one unless `bucket` names it) and returns the variables that point at it.
 */
export async function s3TestEnv(bucket: string = uniqueBucketName()): Promise<S3TestEnv> {
  const s3 = inject('s3');
  const client = s3ClientFor(s3);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return {
    S3_BUCKET: bucket,
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: 'us-east-1',
    S3_FORCE_PATH_STYLE: '1',
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
  };
}
