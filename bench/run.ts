import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGitServer } from '../test/support/gitServer.js';
import { artifactsIncremental, snapshot1g } from './archives.js';
import type { BenchContext } from './context.js';
import { deltaVsFetch } from './delta.js';
import { incremental } from './incremental.js';
import { indexFullBench, indexIncrementalBench } from './indexing.js';
import { initialSync } from './initialSync.js';
import { noChange } from './noChange.js';
import { poll1000 } from './poll.js';
import { scale3 } from './scale.js';
import { formatDetails, formatTable, type BenchResult } from './report.js';
import { round } from './timing.js';
import { webhookAck, webhookFreshness, webhookStorm } from './webhooks.js';

/**
 * `npm run bench`: each benchmark against the raw git tool doing the same
 * work, both served by one local smart-HTTP git server in the same run.
 * BENCH_RUNS overrides every benchmark's measured run count, BENCH_WARMUP
 * its unmeasured ones before, BENCH_ONLY picks benchmarks by name, and
 * BENCH_SCALE scales every workload (e.g. 0.1 to check the bench itself quickly).
 * BENCH_CPU_PROFILE_DIR makes every server write a V8 CPU profile there
 * (summarise one with `tsx bench/profile.ts <file>`).
 */
const benchmarks: Record<string, (ctx: BenchContext) => Promise<BenchResult>> = {
  'initial-sync': initialSync,
  'incremental-100': incremental,
  'no-change-1000': noChange,
  'poll-1000': poll1000,
  'delta-vs-fetch': deltaVsFetch,
  'webhook-ack': webhookAck,
  'webhook-storm': webhookStorm,
  'webhook-freshness': webhookFreshness,
  'snapshot-1g': snapshot1g,
  'artifacts-incremental': artifactsIncremental,
  'index-full': indexFullBench,
  'index-incremental': indexIncrementalBench,
  'scale-3': scale3,
};

// Profiled servers run slower: their results go beside the profiles, not over bench/results.json.
const resultsPath = process.env.BENCH_CPU_PROFILE_DIR
  ? path.resolve(process.env.BENCH_CPU_PROFILE_DIR, 'results.json')
  : fileURLToPath(new URL('results.json', import.meta.url));

function nonNegativeInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return value;
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY?.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = only?.filter((name) => !(name in benchmarks)) ?? [];
  if (unknown.length) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; known: ${Object.keys(benchmarks).join(', ')}`);
  const selected = Object.entries(benchmarks).filter(([name]) => !only?.length || only.includes(name));
  const runs = nonNegativeInt('BENCH_RUNS');
  const warmup = nonNegativeInt('BENCH_WARMUP');
  const scale = Number(process.env.BENCH_SCALE || 1);
  if (!(scale > 0)) throw new Error(`BENCH_SCALE must be a positive number, got "${process.env.BENCH_SCALE}"`);
  const started = performance.now();
  const log = (message: string) => console.log(`${round((performance.now() - started) / 1000, 1)}s ${message}`);

  const workDir = await mkdtemp(path.join(tmpdir(), 'repolens-bench-'));
  const gitRoot = path.join(workDir, 'git');
  await mkdir(gitRoot);
  const gitServer = await startGitServer({ root: gitRoot });
  const shared = new Map<string, Promise<{ close(): Promise<void> }>>();
  const ctx: BenchContext = {
    git: gitServer,
    workDir,
    runs: (fallback) => (runs && runs > 0 ? runs : fallback),
    warmup: (fallback) => warmup ?? fallback,
    scale: (size) => Math.max(1, Math.round(size * scale)),
    log,
    shared: <T extends { close(): Promise<void> }>(key: string, create: () => Promise<T>) => {
      if (!shared.has(key)) shared.set(key, create());
      return shared.get(key)! as Promise<T>;
    },
  };

  const results: BenchResult[] = [];
  const failed: string[] = [];
  try {
    for (const [name, bench] of selected) {
      const loadBefore = round(loadavg()[0] ?? 0, 2);
      log(`[${name}] starting (1-min load average ${loadBefore})`);
      try {
        results.push({ ...(await bench(ctx)), load_avg_1m: loadBefore });
      } catch (error) {
        // One broken benchmark must not cost the others' results.
        failed.push(name);
        console.error(`[${name}] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    }
  } finally {
    for (const resource of shared.values()) await resource.then((value) => value.close()).catch(() => undefined);
    await gitServer.close();
    await rm(workDir, { recursive: true, force: true });
  }

  await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\n${formatTable(results)}\n`);
  for (const result of results) console.log(`${formatDetails(result)}\n`);
  console.log(`results written to ${path.relative(process.cwd(), resultsPath)} (${round((performance.now() - started) / 1000)} s)`);
  if (failed.length) {
    console.error(`failed: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
