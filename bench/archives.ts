import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { SyncRepositoryDocument, UpdateRepositoryDocument } from '../test/generated/graphql.js';
import type { GitServer } from '../test/support/gitServer.js';
import { generateLargeRepository, git, gitEnv, mulberry32, Upstream } from '../test/support/gitFixtures.js';
import { s3ClientFor, startS3Proxy, uniqueBucketName, type S3Proxy } from '../test/support/s3proxy.js';
import { addRepository, createProject, dbId } from './api.js';
import type { BenchContext } from './context.js';
import { benchResult, type BenchResult } from './report.js';
import { phaseBreakdown, runMarker, runsAfter, type RunRow } from './runs.js';
import { Service } from './service.js';
import { waitForAllSynced } from './setup.js';
import { median, medianOf, round, sleep, timed, waitUntil } from './timing.js';

const MiB = 1024 * 1024;

/**
 * The archive store of these benchmarks: S3Proxy (a real S3 API server, Java,
 * filesystem backend) with one fresh bucket, and the variables that point the
 * service at it.
 */
interface Store {
  proxy: S3Proxy;
  bucket: string;
  client: S3Client;
  env: Record<string, string>;
  stop(): Promise<void>;
}

async function startStore(prefix: string): Promise<Store> {
  // The SDK's 8-line notice that later versions need Node 22 (here and in the service, where it would count as warnings).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const proxy = await startS3Proxy();
  const bucket = uniqueBucketName(prefix);
  const client = s3ClientFor(proxy);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    client.destroy();
    await proxy.stop();
    throw error;
  }
  return {
    proxy,
    bucket,
    client,
    env: {
      S3_BUCKET: bucket,
      S3_ENDPOINT: proxy.endpoint,
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: '1',
      AWS_ACCESS_KEY_ID: proxy.accessKeyId,
      AWS_SECRET_ACCESS_KEY: proxy.secretAccessKey,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    stop: async () => {
      client.destroy();
      await proxy.stop();
    },
  };
}

