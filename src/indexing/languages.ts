import * as linguist from 'linguist-languages';
import type { Language } from 'linguist-languages';

/**
 * File classification for a repository's metadata (language breakdown, lines
 * of code, README and license), after GitHub's linguist: its language table
 * (the linguist-languages package) and the main rules of its vendor.yml,
 * documentation.yml and generated.rb, written here as our own patterns.
 *
 * Only the path (and, for generated files, the first bytes) decide: no
 * shebangs, no content heuristics, no .gitattributes overrides, so the same
 * commit always gives the same metadata.
 */
export type LanguageType = 'programming' | 'markup' | 'data' | 'prose';

/** A linguist language: its name as linguist spells it (e.g. "TypeScript", "C++", "TSX") and its type. */
export interface LanguageInfo {
  name: string;
  type: LanguageType;
}

const languageTypes: ReadonlySet<string> = new Set<LanguageType>(['programming', 'markup', 'data', 'prose']);

function isLanguageType(type: string): type is LanguageType {
  return languageTypes.has(type);
}

/**
 * Which language an extension claimed by several linguist languages means
 * (linguist itself decides those by content heuristics and a classifier; we
 * see only the path). A preference applies only while the language still
 * claims the extension; every other ambiguity goes to the claimant whose name
 * sorts first (case-folded, then ordinal: see `byName`).
 */
const extensionPreferences: Readonly<Record<string, string>> = {
  '.asc': 'AsciiDoc',
  '.asm': 'Assembly',
  '.cfg': 'INI',
  '.cs': 'C#',
  '.d': 'D',
  '.es': 'JavaScript',
  '.f': 'Fortran',
  '.for': 'Fortran',
  '.fs': 'F#',
  '.gd': 'GDScript',
  '.gts': 'Glimmer TS',
  '.h': 'C',
  '.hh': 'C++',
  '.html': 'HTML',
  '.json': 'JSON',
  '.l': 'Lex',
  '.m': 'Objective-C',
  '.md': 'Markdown',
  '.ml': 'OCaml',
  '.odin': 'Odin',
  '.php': 'PHP',
  '.pl': 'Perl',
  '.plist': 'XML Property List',
  '.pm': 'Perl',
  '.pro': 'QMake',
  '.properties': 'Java Properties',
  '.r': 'R',
  '.re': 'Reason',
  '.rs': 'Rust',
  '.s': 'Assembly',
  '.sc': 'Scala',
  '.sol': 'Solidity',
  '.spec': 'RPM Spec',
  '.sql': 'SQL',
  '.srt': 'SubRip Text',
  '.star': 'Starlark',
  '.t': 'Perl',
  '.tact': 'Tact',
  '.ts': 'TypeScript',
  '.tsp': 'TypeSpec',
  '.tsx': 'TSX',
  '.txt': 'Text',
  '.v': 'Verilog',
  '.vcf': 'vCard',
  '.yaml': 'YAML',
  '.yml': 'YAML',
};

/** The same for exact file names (only `.eslintrc`, `.releaserc` and `hosts` are shared in linguist's table). */
const fileNamePreferences: Readonly<Record<string, string>> = {
  '.eslintrc': 'JSON with Comments',
  '.releaserc': 'JSON',
};

