import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { CodeGraph } from '../src/indexing/codeGraph.js';
import { Indexer } from '../src/indexing/indexer.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { openDatabase, type Database } from '../src/storage/database.js';
import { Git } from '../src/sync/git.js';
import { databaseUrl, serverUrl } from '../test/support/database.js';
import { git } from '../test/support/gitFixtures.js';
import { startNeo4j, type Neo4jServer } from '../test/support/neo4j.js';
import type { BenchContext } from './context.js';
import { benchResult, type BenchResult } from './report.js';
import { median, round } from './timing.js';

/**
 * The INDEXING phase on its own (SPEC §1; metadata in PostgreSQL, code graph in
 * a real Neo4j 5.26 Community server, its JVM tuned as Neo4j's start script
 * does rather than for quick test starts), over a generated TypeScript repository:
 * what a sync costs beyond the git transfer once the working copy is there.
 */
interface IndexWorld {
  neo4j: Neo4jServer;
  graph: CodeGraph;
  db: Database;
  indexer: Indexer;
  repositoryId: string;
  cwd: string;
  files: number;
  /** The generated commit, and one that changes a single file of it. */
  base: string;
  changed: string;
  close(): Promise<void>;
}

/** One realistic module: imports (in-repository and external), an interface, a type, functions, a class with methods. */
function moduleSource(index: number, files: number, version = 0): string {
  const other = (index * 7919 + 1) % files;
  return [
    `import { helper${other} } from '../mod-${other % 100}/file-${other}';`,
    "import { z } from 'zod';",
    `export interface Shape${index} {`,
    '  id: number;',
    '  name: string;',
    '}',
    `export type Id${index} = string | number;`,
    `export const schema${index} = z.object({ id: z.number() });`,
    `export function compute${index}(input: Shape${index}): number {`,
    '  let total = 0;',
    `  for (let k = 0; k < input.id; k++) total += k * ${(index % 7) + version};`,
    `  return total + helper${other}();`,
    '}',
    `export class Service${index} {`,
    '  private count = 0;',
    '  run(value: number): number {',
    '    this.count += value;',
    '    return this.count;',
    '  }',
    '  reset(): void {',
    '    this.count = 0;',
    '  }',
    '}',
    `export const helper${index} = () => ${index};`,
    '',
  ].join('\n');
}

async function generateRepository(dir: string, files: number): Promise<{ base: string; changed: string }> {
  await mkdir(dir, { recursive: true });
  await git(['init', '-q', '--initial-branch=main', dir]);
  for (let folder = 0; folder < Math.min(100, files); folder++) await mkdir(path.join(dir, 'src', `mod-${folder}`), { recursive: true });
  for (let index = 0; index < files; index++) {
    await writeFile(path.join(dir, 'src', `mod-${index % 100}`, `file-${index}.ts`), moduleSource(index, files));
  }
  await writeFile(path.join(dir, 'README.md'), '# generated\n');
  await git(['add', '-A'], { cwd: dir });
  await git(['commit', '-q', '-m', 'generated'], { cwd: dir });
  const base = await git(['rev-parse', 'HEAD'], { cwd: dir });
  const target = Math.floor(files / 2);
  await writeFile(path.join(dir, 'src', `mod-${target % 100}`, `file-${target}.ts`), moduleSource(target, files, 1));
  await git(['commit', '-q', '-am', 'one file changed'], { cwd: dir });
  const changed = await git(['rev-parse', 'HEAD'], { cwd: dir });
  return { base, changed };
}

