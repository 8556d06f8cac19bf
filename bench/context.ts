import type { GitServer } from '../test/support/gitServer.js';
import { round } from './timing.js';

export interface BenchContext {
  /** The one smart-HTTP server both sides fetch from. */
  git: GitServer;
  /** Scratch folder for this bench run (data dirs, baseline clones). */
  workDir: string;
  /** Measured iterations: BENCH_RUNS when set, else the benchmark's default. */
  runs(fallback: number): number;
  /** Unmeasured iterations before them (BENCH_WARMUP, default 1). */
  warmup: number;
  log(message: string): void;
}

export interface Side {
  /** Does the work once and returns its duration in ms (each side times exactly its own work). */
  (iteration: number): Promise<number>;
}

/**
 * Warm-up iterations, then measured ones. The two sides alternate which goes
 * first, so neither always meets a cold (or warm) page cache or git server.
 */
export async function measure(
  ctx: BenchContext,
  name: string,
  options: { runs: number; prepare?: (iteration: number) => Promise<void>; ours: Side; baseline: Side },
): Promise<{ ours: number[]; baseline: number[] }> {
  const samples = { ours: [] as number[], baseline: [] as number[] };
  const total = ctx.warmup + options.runs;
  for (let iteration = 0; iteration < total; iteration++) {
    await options.prepare?.(iteration);
    const order = iteration % 2 === 0 ? (['ours', 'baseline'] as const) : (['baseline', 'ours'] as const);
    const took = { ours: 0, baseline: 0 };
    for (const side of order) took[side] = await options[side](iteration);
    const warm = iteration < ctx.warmup;
    if (!warm) {
      samples.ours.push(took.ours);
      samples.baseline.push(took.baseline);
    }
    const label = warm ? `warm-up ${iteration + 1}/${ctx.warmup}` : `run ${iteration - ctx.warmup + 1}/${options.runs}`;
    ctx.log(`[${name}] ${label}: ours ${round(took.ours)} ms, baseline ${round(took.baseline)} ms`);
  }
  return samples;
}
