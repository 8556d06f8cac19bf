import path from 'node:path';
import type { ParserLanguage } from './parser.js';

/**
 * Import resolution for the code graph: a raw import specifier of a file (as
 * the parser read it) becomes an edge to a file of the same commit, the name
 * of an external module, or an unresolved import.
 *
 * Only the commit's paths decide (no file system, no tsconfig, no
 * site-packages), so the same commit always gives the same edges: what lets an
 * incremental index equal a full one.
 *
 * - TypeScript / JavaScript: a relative specifier (`./x`, `../x`) tries the
 *   path itself, then each extension of `scriptExtensions`, then the compiled
 *   extension's source (`./x.js` ⇒ `x.ts`, `x.tsx`), then `x/index.<ext>`. A
 *   bare specifier is an external package (`@scope/name` or `name`, a subpath
 *   dropped; `node:fs` kept whole). An absolute one, or one leaving the
 *   repository, is unresolved.
 * - Python: `a.b` (from `import a.b`) and `a.b#n` (from `from a.b import n`),
 *   leading dots for relative imports. A relative import resolves against the
 *   file's package (`n` as a submodule first, then the module itself or the
 *   package's `__init__.py`) or stays unresolved. An absolute one tries the
 *   repository root, `src/`, then the file's own folder (Python's script
 *   folder); otherwise it is the external package named by its first segment.
 * - Go, Java, Rust: external modules only (Go's import path, Java's package,
 *   Rust's crate; Rust `crate::`, `self::`, `super::` paths are internal and
 *   not resolved to files).
 */
export type ImportTarget = { kind: 'file'; path: string } | { kind: 'module'; name: string } | { kind: 'unresolved' };

const scriptExtensions = ['.ts', '.tsx', '.d.ts', '.js', '.jsx', '.mjs', '.cjs', '.mts', '.cts', '.json'];
/** `import './x.js'` in TypeScript names the compiled file: its sources are tried too. */
const compiledToSource: Record<string, string[]> = {
  '.js': ['.ts', '.tsx'],
  '.jsx': ['.tsx'],
  '.mjs': ['.mts'],
  '.cjs': ['.cts'],
};

/** Languages whose imports can name files of the repository (and so need re-resolving when paths come and go). */
export function resolvesToFiles(language: ParserLanguage): boolean {
  return language === 'typescript' || language === 'tsx' || language === 'javascript' || language === 'python';
}

/** Resolves one specifier of `fromPath` against the commit's paths. */
export function resolveImport(language: ParserLanguage, fromPath: string, specifier: string, paths: ReadonlySet<string>): ImportTarget {
  const plan = importCandidates(language, fromPath, specifier);
  for (const candidate of plan.candidates) if (paths.has(candidate)) return { kind: 'file', path: candidate };
  return plan.module ? { kind: 'module', name: plan.module } : { kind: 'unresolved' };
}

export interface ImportPlan {
  /** Repository paths tried in order; the first present wins. */
  candidates: string[];
  /** The external module it names when no candidate is present; null ⇒ unresolved. */
  module: string | null;
}

/** What resolving a specifier depends on: a file's imports change only when one of these paths comes or goes. */
export function importCandidates(language: ParserLanguage, fromPath: string, specifier: string): ImportPlan {
  switch (language) {
    case 'typescript':
    case 'tsx':
    case 'javascript':
      return scriptCandidates(fromPath, specifier);
    case 'python':
      return pythonCandidates(fromPath, specifier);
    case 'go':
      return { candidates: [], module: specifier || null };
    case 'java':
      return { candidates: [], module: javaPackage(specifier) };
    case 'rust':
      return { candidates: [], module: rustCrate(specifier) };
  }
}