/** The fallback order among claimants: case-folded name, then ordinal name (total and locale-independent). */
function byName(a: LanguageInfo, b: LanguageInfo): number {
  const foldedA = a.name.toLowerCase();
  const foldedB = b.name.toLowerCase();
  if (foldedA !== foldedB) return foldedA < foldedB ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function addClaim(claims: Map<string, LanguageInfo[]>, key: string, info: LanguageInfo): void {
  const list = claims.get(key);
  if (!list) claims.set(key, [info]);
  else if (!list.includes(info)) list.push(info);
}

function resolveClaims(claims: Map<string, LanguageInfo[]>, preferences: Readonly<Record<string, string>>): Map<string, LanguageInfo> {
  const resolved = new Map<string, LanguageInfo>();
  for (const [key, list] of claims) {
    const preferred = Object.hasOwn(preferences, key) ? list.find((info) => info.name === preferences[key]) : undefined;
    resolved.set(key, preferred ?? [...list].sort(byName)[0]!);
  }
  return resolved;
}

interface LanguageTables {
  /** Exact file name (as linguist lists it) → language. */
  fileNames: Map<string, LanguageInfo>;
  /** Lower-cased file name → language: the fallback for `MAKEFILE`, `dockerfile`. */
  foldedFileNames: Map<string, LanguageInfo>;
  /** Lower-cased extension with its dot (`.ts`, `.d.ts`, `.blade.php`) → language. */
  extensions: Map<string, LanguageInfo>;
}

function buildTables(): LanguageTables {
  const fileNameClaims = new Map<string, LanguageInfo[]>();
  const foldedFileNameClaims = new Map<string, LanguageInfo[]>();
  const extensionClaims = new Map<string, LanguageInfo[]>();
  const languages: readonly Language[] = Object.values(linguist);
  for (const language of languages) {
    if (!isLanguageType(language.type)) continue;
    const info: LanguageInfo = Object.freeze({ name: language.name, type: language.type });
    for (const fileName of language.filenames ?? []) {
      addClaim(fileNameClaims, fileName, info);
      addClaim(foldedFileNameClaims, fileName.toLowerCase(), info);
    }
    for (const extension of language.extensions ?? []) addClaim(extensionClaims, extension.toLowerCase(), info);
  }
  const foldedFileNamePreferences = Object.fromEntries(Object.entries(fileNamePreferences).map(([name, language]) => [name.toLowerCase(), language]));
  return {
    fileNames: resolveClaims(fileNameClaims, fileNamePreferences),
    foldedFileNames: resolveClaims(foldedFileNameClaims, foldedFileNamePreferences),
    extensions: resolveClaims(extensionClaims, extensionPreferences),
  };
}

const tables = buildTables();

/**
 * Language of a repository path by linguist's table, `null` when unknown.
 *
 * 1. The file name exactly as linguist lists it (`Makefile`, `Dockerfile`,
 *    `.bashrc`, `go.mod`), then the same case-insensitively (`MAKEFILE`).
 * 2. The longest extension linguist lists, case-insensitively, trying each
 *    suffix that starts at a dot of the file name from the first dot on
 *    (`a.blade.php`: `.blade.php`, then `.php`; `x.d.ts`: `.d.ts`, then
 *    `.ts`). As in linguist, a dotfile's whole name is its longest extension
 *    (`.eslintrc.js`: `.eslintrc.js`, then `.js`).
 *
 * Several languages claim some extensions (`.h`: C, C++ and Objective-C).
 * Such an extension means the language of `extensionPreferences` (`.h` → C,
 * `.m` → Objective-C, `.pl` → Perl, `.md` → Markdown, `.sql` → SQL, `.v` →
 * Verilog, `.rs` → Rust, `.yml` → YAML, …); any other ambiguity resolves to
 * the claimant whose name sorts first (case-folded, then ordinal), so the
 * answer never depends on the table's order. Shared file names likewise.
 * Languages of a linguist group keep their own name (TSX stays TSX).
 *
 * The returned objects are shared and frozen.
 */
export function languageOf(path: string): LanguageInfo | null {
  const fileName = path.slice(path.lastIndexOf('/') + 1);
  if (fileName === '') return null;
  const byFileName = tables.fileNames.get(fileName);
  if (byFileName) return byFileName;
  const folded = fileName.toLowerCase();
  const byFoldedName = tables.foldedFileNames.get(folded);
  if (byFoldedName) return byFoldedName;
  for (let dot = folded.indexOf('.'); dot !== -1; dot = folded.indexOf('.', dot + 1)) {
    const byExtension = tables.extensions.get(folded.slice(dot));
    if (byExtension) return byExtension;
  }
  return null;
}

/** Combines path patterns into one regular expression: one test per path. */
function anyOf(patterns: readonly RegExp[], flags = ''): RegExp {
  return new RegExp(patterns.map((pattern) => `(?:${pattern.source})`).join('|'), flags);
}

/**
 * The main rules of linguist's vendor.yml: dependency folders, bundled
 * libraries, build outputs, wrappers, caches and tool configuration.
 */
const vendoredPath = anyOf([
  // Dependency folders of package managers.
  /(?:^|\/)node_modules\//,
  /(?:^|\/)bower_components\//,
  /(?:^|\/)jspm_packages\//,
  /(?:^|\/)\.yarn\//,
  /(?:^|\/)Godeps\/_workspace\//,
  /(?:^|\/)[Pp]ackages\/.+\.\d+\//, // NuGet's packages/Name.1.2.3/
  /(?:^|\/)Carthage\//,
  /(?:^|\/)Pods\//,
  /^[Dd]ependencies\//,
  /^deps\//,
  // Vendored and third-party code.
  /(?:^|\/)[Vv]+endors?\//,
  /(?:^|\/)(?:3rd|[Tt]hird)[-_]?[Pp]arty\//,
  /(?:^|\/)[Ee]xtern(?:als?)?\//,
  // Build outputs and caches.
  /(?:^|\/)dist\//,
  /(?:^|\/)cache\//,
  /(?:^|\/)docs?\/_?(?:build|themes?|templates?|static)\//, // Sphinx
  // Minified and bundled front-end libraries.
  /[.-]min\.(?:js|mjs|cjs|css)$/,
  /(?:^|\/)jquery[^/.]*\.js$/,
  /(?:^|\/)jquery-\d\.\d+(?:\.\d+)?\.js$/,
  /(?:^|\/)bootstrap[^/.]*(?:\.[^/]*)?\.(?:js|css|less|scss|styl)$/,
  // TypeScript declaration files.
  /\.d\.[cm]?ts$/,
  // Build-tool wrappers and autoconf output.
  /(?:^|\/)gradlew(?:\.bat)?$/,
  /(?:^|\/)gradle\/wrapper\//,
  /(?:^|\/)mvnw(?:\.cmd)?$/,
  /(?:^|\/)\.mvn\/wrapper\//,
  /(?:^|\/)(?:configure|config\.guess|config\.sub)$/,
  /(?:^|\/)(?:aclocal|libtool|ltoptions|ltsugar|ltversion|lt~obsolete)\.m4$/,
  /(?:^|\/)cpplint\.py$/,
  /^debian\//,
  // Test fixtures.
  /(?:^|\/)[Tt]ests?\/fixtures\//,
  /(?:^|\/)[Ss]pecs?\/fixtures\//,
  // Editor, OS and git configuration.
  /(?:^|\/)\.vscode\//,
  /(?:^|\/)\.[Dd][Ss]_[Ss]tore$/,
  /(?:^|\/)\.git(?:attributes|ignore|modules)$/,
  /\.(?:xctemplate|imageset)\//,
]);

/**
 * Whether linguist would treat a repository path as vendored (excluded from
 * language statistics): `node_modules/`, `vendor/`, `third_party/`,
 * `bower_components/`, `.yarn/`, `dist/`, `*.min.js`, `*.d.ts`, Gradle and
 * Maven wrappers, test fixtures, … (see `vendoredPath`).
 */
export function isVendored(path: string): boolean {
  return vendoredPath.test(path);
}

/** Lock files and other files package managers and tools write. */
const generatedFileNames: ReadonlySet<string> = new Set([
  'package-lock.json',
  'npm-shrinkwrap.json',
  'yarn.lock',
  'pnpm-lock.yaml',
  'bun.lock',
  'bun.lockb',
  'deno.lock',
  '.pnp.cjs',
  '.pnp.js',
  '.pnp.loader.mjs',
  'Cargo.lock',
  'go.sum',
  'go.work.sum',
  'Gopkg.lock',
  'glide.lock',
  'composer.lock',
  'Gemfile.lock',
  'Pipfile.lock',
  'poetry.lock',
  'pdm.lock',
  'uv.lock',
  'pixi.lock',
  'Package.resolved',
  'Podfile.lock',
  'Cartfile.resolved',
  'mix.lock',
  'pubspec.lock',
  'flake.lock',
  'MODULE.bazel.lock',
  'packages.lock.json',
  'paket.lock',
  'gradle.lockfile',
  'conan.lock',
]);

/** Output of code generators, by name (case-insensitive). */
const generatedPath = anyOf(
  [
    /(?:^|\/)__generated__\//, // Relay, GraphQL codegen
    /\.generated\.[^/]+$/,
    /\.pb\.(?:go|cc|h|swift|dart|rs)$/, // protoc
    /\.pb\.gw\.go$/,
    /_pb2(?:_grpc)?\.pyi?$/,
    /_pb\.(?:js|ts|d\.ts)$/,
    /\.pb(?:enum|json|grpc|server)\.dart$/,
    /\.(?:g|freezed|gr)\.dart$/,
    /\.g\.(?:i\.)?cs$/,
    /\.designer\.(?:cs|vb)$/,
    /\.(?:js|mjs|cjs|css)\.map$/, // source maps
    /\.(?:nib|xcworkspacedata|xcuserstate)$/, // Xcode
  ],
  'i',
);

/** Markers code generators put in their output's header. */
const generatedMarker =
  /@generated\b|\bcode generated\b.*\bdo not edit\b|\bauto-?generated\b|<auto-generated|generated by the protocol buffer compiler|\bthis file (?:is|was|has been) (?:automatically |auto )?generated\b|\bgenerated by cython\b/i;

/** How much of a file's start `isGenerated` reads for markers. */
const generatedHeadBytes = 1024;

/**
 * Whether a file was written by a tool: by its path (lock files such as
 * `package-lock.json`, `yarn.lock`, `pnpm-lock.yaml`, `Cargo.lock`,
 * `go.sum`; `*.pb.go`, `*_pb2.py`, `*.generated.*`, `*.Designer.cs`,
 * source maps, `__generated__/`, …) or, when `head` (the start of its
 * content) is given, by a line of the first 1 KiB containing `@generated`,
 * `Code generated … DO NOT EDIT`, `autogenerated` / `auto-generated`,
 * `<auto-generated`, "This file was generated", or protoc's and Cython's
 * banners (case-insensitive).
 */
export function isGenerated(path: string, head?: Uint8Array): boolean {
  const fileName = path.slice(path.lastIndexOf('/') + 1);
  if (generatedFileNames.has(fileName) || generatedPath.test(path)) return true;
  if (!head || head.length === 0) return false;
  // Markers are ASCII: latin1 decodes any byte, and never fails on a UTF-8 sequence cut by the limit.
  const text = Buffer.from(head.buffer, head.byteOffset, Math.min(head.length, generatedHeadBytes)).toString('latin1');
  return generatedMarker.test(text);
}

/** The main rules of linguist's documentation.yml (like linguist, `src/license.ts` counts: `[Ll]icen[cs]e(\.|$)`). */
const documentationPath = anyOf([
  /^[Dd]ocs?\//,
  /(?:^|\/)[Dd]ocumentation\//,
  /(?:^|\/)[Gg]roovydoc\//,
  /(?:^|\/)[Jj]avadoc\//,
  /^[Mm]an\//,
  /^[Ee]xamples?\//,
  /^[Dd]emos?\//,
  /^[Ss]amples?\//,
  /(?:^|\/)inst\/doc\//,
  /(?:^|\/)CITATION(?:\.cff|S?(?:\.(?:bib|md))?)$/,
  /(?:^|\/)CHANGE(?:S|LOG)?(?:\.|$)/,
  /(?:^|\/)CONTRIBUTING(?:\.|$)/,
  /(?:^|\/)COPYING(?:\.|$)/,
  /(?:^|\/)INSTALL(?:\.|$)/,
  /(?:^|\/)(?:LICEN[CS]E|[Ll]icen[cs]e)(?:\.|$)/,
  /(?:^|\/)(?:README|[Rr]eadme)(?:\.|$)/,
]);

/**
 * Whether linguist would treat a path as documentation (excluded from
 * language statistics): root `docs/`, `doc/`, `examples/`, `samples/`,
 * `demos/`, `man/`; `Documentation/`, `javadoc/` at any depth; README,
 * LICENSE, COPYING, CONTRIBUTING, CHANGELOG, INSTALL and CITATION files.
 */
export function isDocumentation(path: string): boolean {
  return documentationPath.test(path);
}

/** How far git looks for a NUL byte (`FIRST_FEW_BYTES` in git's xdiff-interface.c). */
const binaryProbeBytes = 8000;

/** git's binary heuristic: a NUL byte among the first 8000 bytes. */
export function isBinary(content: Uint8Array): boolean {
  return content.subarray(0, binaryProbeBytes).indexOf(0) !== -1;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Non-blank lines: lines with at least one byte other than space, tab,
 * vertical tab, form feed and the line ends `\n`, `\r\n` and `\r` (a leading
 * UTF-8 byte order mark does not count). Works on the bytes: after the first
 * non-blank byte of a line it jumps to the line's end with `indexOf` (native),
 * remembering the next `\n` and `\r` so each is searched for once per
 * occurrence.
 */
export function countLines(content: Uint8Array): number {
  const length = content.length;
  let index = length >= 3 && content[0] === 0xef && content[1] === 0xbb && content[2] === 0xbf ? 3 : 0;
  let nextLF = -1;
  let nextCR = -1;
  let lines = 0;
  while (index < length) {
    const byte = content[index]!;
    // Blank bytes: space, \t, \n, \v, \f, \r.
    if (byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)) {
      index++;
      continue;
    }
    lines++;
    if (nextLF < index) {
      nextLF = content.indexOf(LF, index);
      if (nextLF === -1) nextLF = length;
    }
    if (nextCR < index) {
      nextCR = content.indexOf(CR, index);
      if (nextCR === -1) nextCR = length;
    }
    index = Math.min(nextLF, nextCR) + 1;
  }
  return lines;
}

/** A file name `pickReadme` or `pickLicenseFile` may choose, with its rank (lower wins; ties by ordinal name). */
interface RootFileCandidate {
  name: string;
  /** 0 for LICENSE / LICENCE, 1 for COPYING, 2 for other license names; 0 for every README. */
  family: number;
  /** 0 for `.md`, 1 for no extension, 2 for anything else. */
  suffixRank: number;
}

function suffixRank(suffix: string): number {
  return suffix.toLowerCase() === '.md' ? 0 : suffix === '' ? 1 : 2;
}

function pickBest(candidates: readonly RootFileCandidate[]): string | null {
  let best: RootFileCandidate | undefined;
  for (const candidate of candidates) {
    const order = !best
      ? -1
      : candidate.family - best.family || candidate.suffixRank - best.suffixRank || (candidate.name < best.name ? -1 : candidate.name > best.name ? 1 : 0);
    if (order < 0) best = candidate;
  }
  return best?.name ?? null;
}

const readmeName = /^readme(\..*)?$/i;

/**
 * The README among the root-level file names: `README` alone or followed by
 * extensions (`README.md`, `readme.rst`, `README.txt`, `README.zh-CN.md`),
 * case-insensitive. Prefers `.md`, then no extension, then anything else (so
 * `README.md` beats `README.zh-CN.md`), then the ordinal first name (so
 * `README.md` beats `readme.md`). `null` when there is none.
 */
export function pickReadme(rootFileNames: readonly string[]): string | null {
  const candidates: RootFileCandidate[] = [];
  for (const name of rootFileNames) {
    const match = readmeName.exec(name);
    if (match) candidates.push({ name, family: 0, suffixRank: suffixRank(match[1] ?? '') });
  }
  return pickBest(candidates);
}

const licenseName = /^(?:(licen[cs]e)|copying)([.\-_].*)?$/i;
/** Less usual names: Rails' `MIT-LICENSE`, the Unlicense's `UNLICENSE`. */
const otherLicenseName = /^(?:[a-z0-9]+-licen[cs]e|unlicen[cs]e)(\..*)?$/i;

/**
 * The license file among the root-level file names: `LICENSE`, `LICENCE` or
 * `COPYING`, case-insensitive, alone or followed by `.`, `-` or `_` and more
 * (`LICENSE.md`, `LICENSE-MIT`, `LICENSE_1_0.txt`, `COPYING.LESSER`), then
 * `MIT-LICENSE` and `UNLICENSE`. LICENSE and LICENCE come before COPYING,
 * COPYING before the others; then the order of `pickReadme` (`.md`, no
 * extension, anything else, ordinal name). `null` when there is none.
 */
export function pickLicenseFile(rootFileNames: readonly string[]): string | null {
  const candidates: RootFileCandidate[] = [];
  for (const name of rootFileNames) {
    const match = licenseName.exec(name);
    if (match) candidates.push({ name, family: match[1] ? 0 : 1, suffixRank: suffixRank(match[2] ?? '') });
    const other = match ? null : otherLicenseName.exec(name);
    if (other) candidates.push({ name, family: 2, suffixRank: suffixRank(other[1] ?? '') });
  }
  return pickBest(candidates);
}

/** Canonical spellings of the ids `detectLicense` knows, by their lower-case form. */
const knownSpdxIds: ReadonlyMap<string, string> = new Map(
  [
    '0BSD',
    'AGPL-3.0',
    'Apache-2.0',
    'BSD-2-Clause',
    'BSD-3-Clause',
    'BSD-4-Clause',
    'BSL-1.0',
    'CC0-1.0',
    'EPL-1.0',
    'EPL-2.0',
    'GPL-2.0',
    'GPL-3.0',
    'ISC',
    'LGPL-2.0',
    'LGPL-2.1',
    'LGPL-3.0',
    'MIT',
    'MPL-2.0',
    'Unlicense',
    'WTFPL',
    'Zlib',
  ].map((id) => [id.toLowerCase(), id]),
);

const spdxLine = /SPDX-License-Identifier:[ \t]*([^\r\n]*?)[ \t]*(?:\*\/|-->)?[ \t]*(?:\r|\n|$)/i;

/** The GNU licenses by title, each with its ids by version (`2 1` is "2.1" normalised). */
const gnuFamilies: readonly { title: string; versions: Readonly<Record<string, string>> }[] = [
  { title: 'gnu affero general public license', versions: { '3': 'AGPL-3.0' } },
  { title: 'gnu lesser general public license', versions: { '2 1': 'LGPL-2.1', '3': 'LGPL-3.0' } },
  { title: 'gnu library general public license', versions: { '2': 'LGPL-2.0' } },
  { title: 'gnu general public license', versions: { '2': 'GPL-2.0', '3': 'GPL-3.0' } },
];

/** A version right after a title: "Version 3", "version 2.1 of the License", "v3.0", "v. 2.0" (normalised). */
const versionAfterTitle = /^(?: [a-z]+){0,12}? (?:version|v) ?(\d+)(?: (\d+))?(?= |$)/;

/** Licenses recognised by phrases of their text, tried in order (normalised text: see `normaliseLicense`). */
const licensePhrases: readonly { id: string; all: readonly (string | RegExp)[] }[] = [
  { id: 'Apache-2.0', all: ['apache license', / version 2 0 /] },
  { id: 'MPL-2.0', all: [/ mozilla public license (?:version|v) 2 0 /] },
  { id: 'EPL-2.0', all: [/ eclipse public license (?:version |v )?2 0 /] },
  { id: 'EPL-1.0', all: [/ eclipse public license (?:version |v )?1 0 /] },
  { id: 'BSL-1.0', all: [/ boost software license (?:version )?1 0 /] },
  { id: 'CC0-1.0', all: [/ cc0 1 0 /, 'creative commons'] },
  { id: 'Unlicense', all: ['this is free and unencumbered software released into the public domain'] },
  { id: 'WTFPL', all: ['do what the fuck you want to public license'] },
  {
    id: 'MIT',
    all: [
      'permission is hereby granted free of charge to any person obtaining a copy',
      'the above copyright notice and this permission notice shall be included',
    ],
  },
  {
    id: 'ISC',
    all: [
      / permission to use copy modify and (?:or )?distribute this software for any purpose with or without fee is hereby granted provided that the above copyright notice and this permission notice appear in all copies /,
    ],
  },
  { id: '0BSD', all: [/ permission to use copy modify and (?:or )?distribute this software for any purpose with or without fee is hereby granted /] },
  {
    id: 'BSD-4-Clause',
    all: ['redistribution and use in source and binary forms with or without modification are permitted', 'all advertising materials mentioning features'],
  },
  {
    id: 'BSD-3-Clause',
    all: ['redistribution and use in source and binary forms with or without modification are permitted', 'endorse or promote products derived from this software'],
  },
  { id: 'BSD-2-Clause', all: ['redistribution and use in source and binary forms with or without modification are permitted'] },
  { id: 'Zlib', all: ['altered source versions must be plainly marked as such', 'this notice may not be removed or altered from any source distribution'] },
];

/** How much of a license text `detectLicense` reads (the GPL-3.0 is about 35,000 characters). */
const licenseTextLimit = 100_000;

/** Lower case, every run of anything but letters and digits one space, padded with a space at each end. */
function normaliseLicense(text: string): string {
  return ` ${text.slice(0, licenseTextLimit).toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim()} `;
}

/**
 * SPDX id of a license text, `null` when not recognised.
 *
 * An `SPDX-License-Identifier:` line decides first (a known id in its
 * canonical spelling, any other expression as written, e.g. `MIT OR
 * Apache-2.0`). Otherwise phrases of each license are matched on the text
 * folded to lower-case words (punctuation and whitespace runs become one
 * space):
 * - GNU licenses by the title that comes first (Affero, Lesser, Library,
 *   then plain GPL: an LGPL text names the GPL and the GPL-3.0 names the
 *   AGPL later on) and the version right after it: AGPL-3.0, LGPL-2.1,
 *   LGPL-3.0, LGPL-2.0, GPL-2.0, GPL-3.0 (also for "version 3 of the License"
 *   in source headers).
 * - Apache-2.0 ("Apache License" and "Version 2.0"), MPL-2.0, EPL-1.0 and
 *   EPL-2.0, BSL-1.0, CC0-1.0, Unlicense, WTFPL, MIT (its grant and notice
 *   sentences), ISC (and 0BSD without its notice condition), BSD-4-Clause
 *   (advertising clause), BSD-3-Clause ("Neither the name … endorse or
 *   promote", which BSD-2-Clause lacks), BSD-2-Clause, Zlib.
 */
export function detectLicense(text: string): string | null {
  const declared = spdxLine.exec(text)?.[1]?.replace(/^\(\s*(.*?)\s*\)$/, '$1').trim();
  if (declared) return knownSpdxIds.get(declared.toLowerCase()) ?? declared;
  const normalised = normaliseLicense(text);
  let gnu: { at: number; title: string; versions: Readonly<Record<string, string>> } | undefined;
  for (const family of gnuFamilies) {
    const at = normalised.indexOf(` ${family.title} `);
    if (at !== -1 && (!gnu || at < gnu.at)) gnu = { at, ...family };
  }
  if (gnu) {
    const version = versionAfterTitle.exec(normalised.slice(gnu.at + gnu.title.length + 1, gnu.at + gnu.title.length + 200));
    // "Version 2.1" is `2 1`; "Version 3, 29 June 2007" is `3 29`: the minor version when the family has it, else the major.
    const id = version && ((version[2] && gnu.versions[`${version[1]} ${version[2]}`]) || gnu.versions[version[1]!]);
    if (id) return id;
  }
  for (const license of licensePhrases) {
    const matches = license.all.every((phrase) => (typeof phrase === 'string' ? normalised.includes(` ${phrase} `) : phrase.test(normalised)));
    if (matches) return license.id;
  }
  return null;
}

/** Whether a language counts in the language breakdown: as in linguist, programming and markup languages only. */
export function countsAsCode(info: LanguageInfo): boolean {
  return info.type === 'programming' || info.type === 'markup';
}
