// Compiles the service into one ESM file, dist/cli.mjs (dependencies stay in
// node_modules). Running compiled JavaScript instead of transpiling at start-up
// keeps the server's memory and start time down. `bin/repolens.js` rebuilds
// when a source file is newer than the bundle, so the bundle never runs stale.
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const bundlePath = path.join(root, 'dist', 'cli.mjs');
const sourceDir = path.join(root, 'src');

async function newestSource(dir) {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestSource(file));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(file)).mtimeMs);
  }
  return newest;
}

export async function build() {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    write: false,
    entryPoints: [path.join(sourceDir, 'cli.ts')],
    outdir: path.dirname(bundlePath),
    outExtension: { '.js': '.mjs' },
    // Dynamic imports stay lazy: `--help` or a bad configuration loads neither the server nor Prisma.
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  // Several processes may start at once: each file appears whole (rename), never half-written.
  await mkdir(path.dirname(bundlePath), { recursive: true });
  const suffix = `.${process.pid}.${Date.now()}.tmp`;
  // The bundle last: its modification time says the build is complete.
  const outputs = [...result.outputFiles.filter((output) => output.path !== bundlePath), ...result.outputFiles.filter((output) => output.path === bundlePath)];
  for (const output of outputs) {
    await mkdir(path.dirname(output.path), { recursive: true });
    await writeFile(output.path + suffix, output.contents);
    await rename(output.path + suffix, output.path);
  }
  await removeOldChunks(new Set(outputs.map((output) => output.path)));
  return bundlePath;
}

/** Chunks of earlier builds, once no process started from them can still be loading them. */
async function removeOldChunks(current) {
  const dir = path.join(path.dirname(bundlePath), 'chunks');
  for (const name of await readdir(dir).catch(() => [])) {
    const file = path.join(dir, name);
    if (current.has(file)) continue;
    const info = await stat(file).catch(() => null);
    if (info && Date.now() - info.mtimeMs > 24 * 60 * 60_000) await rm(file, { force: true });
  }
}

/** The bundle's path, built first when it is missing or older than a source file. */
export async function ensureBuilt() {
  const built = await stat(bundlePath).then((info) => info.mtimeMs, () => -1);
  if (built < (await newestSource(sourceDir))) await build();
  return bundlePath;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await build();
}