function scriptCandidates(fromPath: string, specifier: string): ImportPlan {
  const relative = specifier === '.' || specifier === '..' || specifier.startsWith('./') || specifier.startsWith('../');
  if (!relative) {
    if (specifier.startsWith('/') || specifier === '') return { candidates: [], module: null };
    return { candidates: [], module: packageName(specifier) };
  }
  const base = inside(path.posix.join(path.posix.dirname(fromPath), specifier));
  if (base === null) return { candidates: [], module: null };
  const candidates: string[] = [];
  if (base !== '' && !specifier.endsWith('/')) {
    candidates.push(base);
    for (const extension of scriptExtensions) candidates.push(base + extension);
    const extension = path.posix.extname(base);
    for (const source of compiledToSource[extension] ?? []) candidates.push(base.slice(0, -extension.length) + source);
  }
  const folder = base === '' ? '' : `${base}/`;
  for (const extension of scriptExtensions) candidates.push(`${folder}index${extension}`);
  return { candidates, module: null };
}

/** `lodash/fp` ⇒ `lodash`; `@scope/name/sub` ⇒ `@scope/name`; `node:fs/promises` ⇒ `node:fs`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  if (specifier.startsWith('@') && parts.length >= 2) return `${parts[0]}/${parts[1]}`;
  return parts[0] ?? specifier;
}

function pythonCandidates(fromPath: string, specifier: string): ImportPlan {
  const hash = specifier.indexOf('#');
  const modulePart = hash < 0 ? specifier : specifier.slice(0, hash);
  const name = hash < 0 ? null : specifier.slice(hash + 1);
  const level = /^\.*/.exec(modulePart)![0].length;
  const dotted = modulePart.slice(level);
  const modulePath = dotted ? dotted.split('.').join('/') : '';
  const member = name && name !== '*' ? name : null;

  const within = (root: string): string[] => {
    const base = modulePath ? `${root}${modulePath}` : root.replace(/\/$/, '');
    const candidates: string[] = [];
    if (member) candidates.push(`${base ? `${base}/` : ''}${member}.py`, `${base ? `${base}/` : ''}${member}/__init__.py`);
    if (modulePath) candidates.push(`${base}.py`);
    candidates.push(`${base ? `${base}/` : ''}__init__.py`);
    return candidates;
  };

  if (level > 0) {
    let dir = path.posix.dirname(fromPath);
    for (let up = 1; up < level; up++) {
      if (dir === '.') return { candidates: [], module: null };
      dir = path.posix.dirname(dir);
    }
    return { candidates: within(dir === '.' ? '' : `${dir}/`), module: null };
  }
  if (!modulePath) return { candidates: [], module: null };
  const own = path.posix.dirname(fromPath);
  const roots = ['', 'src/', ...(own === '.' || own === 'src' ? [] : [`${own}/`])];
  // `import a.b` needs a.b itself; a package's __init__.py alone stands for it only as a package.
  const candidates = roots.flatMap(within);
  return { candidates, module: dotted.split('.')[0] ?? null };
}

/** `java.util.List` ⇒ `java.util`; `java.util.*` ⇒ `java.util`; `a.b.C.method` (static) ⇒ `a.b`. */
function javaPackage(specifier: string): string | null {
  const parts = specifier.split('.');
  const packageParts: string[] = [];
  for (const part of parts) {
    if (part === '*' || /^[A-Z]/.test(part)) break;
    packageParts.push(part);
  }
  return packageParts.length ? packageParts.join('.') : specifier || null;
}

/** `std::io::Read` ⇒ `std`; `crate::x`, `self::x`, `super::x` are internal ⇒ null. */
function rustCrate(specifier: string): string | null {
  const first = specifier.replace(/^::/, '').split('::')[0] ?? '';
  if (!first || first === 'crate' || first === 'self' || first === 'super' || first === 'Self') return null;
  return first;
}

/** A normalised repository path, or null when it leaves the repository. `''` is the root. */
function inside(joined: string): string | null {
  const normal = path.posix.normalize(joined);
  if (normal === '.' || normal === './') return '';
  if (normal === '..' || normal.startsWith('../') || normal.startsWith('/')) return null;
  return normal.replace(/\/$/, '');
}
