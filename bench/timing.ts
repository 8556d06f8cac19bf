import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

/** Runs `task` over every item with at most `workers` at once (the baselines' "N parallel workers"). */
export async function inParallel<T>(items: readonly T[], workers: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await task(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, items.length) }, worker));
}

/** Wall-clock milliseconds of one call. */
export async function timed(task: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await task();
  return performance.now() - start;
}

/** Polls until `check` returns true; throws with `describe()` past the timeout. */
export async function waitUntil(
  check: () => Promise<boolean>,
  options: { intervalMs: number; timeoutMs: number; describe: () => Promise<string> | string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${options.timeoutMs} ms: ${await options.describe()}`);
    await sleep(options.intervalMs);
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Median of numbers, or key by key of (nested) records of numbers, e.g. one breakdown per run. */
export function medianOf<T>(values: readonly T[]): T {
  const present = values.filter((value) => value !== undefined && value !== null);
  if (present.every((value) => typeof value === 'number')) return round(median(present as number[]), 1) as T;
  const records = present as readonly Record<string, unknown>[];
  const keys = [...new Set(records.flatMap((record) => Object.keys(record)))];
  return Object.fromEntries(keys.map((key) => [key, medianOf(records.map((record) => record[key]))])) as T;
}

export function round(value: number, digits = 0): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
