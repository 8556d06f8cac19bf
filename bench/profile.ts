import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { round } from './timing.js';

/**
 * `tsx bench/profile.ts <file.cpuprofile>`: where a server's CPU went, from
 * the V8 profile a bench run wrote with BENCH_CPU_PROFILE_DIR. Self time by
 * package or source file, and inclusive time of the project's own functions.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const projectRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** node_modules/<package>, src/<file>, node:<module>, or V8's (program)/(garbage collector)/(idle). */
function bucketOf(frame: ProfileNode['callFrame']): string {
  const url = frame.url.replace(/^file:\/\//, '');
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules?.[1]) return modules[1];
  if (url.startsWith(projectRoot)) return path.relative(projectRoot, url);
  return url.replace(/^node:internal\/([^/]+).*/, 'node:$1');
}

function top(entries: Map<string, number>, total: number, count: number): string[] {
  return [...entries]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, micros]) => `  ${String(round(micros / 1000)).padStart(8)} ms  ${String(round((100 * micros) / total, 1)).padStart(5)}%  ${name}`);
}

async function main(file: string): Promise<void> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const micros = profile.timeDeltas[index] ?? 0;
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') return;
    total += micros;
    const bucket = bucketOf(node.callFrame);
    self.set(bucket, (self.get(bucket) ?? 0) + micros);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame?.url.includes(`${projectRoot}/src/`)) continue;
      const name = `${frame.functionName || '(anonymous)'} ${path.relative(projectRoot, frame.url.replace(/^file:\/\//, ''))}:${frame.lineNumber + 1}`;
      if (!seen.has(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + micros);
      seen.add(name);
    }
  });

  console.log(`${path.basename(file)}: ${round(total / 1000)} ms of CPU (idle excluded)\n\nself time by package / file:`);
  console.log(top(self, total, 25).join('\n'));
  console.log('\ninclusive time of src/ functions (synchronous stacks only):');
  console.log(top(inclusive, total, 25).join('\n'));
}

const file = process.argv[2];
if (!file) {
  console.error('usage: tsx bench/profile.ts <file.cpuprofile>');
  process.exit(1);
}
await main(file);
