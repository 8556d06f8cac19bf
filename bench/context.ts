import type { GitServer } from '../test/support/gitServer.js';
import { round } from './timing.js';

export interface BenchContext {
  /** The one smart-HTTP server both sides fetch from. */
  git: GitServer;
  /** Scratch folder for this bench run (data dirs, baseline clones). */
  workDir: string;
  /** Measured iterations: BENCH_RUNS when set, else the benchmark's default. */
  runs(fallback: number): number;
  /** Unmeasured iterations before them: BENCH_WARMUP when set, else the benchmark's default. */
  warmup(fallback: number): number;
  /** Scales a workload size by BENCH_SCALE (default 1; e.g. 0.1 for a quick check of the bench itself). */
  scale(size: number): number;
  log(message: string): void;
  /**
   * A resource several benchmarks of this run share (e.g. a server and a
   * generated repository), made on first use and closed when the run ends.
   */
  shared<T extends { close(): Promise<void> }>(key: string, create: () => Promise<T>): Promise<T>;
}

/** One side's work done once: how long it took (timed by the side itself) and what it observed. */
export interface Sample<Detail> {
  ms: number;
  detail: Detail;
}

export interface Samples<Ours, Baseline> {
  ours: number[];
  baseline: number[];
  oursDetails: Ours[];
  baselineDetails: Baseline[];
}

/**
 * Warm-up iterations, then measured ones; only the measured are returned.
 * The two sides alternate which goes first, so neither always meets a cold
 * (or warm) page cache or git server.
 */
export async function measure<Ours, Baseline>(
  ctx: BenchContext,
  name: string,
  options: {
    runs: number;
    warmup: number;
    /** Untimed, before both sides of an iteration (e.g. new upstream commits). */
    prepare?: (iteration: number) => Promise<void>;
    ours: (iteration: number) => Promise<Sample<Ours>>;
    baseline: (iteration: number) => Promise<Sample<Baseline>>;
  },
): Promise<Samples<Ours, Baseline>> {
  const samples: Samples<Ours, Baseline> = { ours: [], baseline: [], oursDetails: [], baselineDetails: [] };
  for (let iteration = 0; iteration < options.warmup + options.runs; iteration++) {
    await options.prepare?.(iteration);
    const oursFirst = iteration % 2 === 0;
    const first = oursFirst ? await options.ours(iteration) : await options.baseline(iteration);
    const second = oursFirst ? await options.baseline(iteration) : await options.ours(iteration);
    const [ours, baseline] = (oursFirst ? [first, second] : [second, first]) as [Sample<Ours>, Sample<Baseline>];
    const warm = iteration < options.warmup;
    if (!warm) {
      samples.ours.push(ours.ms);
      samples.baseline.push(baseline.ms);
      samples.oursDetails.push(ours.detail);
      samples.baselineDetails.push(baseline.detail);
    }
    const label = warm ? `warm-up ${iteration + 1}/${options.warmup}` : `run ${iteration - options.warmup + 1}/${options.runs}`;
    ctx.log(`[${name}] ${label}: ours ${round(ours.ms)} ms, baseline ${round(baseline.ms)} ms`);
  }
  return samples;
}
