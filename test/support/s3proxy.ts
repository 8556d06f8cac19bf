import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { AddressInUse, javaBinary, mavenClasspath, spawnJava, startJavaServer, type ClassDataSharing, type JavaServer } from './javaServer.js';
import { projectRoot } from './serverProcess.js';

/**
 * S3Proxy (https://github.com/gaul/s3proxy, 2.6.0), a Java S3 API server, over a
 * temporary folder: the real S3 wire protocol (SigV4, multipart uploads,
 * ListObjectsV2 pages of 1000, DeleteObjects) for the archive store's tests.
 * globalSetup starts one per test run and provides its address as `s3`;
 * `s3TestEnv()` gives a test a bucket of its own there.
 *
 * Its classpath comes from Maven, cached under node_modules/.cache/s3proxy by the pom's content
 * (.ci/run resolves it beforehand), and a class data sharing archive of its classes (some 30 MB)
 * is written there as the first run's server exits, to be mapped by later ones: about a second off
 * the JVM's start (S3PROXY_CDS=0: none). See javaServer.ts.
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

const server: JavaServer = {
  name: 'S3Proxy',
  id: 's3proxy',
  pom: path.join(projectRoot, 'test/support/s3proxy/pom.xml'),
  cacheDir: path.join(projectRoot, 'node_modules/.cache/s3proxy'),
  cdsVariable: 'S3PROXY_CDS',
  removeStaleArchives: false,
};

/**
 * S3Proxy's classpath (jars in ~/.m2), cached under node_modules/.cache/s3proxy
 * by the pom's content (see mavenClasspath in javaServer.ts).
 */
export async function s3ProxyClasspath(): Promise<string> {
  return mavenClasspath(server);
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

/**
 * Starts S3Proxy on a free port of 127.0.0.1, storing into a fresh temporary
 * folder, with random credentials; `stop()` ends it (SIGTERM, then SIGKILL)
 * and removes the folder.
 */
export async function startS3Proxy(options: { readyTimeoutMs?: number } = {}): Promise<S3Proxy> {
  const classpath = await s3ProxyClasspath();
  // The JVM is looked up for the class data sharing archive only (the one it is keyed by).
  const java = process.env.S3PROXY_CDS === '0' ? null : await javaBinary();
  return startJavaServer(server, { classpath, java }, (cds, port) => startOnce(classpath, cds, port, options.readyTimeoutMs ?? 60_000));
}

async function startOnce(classpath: string, cds: ClassDataSharing, port: number, readyTimeoutMs: number): Promise<S3Proxy> {
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

  const jvm = spawnJava({
    server,
    args: [
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
    // 130 jars, in its environment.
    classpath,
    dir,
    cds,
    // Writing a class data sharing archive (some 30 MB) at exit takes a moment.
    stop: { by: 'SIGTERM', killAfterMs: cds.writing ? 60_000 : 5_000 },
    removeDirAtExit: false,
  });

  const deadline = Date.now() + readyTimeoutMs;
  while (!(await answers(port))) {
    const why = jvm.ended();
    if (why !== null) {
      await jvm.stop();
      if (/Address already in use|BindException/.test(jvm.output)) throw new AddressInUse(jvm.output);
      throw new Error(`S3Proxy did not start (${why}; is Java 17+ on PATH?):\n${jvm.output}`);
    }
    if (Date.now() > deadline) {
      await jvm.stop();
      throw new Error(`S3Proxy did not answer on ${endpoint} in ${readyTimeoutMs} ms:\n${jvm.output}`);
    }
    await sleep(50);
  }
  jvm.ready = true;
  return { endpoint, accessKeyId, secretAccessKey, stop: jvm.stop };
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
