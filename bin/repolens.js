#!/usr/bin/env -S node --max-semi-space-size=4
// --max-semi-space-size=4 (also in `npm start`): V8's young generation grows to 48 MB by default
// under the server's allocation rate; 12 MB keeps its memory near 200 MB at the same CPU cost.
// The service is written in TypeScript and runs as one compiled ESM file,
// dist/cli.mjs, (re)built here when missing or older than the sources, so
// `npm ci && npm start` needs no separate build step.
import { pathToFileURL } from 'node:url';
import { ensureBuilt } from '../scripts/build.mjs';

let entry;
try {
  entry = pathToFileURL(await ensureBuilt()).href;
} catch (error) {
  // A read-only installation cannot write the bundle: transpile at start-up instead.
  if (!['EACCES', 'EROFS', 'EPERM'].includes(error?.code)) throw error;
  const { register } = await import('tsx/esm/api');
  register();
  entry = new URL('../src/cli.ts', import.meta.url).href;
}
await import(entry);