/** Shared by both benchmarks: the repository, Neo4j, a PostgreSQL database and an Indexer. */
async function setUp(ctx: BenchContext): Promise<IndexWorld> {
  const name = 'indexing';
  const files = ctx.scale(10_000);
  const cwd = path.join(ctx.workDir, `${name}-repo`);
  ctx.log(`[${name}] generating a ${files}-file TypeScript repository; starting Neo4j`);
  const [commits, neo4j] = await Promise.all([generateRepository(cwd, files), startNeo4j({ tuning: 'throughput' })]);
  const database = `repolens_bench_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${database}"`);
  await admin.end();
  const db = await openDatabase({ databaseUrl: databaseUrl(database), dataDir: ctx.workDir });
  await db.migrate();
  const graph = await CodeGraph.connect({ url: neo4j.url, user: neo4j.user, password: neo4j.password });
  const tenant = await db.prisma.tenant.create({ data: { name: `bench-${name}` } });
  const project = await db.prisma.project.create({ data: { tenantId: tenant.id, name: 'indexing' } });
  const repository = await db.prisma.repository.create({
    data: { tenantId: tenant.id, projectId: project.id, provider: 'GIT', name: 'generated', url: 'https://example.invalid/generated.git', host: 'example.invalid', branch: 'main' },
  });
  const indexer = new Indexer(db.prisma, new Git({ timeoutMs: 600_000, idleTimeoutMs: 600_000 }), graph, createLogger('silent'), createMetrics(async () => ({})), {
    maxFileBytes: 1024 * 1024,
  });
  return {
    neo4j,
    graph,
    db,
    indexer,
    repositoryId: repository.id,
    cwd,
    files,
    ...commits,
    async close() {
      await graph.close();
      await db.close();
      await neo4j.stop();
      const cleanup = new pg.Client({ connectionString: serverUrl });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

/** A from-scratch index of `sha`: the repository's metadata and graph removed first (untimed). */
async function indexFull(world: IndexWorld, sha: string): Promise<{ ms: number; timings: Record<string, number> }> {
  await world.db.prisma.repositoryMetadata.deleteMany({ where: { repositoryId: world.repositoryId } });
  await world.graph.removeRepository(world.repositoryId);
  const started = performance.now();
  const outcome = await world.indexer.index(world.repositoryId, world.cwd, sha);
  const ms = performance.now() - started;
  if (outcome.graph !== 'full' || outcome.metadata !== 'full' || outcome.warning) throw new Error(`expected a full index, got ${JSON.stringify(outcome)}`);
  return { ms, timings: outcome.timings };
}

async function indexIncremental(world: IndexWorld, sha: string): Promise<{ ms: number; filesRead: number; timings: Record<string, number> }> {
  const started = performance.now();
  const outcome = await world.indexer.index(world.repositoryId, world.cwd, sha);
  const ms = performance.now() - started;
  if (outcome.graph !== 'incremental' || outcome.metadata !== 'incremental' || outcome.warning) {
    throw new Error(`expected an incremental index, got ${JSON.stringify(outcome)}`);
  }
  return { ms, filesRead: outcome.filesRead, timings: outcome.timings };
}

/** What the graph holds after a full index: a sanity check that the work was done. */
async function graphCounts(world: IndexWorld): Promise<{ files: number; symbols: number; imports: number }> {
  const [row] = await world.graph.read<{ files: number; symbols: number; imports: number }>(
    `MATCH (f:File {repositoryId: $r})
     RETURN count(f) AS files, sum(COUNT { (f)-[:DEFINES]->() }) AS symbols, sum(COUNT { (f)-[:IMPORTS]->() }) AS imports`,
    { r: world.repositoryId },
  );
  return row!;
}

/**
 * index-full: a generated 10,000-file TypeScript repository indexed from
 * scratch (every file read from git, parsed with tree-sitter, imports
 * resolved, metadata counted, the graph written in one Neo4j transaction).
 * Baseline: the target's time budget, files ÷ 1,000 files/s, so ratio ≤ 1
 * means ≥ 1,000 files/s; files/s is also a check.
 */
export async function indexFullBench(ctx: BenchContext): Promise<BenchResult> {
  const world = await ctx.shared('indexing', () => setUp(ctx));
  {
    const runs = ctx.runs(3);
    // Two: the JVM's JIT compiles Neo4j's write path during the first couple of runs.
    const warmup = ctx.warmup(2);
    const ours: number[] = [];
    for (let iteration = 0; iteration < warmup + runs; iteration++) {
      const { ms, timings } = await indexFull(world, world.base);
      if (iteration >= warmup) ours.push(ms);
      ctx.log(`[index-full] ${iteration < warmup ? 'warm-up' : 'run'} ${iteration + 1}: ${round(ms)} ms (${round((world.files / ms) * 1000)} files/s) ${JSON.stringify(timings)}`);
    }
    const budget = world.files;
    const counts = await graphCounts(world);
    const filesPerSecond = (world.files / median(ours)) * 1000;
    return benchResult('index-full', 1, { ours, baseline: ours.map(() => budget) }, {
      checks: [{ metric: 'files_per_s', value: filesPerSecond, min: 1000 }],
      files: world.files,
      graph: counts,
      baseline_is: 'time budget at 1,000 files/s',
    });
  }
}

/**
 * index-incremental: the same repository with one file changed, indexed
 * incrementally (git diff, one file re-parsed, its symbols and edges
 * replaced, metadata adjusted), as a share of a from-scratch index of the
 * same repository measured in the same run (target ≤ 5%).
 */
export async function indexIncrementalBench(ctx: BenchContext): Promise<BenchResult> {
  const world = await ctx.shared('indexing', () => setUp(ctx));
  {
    const fullRuns = ctx.runs(3);
    const full: number[] = [];
    for (let iteration = 0; iteration < fullRuns + 1; iteration++) {
      const { ms } = await indexFull(world, world.base);
      if (iteration > 0) full.push(ms);
      ctx.log(`[index-incremental] full index ${iteration + 1}: ${round(ms)} ms`);
    }
    // The graph is at base; each run moves it one changed file forward or back.
    const runs = ctx.runs(10);
    const warmup = ctx.warmup(2);
    const ours: number[] = [];
    let filesRead = 0;
    for (let iteration = 0; iteration < warmup + runs; iteration++) {
      const target = iteration % 2 === 0 ? world.changed : world.base;
      const sample = await indexIncremental(world, target);
      filesRead = Math.max(filesRead, sample.filesRead);
      if (iteration >= warmup) ours.push(sample.ms);
      ctx.log(`[index-incremental] ${iteration < warmup ? 'warm-up' : 'run'} ${iteration + 1}: ${round(sample.ms)} ms ${JSON.stringify(sample.timings)}`);
    }
    const fullMedian = median(full);
    return benchResult('index-incremental', 0.05, { ours, baseline: full }, {
      // The changed file's old blob (metadata out) and new one (metadata in, parse).
      checks: [{ metric: 'blob_reads', value: filesRead, max: 3 }],
      files: world.files,
      full_index_ms: round(fullMedian),
      baseline_is: 'a from-scratch index of the same repository',
    });
  }
}
