import { median, round } from './timing.js';

/** A secondary bar a benchmark must meet besides its ratio (peak RSS, zero fetches…). */
export interface Check {
  metric: string;
  value: number;
  /** The value must be at most this… */
  max?: number;
  /** …and at least this. */
  min?: number;
}

export interface BenchResult {
  name: string;
  ours_ms: number;
  baseline_ms: number;
  ratio: number;
  /** Bar on the ratio; null: the ratio is reported, and only the checks decide. */
  target: number | null;
  pass: boolean;
  runs: number;
  ours_runs_ms: number[];
  baseline_runs_ms: number[];
  checks: (Check & { pass: boolean })[];
  [extra: string]: unknown;
}

/** Medians of both sides; the ratio and every check must hold for `pass`. */
export function benchResult(
  name: string,
  target: number | null,
  samples: { ours: number[]; baseline: number[] },
  extra: { checks?: Check[] } & Record<string, unknown> = {},
): BenchResult {
  const ours = median(samples.ours);
  const baseline = median(samples.baseline);
  const ratio = round(ours / baseline, 3);
  const checks = (extra.checks ?? []).map((check) => ({
    ...check,
    value: round(check.value, 1),
    pass: (check.max === undefined || check.value <= check.max) && (check.min === undefined || check.value >= check.min),
  }));
  return {
    name,
    ours_ms: round(ours),
    baseline_ms: round(baseline),
    ratio,
    target,
    pass: (target === null || ratio <= target) && checks.every((check) => check.pass),
    runs: samples.ours.length,
    ours_runs_ms: samples.ours.map((value) => round(value)),
    baseline_runs_ms: samples.baseline.map((value) => round(value)),
    ...extra,
    // Each bar's value also at the top level (peak_rss_mb, fetches), for readers of results.json.
    ...Object.fromEntries(checks.map((check) => [check.metric, check.value])),
    checks,
  };
}

export function formatTable(results: readonly BenchResult[]): string {
  const header = ['benchmark', 'runs', 'ours ms', 'baseline ms', 'ratio', 'target', 'other bars', 'result'];
  const rows = results.map((result) => [
    result.name,
    String(result.runs),
    String(result.ours_ms),
    String(result.baseline_ms),
    result.ratio.toFixed(2),
    result.target === null ? '-' : `≤ ${result.target}`,
    result.checks.map((check) => `${check.metric} ${check.value} (${bounds(check)})${check.pass ? '' : ' ✗'}`).join(', ') || '-',
    result.pass ? 'PASS' : 'MISS',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

function bounds(check: Check): string {
  return [check.min === undefined ? null : `≥ ${check.min}`, check.max === undefined ? null : `≤ ${check.max}`].filter(Boolean).join(', ');
}

/** The per-benchmark details worth reading under the table (phase breakdowns, request counts). */
export function formatDetails(result: BenchResult): string {
  const inTable = ['name', 'ours_ms', 'baseline_ms', 'ratio', 'target', 'pass', 'runs', 'checks', ...result.checks.map((check) => check.metric)];
  const skip = new Set(inTable);
  const lines = Object.entries(result)
    .filter(([key]) => !skip.has(key))
    .map(([key, value]) => `  ${key}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`);
  return [`${result.name}:`, ...lines].join('\n');
}
