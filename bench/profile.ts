import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { round } from './timing.js';

/**
 * `tsx bench/profile.ts <file.cpuprofile>`: where a server's CPU went, from
 * the V8 profile a bench run wrote with BENCH_CPU_PROFILE_DIR. Self time by
 * package or source file, inclusive time by package, and inclusive time of
 * the project's own functions; optionally only between two offsets (seconds
 * from the profile's start), e.g. a measured window.
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

async function main(file: string, fromS: number, toS: number): Promise<void> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let total = 0;
  let elapsed = 0;
  profile.samples.forEach((id, index) => {
    const micros = profile.timeDeltas[index] ?? 0;
    elapsed += micros;
    if (elapsed < fromS * 1e6 || elapsed >= toS * 1e6) return;
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') return;
    total += micros;
    const bucket = bucketOf(node.callFrame);
    self.set(bucket, (self.get(bucket) ?? 0) + micros);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame) continue;
      const owner = bucketOf(frame);
      if (!seen.has(`package ${owner}`)) byPackage.set(owner, (byPackage.get(owner) ?? 0) + micros);
      seen.add(`package ${owner}`);
      if (!frame.url.includes(`${projectRoot}/src/`) && !frame.url.includes(`${projectRoot}/dist/`)) continue;
      const name = `${frame.functionName || '(anonymous)'} ${path.relative(projectRoot, frame.url.replace(/^file:\/\//, ''))}:${frame.lineNumber + 1}`;
      if (!seen.has(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + micros);
      seen.add(name);
    }
  });

  const window = Number.isFinite(toS) ? ` between ${fromS} s and ${toS} s` : '';
  console.log(`${path.basename(file)}: ${round(total / 1000)} ms of CPU${window} (idle excluded)\n\nself time by package / file:`);
  console.log(top(self, total, 25).join('\n'));
  console.log('\ninclusive time by package / file:');
  console.log(top(byPackage, total, 25).join('\n'));
  console.log('\ninclusive time of src/ functions (synchronous stacks only):');
  console.log(top(inclusive, total, 25).join('\n'));
}

const [file, from = '0', to = 'Infinity'] = process.argv.slice(2);
if (!file || !(Number(from) >= 0) || !(Number(to) > Number(from))) {
  console.error('usage: tsx bench/profile.ts <file.cpuprofile> [from-seconds to-seconds]');
  process.exit(1);
}
await main(file, Number(from), Number(to));