/** How many objects of the bucket start with the prefix (ListObjectsV2, pages of 1,000). */
async function countObjects(store: Store, prefix: string): Promise<number> {
  let count = 0;
  let token: string | undefined;
  do {
    const page = await store.client.send(
      new ListObjectsV2Command({ Bucket: store.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }),
    );
    count += page.KeyCount ?? page.Contents?.length ?? 0;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return count;
}

/** The service's archive metrics (GET /metrics): seconds summed and counts of the duration histogram, objects uploaded. */
interface ArchiveMetrics {
  snapshotSeconds: number;
  snapshotCount: number;
  artifactsSeconds: number;
  artifactsCount: number;
  failed: number;
  snapshots: number;
  blobs: number;
  manifests: number;
}

async function archiveMetrics(service: Service): Promise<ArchiveMetrics> {
  const response = await fetch(`${service.url}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
  const text = await response.text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(repolens_archive_\w+)\{([^}]*)\}\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((label) => [label[1], label[2]]));
    // Sums over the labels not named here (e.g. le for _bucket lines are skipped below).
    if (labels.le !== undefined) continue;
    const key = `${match[1]}|${labels.part ?? ''}|${labels.outcome ?? ''}`;
    values.set(key, (values.get(key) ?? 0) + Number(match[3]));
  }
  const get = (name: string, part: string, outcome = '') => values.get(`${name}|${part}|${outcome}`) ?? 0;
  return {
    snapshotSeconds: get('repolens_archive_duration_seconds_sum', 'snapshot', 'stored'),
    snapshotCount: get('repolens_archive_duration_seconds_count', 'snapshot', 'stored'),
    artifactsSeconds: get('repolens_archive_duration_seconds_sum', 'artifacts', 'stored'),
    artifactsCount: get('repolens_archive_duration_seconds_count', 'artifacts', 'stored'),
    failed:
      get('repolens_archive_duration_seconds_count', 'snapshot', 'failed') + get('repolens_archive_duration_seconds_count', 'artifacts', 'failed'),
    snapshots: get('repolens_archive_objects_uploaded_total', 'snapshot'),
    blobs: get('repolens_archive_objects_uploaded_total', 'blob'),
    manifests: get('repolens_archive_objects_uploaded_total', 'manifest'),
  };
}

function metricsDelta(before: ArchiveMetrics, after: ArchiveMetrics): ArchiveMetrics {
  return Object.fromEntries(
    Object.entries(after).map(([key, value]) => [key, value - before[key as keyof ArchiveMetrics]]),
  ) as unknown as ArchiveMetrics;
}

/** Until the repository's run queued after `marker` has finished; that run. */
async function finishedRun(service: Service, repositoryId: string, marker: string, timeoutMs = 600_000): Promise<RunRow> {
  let run: RunRow | undefined;
  await waitUntil(
    async () => {
      run = (await runsAfter(service, marker)).find((row) => row.repositoryId === repositoryId);
      return run !== undefined;
    },
    { intervalMs: 100, timeoutMs, describe: () => `the run of ${repositoryId} queued after ${marker} did not finish` },
  );
  return run!;
}

/** syncRepository, then the run it queued once finished (its row) and the wall time until the bench saw it finish. */
async function syncAndWait(service: Service, globalId: string): Promise<{ run: RunRow; ms: number }> {
  const marker = await runMarker(service);
  const start = performance.now();
  await service.client.request(SyncRepositoryDocument, { repositoryId: globalId });
  const run = await finishedRun(service, dbId(globalId), marker);
  return { run, ms: performance.now() - start };
}

/** Milliseconds the run spent from ARCHIVING to the phase after it (DONE or SKIPPED). */
function archivingMs(run: RunRow): number {
  const breakdown = phaseBreakdown([run]);
  return Object.entries(breakdown).find(([key]) => key.startsWith('ARCHIVING→'))?.[1] ?? Number.NaN;
}

/** VmRSS of the service every `intervalMs` until stopped: the highest seen. */
function sampleRss(service: Service, intervalMs = 100): { stop(): Promise<{ maxMb: number; samples: number }> } {
  let running = true;
  let maxMb = 0;
  let samples = 0;
  const loop = (async () => {
    while (running) {
      const rss = await service.rssMb().catch(() => Number.NaN);
      if (rss > maxMb) maxMb = rss;
      samples++;
      await sleep(intervalMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      maxMb = Math.max(maxMb, await service.rssMb());
      return { maxMb, samples };
    },
  };
}

/**
 * The RSS the idle server sits at: the median of a second of samples. One
 * sample alone lands anywhere in the garbage collector's cycle (195 to 229 MB
 * for the same server in one run), which made the growth swing by 30 MB.
 */
async function restingRssMb(service: Service): Promise<number> {
  const samples: number[] = [];
  for (let index = 0; index < 11; index++) {
    samples.push(await service.rssMb());
    await sleep(100);
  }
  return median(samples);
}

/** Bytes of a folder's regular files (`du -sb`, apparent sizes) and its entries. */
async function folderSize(dir: string): Promise<{ bytes: number; gitBytes: number; files: number }> {
  const [all, dotGit, files] = await Promise.all([
    shell('du -sb -- "$1" | cut -f1', [dir]),
    shell('du -sb -- "$1/.git" | cut -f1', [dir]),
    shell('find "$1" -type f | wc -l', [dir]),
  ]);
  return { bytes: Number(all), gitBytes: Number(dotGit), files: Number(files) };
}

function shell(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script, 'bash', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(stdout.trim()) : reject(new Error(`bash -c '${script}' exited ${code}: ${stderr}`))));
  });
}

// ---------------------------------------------------------------------------
// snapshot-1g

/**
 * One ~1 GiB working copy (files + .git; ~30 % of those bytes incompressible)
 * archived again each run: the snapshot object, and the repository's
 * archiveUrl that names it, are removed (untimed), then syncRepository makes a
 * SKIPPED run that archives the unchanged commit once more. Ours is the
 * snapshot part of it (repolens_archive_duration_seconds{part="snapshot"}:
 * tar, gzip and multipart upload to S3Proxy, streamed), vs
 * `tar czf - -C <working copy> . | wc -c` on the same folder. Also the
 * server's RSS growth during the run, sampled every 100 ms.
 */
export async function snapshot1g(ctx: BenchContext): Promise<BenchResult> {
  const name = 'snapshot-1g';
  const targetBytes = ctx.scale(1024) * MiB;
  const store = await startStore('bench-snapshot');
  let service: Service | undefined;
  try {
    const generationStart = performance.now();
    const [started, generated] = await Promise.all([
      Service.start(path.join(ctx.workDir, 'snapshot-service'), { ...store.env, REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
      generateSnapshotRepository(ctx.git, 'archives/snapshot-1g', targetBytes),
    ]);
    service = started;
    const generationMs = performance.now() - generationStart;
    ctx.log(
      `[${name}] upstream generated in ${round(generationMs / 1000, 1)} s: ${generated.textFiles} text files (${round(generated.textBytes / MiB)} MiB), ` +
        `${generated.binaryFiles} binary files (${round(generated.binaryBytes / MiB)} MiB)`,
    );

    const client = service.client;
    const projectId = await createProject(client, name);
    const cloneStart = performance.now();
    const globalId = await addRepository(client, projectId, generated.upstream.url, 'NONE');
    const repositoryId = dbId(globalId);
    await waitForAllSynced(service, 1);
    const cloneMs = performance.now() - cloneStart;
    const workingCopy = path.join(ctx.workDir, 'snapshot-service', 'repos', repositoryId);
    const size = await folderSize(workingCopy);
    const [head] = await service.query<{ sha: string }>(`SELECT "lastCommitSha" AS sha FROM "Repository" WHERE id = $1`, [repositoryId]);
    const key = `repos/${repositoryId}/${head!.sha}.tar.gz`;
    ctx.log(
      `[${name}] synced (archivePolicy NONE) in ${round(cloneMs / 1000, 1)} s: working copy ${round(size.bytes / MiB)} MiB ` +
        `(.git ${round(size.gitBytes / MiB)} MiB), ${size.files} files`,
    );

    // First archive, untimed: every blob and the manifest (the measured runs then upload only their manifest).
    await client.request(UpdateRepositoryDocument, { input: { repositoryId: globalId, archivePolicy: 'EACH_SYNC' } });
    const primeBefore = await archiveMetrics(service);
    const prime = await syncAndWait(service, globalId);
    const primed = metricsDelta(primeBefore, await archiveMetrics(service));
    if (prime.run.status !== 'SKIPPED' || primed.snapshots !== 1 || primed.failed) {
      throw new Error(`first archive: run ${prime.run.status}, ${JSON.stringify(primed)}`);
    }
    ctx.log(
      `[${name}] first archive in ${round(prime.ms / 1000, 1)} s: artifacts ${round(primed.artifactsSeconds, 1)} s ` +
        `(${primed.blobs} blobs), snapshot ${round(primed.snapshotSeconds, 1)} s`,
    );

    const runs = ctx.runs(3);
    const warmup = ctx.warmup(0);
    const ours: number[] = [];
    const baseline: number[] = [];
    const oursDetails: Record<string, number>[] = [];
    const baselineDetails: Record<string, number>[] = [];
    for (let iteration = 0; iteration < warmup + runs; iteration++) {
      const side = {
        ours: async () => {
          // What makes the server produce and upload the snapshot again: no object under its key, no archiveUrl naming it.
          await store.client.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key }));
          await service!.query(`UPDATE "Repository" SET "s3ArchiveUrl" = NULL WHERE id = $1`, [repositoryId]);
          const rssBefore = await restingRssMb(service!);
          const before = await archiveMetrics(service!);
          const sampler = sampleRss(service!);
          const { run, ms } = await syncAndWait(service!, globalId);
          const rss = await sampler.stop();
          const delta = metricsDelta(before, await archiveMetrics(service!));
          if (run.status !== 'SKIPPED' || delta.snapshots !== 1 || delta.snapshotCount !== 1 || delta.failed) {
            throw new Error(`run ${run.status}: ${JSON.stringify(delta)}`);
          }
          const stored = await store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key }));
          return {
            ms: delta.snapshotSeconds * 1000,
            detail: {
              archiving_phase_ms: archivingMs(run),
              artifacts_ms: round(delta.artifactsSeconds * 1000),
              blobs_uploaded: delta.blobs,
              run_wall_ms: round(ms),
              snapshot_mb: round((stored.ContentLength ?? 0) / MiB, 1),
              rss_before_mb: round(rssBefore, 1),
              rss_max_mb: round(rss.maxMb, 1),
              rss_growth_mb: round(rss.maxMb - rssBefore, 1),
              rss_samples: rss.samples,
            },
          };
        },
        baseline: async () => {
          let bytes = 0;
          const ms = await timed(async () => (bytes = Number(await shell('tar czf - -C "$1" . | wc -c', [workingCopy]))));
          return { ms, detail: { compressed_mb: round(bytes / MiB, 1) } };
        },
      };
      // Alternating which side goes first, as measure() does: neither always meets the page cache as the other left it.
      const oursFirst = iteration % 2 === 0;
      const first = oursFirst ? await side.ours() : await side.baseline();
      const second = oursFirst ? await side.baseline() : await side.ours();
      const [o, b] = (oursFirst ? [first, second] : [second, first]) as [Awaited<ReturnType<typeof side.ours>>, Awaited<ReturnType<typeof side.baseline>>];
      const warm = iteration < warmup;
      if (!warm) {
        ours.push(o.ms);
        baseline.push(b.ms);
        oursDetails.push(o.detail);
        baselineDetails.push(b.detail);
      }
      const label = warm ? `warm-up ${iteration + 1}/${warmup}` : `run ${iteration - warmup + 1}/${runs}`;
      ctx.log(
        `[${name}] ${label}: ours ${round(o.ms)} ms (archiving phase ${o.detail.archiving_phase_ms} ms, RSS +${o.detail.rss_growth_mb} MB), ` +
          `baseline ${round(b.ms)} ms`,
      );
    }

    const rssGrowth = Math.max(...oursDetails.map((detail) => detail.rss_growth_mb ?? 0));
    return benchResult(name, 1.3, { ours, baseline }, {
      checks: [{ metric: 'rss_growth_mb', value: rssGrowth, max: 64 }],
      repository: {
        text_files: generated.textFiles,
        text_mb: round(generated.textBytes / MiB),
        binary_files: generated.binaryFiles,
        binary_mb: round(generated.binaryBytes / MiB),
        working_copy_mb: round(size.bytes / MiB),
        dot_git_mb: round(size.gitBytes / MiB),
        working_copy_files: size.files,
      },
      setup_ms: { generate: round(generationMs), clone: round(cloneMs), first_archive: round(prime.ms) },
      first_archive: {
        artifacts_ms: round(primed.artifactsSeconds * 1000),
        snapshot_ms: round(primed.snapshotSeconds * 1000),
        blobs_uploaded: primed.blobs,
      },
      ours_detail: medianOf(oursDetails),
      ours_runs: oursDetails,
      baseline_detail: medianOf(baselineDetails),
      snapshot_mb_per_s: round((size.bytes / MiB) / (median(ours) / 1000), 1),
      baseline_mb_per_s: round((size.bytes / MiB) / (median(baseline) / 1000), 1),
      server_warnings: service.warnings,
      ...(service.warnings ? { server_output: service.lastOutput(10) } : {}),
    });
  } finally {
    await service?.stop();
    await store.stop();
  }
}

interface GeneratedRepository {
  upstream: Upstream;
  textFiles: number;
  textBytes: number;
  binaryFiles: number;
  binaryBytes: number;
}

/**
 * A one-commit repository whose working copy (files + .git) is about
 * `targetBytes`: source-like text files (1–100 KB, an identifier vocabulary,
 * gzip ~3–4x) and incompressible binary files (random bytes, 256 KB–4 MB),
 * written straight into a bare repository with `git fast-import`. Random bytes
 * take their size twice (file and pack) and text about 1.35x (file and its
 * zlib-compressed blob), so ~15 % of the content as random bytes makes ~30 %
 * of the working copy's bytes incompressible.
 */
export async function generateSnapshotRepository(server: GitServer, name: string, targetBytes: number): Promise<GeneratedRepository> {
  const random = mulberry32(0x5eed);
  const binaryBudget = Math.round(targetBytes * 0.15);
  const textBudget = Math.round((targetBytes - 2 * binaryBudget) / 1.36);

  const upstream = new Upstream(server, name, 'main');
  await mkdir(path.dirname(upstream.bareDir), { recursive: true });
  await git(['init', '-q', '--bare', '--initial-branch=main', upstream.bareDir]);
  // No delta search when serving the clone (fast-import already wrote the pack): the upstream's CPU is not what is measured.
  await appendFile(path.join(upstream.bareDir, 'config'), '[pack]\n\twindow = 0\n');

  // --depth=0: no deltas between unrelated blobs (fast-import tries each blob against the previous one).
  const child = spawn('git', ['fast-import', '--quiet', '--depth=0'], {
    cwd: upstream.bareDir,
    env: gitEnv({ MALLOC_TOP_PAD_: String(64 * MiB) }),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'close') as Promise<[number | null]>;
  const write = async (chunk: string | Buffer) => {
    if (!child.stdin.write(chunk)) await once(child.stdin, 'drain');
  };

  const ident = `RepoLens Fixture <fixture@repolens.test> ${Date.UTC(2024, 0, 1) / 1000} +0000`;
  const message = 'import of a large repository\n';
  await write(`commit refs/heads/main\nmark :1\nauthor ${ident}\ncommitter ${ident}\ndata ${Buffer.byteLength(message)}\n${message}`);
  const pool = linePool(random, 100_000);
  const entry = async (file: string, content: Buffer) => {
    await write(`M 100644 inline ${file}\ndata ${content.length}\n`);
    await write(content);
    await write('\n');
  };

  let textFiles = 0;
  let textBytes = 0;
  while (textBytes < textBudget) {
    // Mostly small files, a few large ones (1 KB to ~100 KB, median ~12 KB).
    const size = Math.min(textBudget - textBytes, Math.round(1024 * Math.exp(random() * Math.log(100))));
    const content = textFile(random, pool, Math.max(size, 64));
    const package_ = textFiles % 40;
    const folder = Math.floor(textFiles / 40) % 16;
    await entry(`packages/pkg-${package_}/src/${WORDS[folder % WORDS.length]}-${folder}/file-${textFiles}.ts`, content);
    textFiles++;
    textBytes += content.length;
  }
  let binaryFiles = 0;
  let binaryBytes = 0;
  while (binaryBytes < binaryBudget) {
    const size = Math.min(binaryBudget - binaryBytes, Math.round(256 * 1024 * Math.exp(random() * Math.log(16))));
    const extension = ['png', 'jpg', 'woff2', 'zip', 'bin'][binaryFiles % 5];
    await entry(`assets/${WORDS[binaryFiles % WORDS.length]}/asset-${binaryFiles}.${extension}`, randomBytes(Math.max(size, 1024)));
    binaryFiles++;
    binaryBytes += Math.max(size, 1024);
  }
  await write('\n');
  child.stdin.end();
  const [code] = await exited;
  if (code !== 0) throw new Error(`git fast-import exited ${code}: ${stderr}`);
  return { upstream, textFiles, textBytes, binaryFiles, binaryBytes };
}

const WORDS = (
  'core util api model view store route config client server parse format stream buffer cache queue worker index ' +
  'auth user session token event handler service adapter driver schema types errors logger metrics tests'
).split(' ');

const SYLLABLES = (
  're po sync lens fet ch com mit bra nch tre blo ob par se for mat str eam buf fer que ue wor ker ind ex ' +
  'han dle ser vi ce ada pt dri ve sch ema ty pe err or log ger met ric val ue res ult ite m'
).split(' ');

/** Code-like lines built from a vocabulary of a few thousand identifiers. */
function linePool(random: () => number, count: number): string[] {
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const identifiers = Array.from({ length: 4000 }, () => {
    const parts = Array.from({ length: 2 + Math.floor(random() * 3) }, () => pick(SYLLABLES));
    return parts.map((part, index) => (index === 0 ? part : part[0]!.toUpperCase() + part.slice(1))).join('');
  });
  const types = ['string', 'number', 'boolean', 'Buffer', 'Promise<void>', 'Repository', 'SyncRun', 'Record<string, unknown>'];
  const id = () => pick(identifiers);
  const templates: (() => string)[] = [
    () => `const ${id()} = ${id()}(${id()}, ${Math.floor(random() * 1000)});`,
    () => `const ${id()} = await ${id()}.${id()}(${id()});`,
    () => `if (${id()}.${id()} === '${id()}') {`,
    () => `return ${id()}.${id()}(${id()}, ${id()});`,
    () => `// ${Array.from({ length: 3 + Math.floor(random() * 8) }, id).join(' ')}`,
    () => `}`,
    () => `import { ${id()}, ${id()} } from './${id()}.js';`,
    () => `export function ${id()}(${id()}: ${pick(types)}, ${id()}: ${pick(types)}): ${pick(types)} {`,
    () => `${id()}.${id()} = ${id()} ?? ${id()}.${id()};`,
    () => `throw new Error(\`${id()} ${id()} \${${id()}}\`);`,
    () => `for (const ${id()} of ${id()}.${id()}) ${id()}.push(${id()});`,
    () => ``,
  ];
  return Array.from({ length: count }, () => '  '.repeat(Math.floor(random() * 4)) + pick(templates)());
}

function textFile(random: () => number, pool: readonly string[], bytes: number): Buffer {
  const lines: string[] = [];
  let length = 0;
  while (length < bytes) {
    const line = pool[Math.floor(random() * pool.length)]!;
    lines.push(line);
    length += line.length + 1;
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}


// ---------------------------------------------------------------------------
// artifacts-incremental

/**
 * Per-file artifacts of a 10,000-file repository: the first archive
 * (addRepository with EACH_SYNC: every blob and the manifest), then one
 * changed file per run (upstream commit, syncRepository). Ours is a later
 * pass's artifacts time (repolens_archive_duration_seconds{part="artifacts"}),
 * compared with the first pass's: the "baseline" here is the full upload of
 * the same tree, and the target says an incremental pass costs a small
 * fraction of it. A later pass must upload exactly 2 objects (the changed
 * blob and the manifest), counted by the metrics and in the bucket.
 */
export async function artifactsIncremental(ctx: BenchContext): Promise<BenchResult> {
  const name = 'artifacts-incremental';
  const repository = { files: ctx.scale(10_000), commits: 5 };
  const store = await startStore('bench-artifacts');
  let service: Service | undefined;
  try {
    const [started, upstream] = await Promise.all([
      Service.start(path.join(ctx.workDir, 'artifacts-service'), { ...store.env, REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
      generateLargeRepository(ctx.git, 'archives/artifacts-10k', repository),
    ]);
    service = started;
    const distinctBlobs = Number(await shell('git -C "$1" ls-tree -r main | cut -d" " -f3 | cut -f1 | sort -u | wc -l', [upstream.bareDir]));
    const client = service.client;
    const projectId = await createProject(client, name);

    // First pass: the initial sync archives every blob, the manifest and the snapshot before the repository is SYNCED.
    const firstBefore = await archiveMetrics(service);
    const firstStart = performance.now();
    const globalId = await addRepository(client, projectId, upstream.url, 'EACH_SYNC');
    const repositoryId = dbId(globalId);
    await waitForAllSynced(service, 1);
    const firstWallMs = performance.now() - firstStart;
    const first = metricsDelta(firstBefore, await archiveMetrics(service));
    const [firstRun] = await runsAfter(service, 'epoch');
    const blobsPrefix = `repos/${repositoryId}/blobs/`;
    const manifestsPrefix = `repos/${repositoryId}/manifests/`;
    const listed = { blobs: await countObjects(store, blobsPrefix), manifests: await countObjects(store, manifestsPrefix) };
    if (first.artifactsCount !== 1 || first.failed) throw new Error(`first pass: ${JSON.stringify(first)}`);
    const firstObjects = first.blobs + first.manifests;
    const firstMs = first.artifactsSeconds * 1000;
    ctx.log(
      `[${name}] first pass (${repository.files} files, ${distinctBlobs} distinct blobs): artifacts ${round(firstMs)} ms, ` +
        `${first.blobs} blobs + ${first.manifests} manifest uploaded; bucket holds ${listed.blobs} blobs, ${listed.manifests} manifests`,
    );

    const runs = ctx.runs(3);
    const warmup = ctx.warmup(0);
    const ours: number[] = [];
    const details: Record<string, number>[] = [];
    let bucket = listed;
    for (let iteration = 0; iteration < warmup + runs; iteration++) {
      const changed = `packages/pkg-${iteration % 25}/src/module-0/file-${iteration % 25}.ts`;
      await upstream.commit({ [changed]: `export const change = ${iteration}; // ${Date.now()} ${randomBytes(8).toString('hex')}\n` }, `change ${iteration}`);
      const before = await archiveMetrics(service);
      const { run, ms } = await syncAndWait(service, globalId);
      const delta = metricsDelta(before, await archiveMetrics(service));
      if (run.status !== 'SUCCEEDED' || delta.artifactsCount !== 1 || delta.failed) throw new Error(`run ${run.status}: ${JSON.stringify(delta)}`);
      const now = { blobs: await countObjects(store, blobsPrefix), manifests: await countObjects(store, manifestsPrefix) };
      const detail = {
        artifacts_ms: round(delta.artifactsSeconds * 1000, 1),
        objects_uploaded: delta.blobs + delta.manifests,
        blobs_uploaded: delta.blobs,
        manifests_uploaded: delta.manifests,
        bucket_objects_added: now.blobs - bucket.blobs + (now.manifests - bucket.manifests),
        snapshot_ms: round(delta.snapshotSeconds * 1000),
        archiving_phase_ms: archivingMs(run),
        run_wall_ms: round(ms),
      };
      bucket = now;
      const warm = iteration < warmup;
      if (!warm) {
        ours.push(delta.artifactsSeconds * 1000);
        details.push(detail);
      }
      const label = warm ? `warm-up ${iteration + 1}/${warmup}` : `run ${iteration - warmup + 1}/${runs}`;
      ctx.log(
        `[${name}] ${label}: artifacts ${detail.artifacts_ms} ms, ${detail.objects_uploaded} objects uploaded ` +
          `(bucket +${detail.bucket_objects_added}), archiving phase ${detail.archiving_phase_ms} ms`,
      );
    }

    const secondObjects = Math.max(...details.map((detail) => detail.objects_uploaded ?? 0));
    const bucketAdded = Math.max(...details.map((detail) => detail.bucket_objects_added ?? 0));
    // The "baseline" is the first (full) pass over the same tree, measured once.
    return benchResult(name, 0.1, { ours, baseline: [firstMs] }, {
      checks: [
        { metric: 'second_pass_objects', value: secondObjects, min: 2, max: 2 },
        { metric: 'second_pass_bucket_objects_added', value: bucketAdded, min: 2, max: 2 },
        { metric: 'first_pass_objects', value: firstObjects, min: distinctBlobs + 1, max: distinctBlobs + 1 },
        { metric: 'first_pass_bucket_objects', value: listed.blobs + listed.manifests, min: distinctBlobs + 1, max: distinctBlobs + 1 },
      ],
      ratio_is: 'second-pass artifacts time / first-pass artifacts time',
      repository: { ...repository, distinct_blobs: distinctBlobs },
      first_pass: {
        artifacts_ms: round(firstMs),
        blobs_uploaded: first.blobs,
        manifests_uploaded: first.manifests,
        snapshot_ms: round(first.snapshotSeconds * 1000),
        archiving_phase_ms: firstRun ? archivingMs(firstRun) : null,
        add_to_synced_ms: round(firstWallMs),
        ms_per_blob: round(firstMs / Math.max(1, first.blobs), 2),
      },
      second_pass: medianOf(details),
      second_pass_runs: details,
      server_warnings: service.warnings,
      ...(service.warnings ? { server_output: service.lastOutput(10) } : {}),
    });
  } finally {
    await service?.stop();
    await store.stop();
  }
}
