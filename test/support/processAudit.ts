import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * What the child processes of a server saw on their command lines, two ways:
 *
 * - shims: `git` and `tar` scripts put first on the server's PATH. Each appends its whole argv
 *   (NUL-separated) to a file of its own, then execs the real program found on PATH after it, so
 *   every git and tar the server spawns is recorded, however short-lived.
 * - a watcher process sampling /proc/<pid>/cmdline of every descendant of the server (git's own
 *   children: git-remote-http, index-pack, the credential helper's shell…) every ~25 ms, from
 *   its own process so that the sampling does not compete with the test's event loop.
 */

export interface ShimInvocation {
  /** The file the shim wrote (for messages). */
  file: string;
  argv: string[];
}

export interface ProgramShims {
  /** Put this first on the server's PATH. */
  readonly binDir: string;
  /** Every invocation recorded so far. */
  invocations(): Promise<ShimInvocation[]>;
}

function which(program: string): string {
  return execFileSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).trim();
}

export async function createProgramShims(dir: string, programs: string[] = ['git', 'tar']): Promise<ProgramShims> {
  const binDir = path.join(dir, 'bin');
  const argvDir = path.join(dir, 'argv');
  await mkdir(binDir, { recursive: true });
  await mkdir(argvDir, { recursive: true });
  const bash = which('bash');
  for (const program of programs) {
    const real = which(program);
    // $$ alone could repeat (pids are reused); $RANDOM twice makes a clash negligible.
    const script = [
      `#!${bash}`,
      `f=${JSON.stringify(argvDir)}/${program}.$$.$RANDOM$RANDOM`,
      `printf '%s\\0' ${program} "$@" > "$f"`,
      `exec ${JSON.stringify(real)} "$@"`,
      '',
    ].join('\n');
    await writeFile(path.join(binDir, program), script);
    await chmod(path.join(binDir, program), 0o755);
  }
  return {
    binDir,
    async invocations() {
      const files = (await readdir(argvDir)).sort();
      return Promise.all(
        files.map(async (name) => {
          const raw = await readFile(path.join(argvDir, name), 'utf8');
          return { file: name, argv: raw.split('\0').slice(0, -1) };
        }),
      );
    },
  };
}

// Reads only /proc entries it has not seen (and re-reads the command lines of the descendants:
// an exec, such as the shim's, changes them), so a scan costs little on a busy machine.
const WATCHER = `
const fs = require('node:fs');
const roots = new Set();
const ours = new Set();
const seen = new Set();
const known = new Set();
const cmdlines = new Map();
let scans = 0;
function stat(pid) {
  try {
    const text = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return null; }
}
function scan() {
  const pids = fs.readdirSync('/proc').filter((entry) => /^[0-9]+$/.test(entry)).map(Number).sort((a, b) => a - b);
  const fresh = pids.filter((pid) => !known.has(pid));
  for (let changed = true; changed; ) {
    changed = false;
    for (const pid of fresh) {
      if (ours.has(pid)) continue;
      const parent = stat(pid);
      if (roots.has(pid) || (parent !== null && ours.has(parent))) { ours.add(pid); changed = true; }
    }
  }
  for (const pid of fresh) known.add(pid);
  for (const pid of ours) {
    let cmdline;
    try { cmdline = fs.readFileSync('/proc/' + pid + '/cmdline', 'latin1'); } catch { ours.delete(pid); continue; }
    if (!cmdline) continue;
    seen.add(pid);
    cmdlines.set(cmdline, (cmdlines.get(cmdline) ?? 0) + 1);
  }
  scans++;
}
let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  const lines = buffered.split('\\n');
  buffered = lines.pop();
  for (const line of lines) if (/^[0-9]+$/.test(line)) { roots.add(Number(line)); ours.add(Number(line)); known.delete(Number(line)); }
  scan();
  process.stdout.write('ok\\n');
});
process.stdin.on('end', () => {
  clearInterval(timer);
  scan();
  process.stdout.write(JSON.stringify({ cmdlines: [...cmdlines.keys()], processes: seen.size, scans }) + '\\n');
});
const timer = setInterval(scan, 25);
scan();
process.stdout.write('ready\\n');
`;

export interface WatchedProcesses {
  /** Distinct command lines (arguments NUL-separated, as in /proc). */
  cmdlines: string[];
  /** Distinct processes seen. */
  processes: number;
  scans: number;
}

export interface ProcessWatcher {
  /** Also watches this process and its descendants (from the next scan on). */
  addRoot(pid: number): Promise<void>;
  stop(): Promise<WatchedProcesses>;
}

export async function watchProcesses(): Promise<ProcessWatcher> {
  const child = spawn(process.execPath, ['-e', WATCHER], { env: { PATH: process.env.PATH }, stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  const waiters: (() => void)[] = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    let newline: number;
    while ((newline = output.indexOf('\n')) >= 0 && !output.startsWith('{')) {
      output = output.slice(newline + 1);
      waiters.shift()?.();
    }
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const next = () => new Promise<void>((resolve) => waiters.push(resolve));
  await next(); // ready
  return {
    async addRoot(pid) {
      const acknowledged = next();
      child.stdin.write(`${pid}\n`);
      await acknowledged;
    },
    async stop() {
      child.stdin.end();
      await exited;
      return JSON.parse(output) as WatchedProcesses;
    },
  };
}
