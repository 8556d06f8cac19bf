import type { Logger } from 'pino';
import type { RepositoryMetadata } from '../generated/prisma/client.js';
import type { Metrics } from '../metrics.js';
import type { Prisma } from '../storage/database.js';
import type { Git } from '../sync/git.js';
import { redactSecrets } from '../sync/redact.js';
import { parentOf, type CodeGraph, type GraphFile, type GraphImport, type GraphUpdateEnd, type GraphUpdatePlan, type GraphWriter } from './codeGraph.js';
import { diffCommits, listTree, ObjectReader, parseCommit, rootEntries, type BlobSink, type CommitInfo, type TreeChange, type TreeEntry } from '../sync/gitObjects.js';
import { importCandidates, resolveImport, resolvesToFiles } from './imports.js';
import {
  countLines,
  countsAsCode,
  detectLicense,
  isBinary,
  isDocumentation,
  isGenerated,
  isVendored,
  languageOf,
  pickLicenseFile,
  pickReadme,
} from './languages.js';
import { CodeParser, parserLanguageOf } from './parser.js';

export interface IndexerOptions {
  /** Files bigger than this are neither parsed nor counted in lines (they still count in files and bytes). */
  maxFileBytes: number;
}

/** Per language: files, bytes and non-blank lines. */
export type LanguageTally = Record<string, { files: number; bytes: number; lines: number }>;

export interface IndexOutcome {
  /** What was done: nothing (already indexed at this commit), or how. */
  metadata: 'unchanged' | 'full' | 'incremental';
  graph: 'unchanged' | 'full' | 'incremental' | 'disabled' | 'failed';
  filesRead: number;
  /** The code graph could not be written: the run records it and still succeeds. */
  warning: string | null;
  /** Milliseconds per step: tree (the difference, ls-tree, the graph update begun), read (cat-file and parsing), graph (edges and commit), metadata. */
  timings: Record<string, number>;
}

const submoduleMode = '160000';
const symlinkMode = '120000';
/** How much of a file the content-based "generated" check looks at. */
const headBytes = 1024;

/**
 * The INDEXING phase (SPEC §1): repository metadata in PostgreSQL, always, and
 * the code graph in Neo4j when one is configured. Each keeps the commit it
 * describes (RepositoryMetadata.commitSha, Repository.indexedSha in the
 * graph), so a run changes only what differs from that commit to the new one
 * (diffCommits), and falls back to a from-scratch index when there is no
 * usable previous commit (first run, rewritten history). All content is read
 * from git's objects (one `git cat-file --batch` per pass, an ObjectReader),
 * never through the working tree, so a symlink is never followed.
 */
export class Indexer {
  private parser: Promise<CodeParser> | null = null;

  constructor(
    private readonly prisma: Prisma,
    private readonly git: Git,
    private readonly graph: CodeGraph | null,
    private readonly logger: Logger,
    private readonly metrics: Pick<Metrics, 'indexDuration' | 'indexedFiles'>,
    private readonly options: IndexerOptions,
  ) {}

  /**
   * Brings metadata and graph to `commitSha`, read from the git repository at
   * `cwd` (the working copy, which must hold the commit and, for an
   * incremental run, the previously indexed one). A graph failure is a
   * warning; a metadata failure throws. Nothing to do costs one primary-key
   * read, or none when `known` (the indexed commits as the caller read them)
   * says so; `onStart` is called once there is work.
   */
  async index(
    repositoryId: string,
    cwd: string,
    commitSha: string,
    options: { signal?: AbortSignal; onStart?: () => void; known?: { commitSha: string; graphSha: string | null } | null } = {},
  ): Promise<IndexOutcome> {
    const { signal, known } = options;
    // What the run's claim read already says everything is at this commit: not even the one read.
    if (known && known.commitSha === commitSha && (this.graph === null || known.graphSha === commitSha)) {
      return { metadata: 'unchanged', graph: this.graph === null ? 'disabled' : 'unchanged', filesRead: 0, warning: null, timings: {} };
    }
    const started = performance.now();
    const stored = await this.prisma.repositoryMetadata.findUnique({ where: { repositoryId } });
    const metadataDue = stored?.commitSha !== commitSha;
    let graphDue = this.graph !== null && stored?.graphSha !== commitSha;
    // The graph's own record is the truth (the PostgreSQL copy may lag a crash behind).
    let graphFrom: string | null = null;
    let warning: string | null = null;
    if (graphDue) {
      try {
        graphFrom = await this.graph!.indexedSha(repositoryId);
      } catch (error) {
        warning = `code graph not updated: ${describe(error)}`;
        graphDue = false;
      }
      if (graphFrom === commitSha) graphDue = false;
    }
    const outcome: IndexOutcome = {
      metadata: metadataDue ? 'full' : 'unchanged',
      graph: this.graph === null ? 'disabled' : graphDue ? 'full' : warning ? 'failed' : 'unchanged',
      filesRead: 0,
      warning,
      timings: {},
    };
    let lap = performance.now();
    const step = (name: string) => {
      const now = performance.now();
      outcome.timings[name] = Math.round(now - lap);
      lap = now;
    };
    if (!metadataDue && !graphDue) {
      // The graph was written but a crash kept PostgreSQL from hearing of it.
      if (this.graph && !warning && stored && stored.graphSha !== commitSha) {
        await this.prisma.repositoryMetadata.update({ where: { repositoryId }, data: { graphSha: commitSha } });
      }
      return outcome;
    }
    options.onStart?.();

    const graphFailed = (error: unknown) => {
      if (signal?.aborted) throw error;
      outcome.graph = 'failed';
      outcome.warning = `code graph not updated: ${describe(error)}`;
      this.logger.warn({ repositoryId, commitSha, err: outcome.warning }, 'code graph update failed; the next sync tries again');
    };
    // One git process reads what this pass needs: commits, the trees that changed, the files.
    const reader = new ObjectReader(this.git, cwd, signal);
    let writer: GraphWriter | null = null;
    let graphChanges: TreeChange[] | null = null;
    let work: Work;
    try {
      const diffs = new Map<string, Promise<{ changes: TreeChange[]; tree: string } | null>>();
      const changesFrom = (from: string | null | undefined) => {
        if (!from) return Promise.resolve(null);
        if (!diffs.has(from)) {
          diffs.set(
            from,
            diffCommits(reader, from, commitSha).catch((error: unknown) => {
              if (signal?.aborted) throw error;
              this.logger.info({ repositoryId, from, err: describe(error) }, 'previous indexed commit unusable; indexing from scratch');
              return null;
            }),
          );
        }
        return diffs.get(from)!;
      };
      const metadataDiff = metadataDue && stored ? await changesFrom(stored.commitSha) : null;
      const graphDiff = graphDue ? await changesFrom(graphFrom) : null;
      const metadataChanges = metadataDiff?.changes ?? null;
      graphChanges = graphDiff?.changes ?? null;
      if (metadataDue && metadataChanges) outcome.metadata = 'incremental';
      if (graphDue && graphChanges) outcome.graph = 'incremental';
      // The whole tree (with sizes): for the graph (its paths resolve imports) and for metadata from
      // scratch. An incremental metadata pass needs only the changes, and the root folder when it changed.
      const tree = graphDue || (metadataDue && !metadataChanges) ? await listTree(this.git, cwd, commitSha, signal) : null;

      work = new Work(commitSha, tree, this.options.maxFileBytes);
      if (metadataDue) {
        const rootChanged = metadataChanges?.some((change) => !change.path.includes('/')) ?? true;
        let root: TreeEntry[] | null = null;
        if (rootChanged) {
          root = tree
            ? tree.filter((entry) => !entry.path.includes('/'))
            : (await rootEntries(reader, metadataDiff!.tree)).map((entry) => ({ path: entry.name, mode: entry.mode, sha: entry.sha, size: 0 }));
        }
        work.planMetadata(metadataChanges && stored ? { changes: metadataChanges, stored } : null, root);
      }
      // The graph's transaction opens before the files are read: they stream into it as they are parsed.
      if (graphDue) {
        const plan = work.planGraph(repositoryId, graphChanges);
        try {
          writer = await this.graph!.begin(plan, signal);
          work.writeTo(writer);
        } catch (error) {
          graphFailed(error);
        }
      }
      step('tree');
      if (work.needsParser) work.parser = await this.codeParser();
      const pass = work;
      await reader.read(pass.objectIds(), (id, _type, size) => pass.sink(id, size));
      await reader.close();
    } catch (error) {
      await writer?.abort();
      await reader.close().catch(() => undefined);
      throw error;
    }
    outcome.filesRead = work.filesRead;
    step('read');

    let graphSha = stored?.graphSha ?? null;
    if (writer) {
      try {
        await writer.finish(await work.graphEnd(repositoryId, graphChanges, this.graph!));
        graphSha = commitSha;
      } catch (error) {
        await writer.abort();
        graphFailed(error);
      }
    } else if (this.graph && !warning && !graphDue) {
      graphSha = commitSha;
    }
    step('graph');
    signal?.throwIfAborted();

    const metadata = metadataDue ? work.metadata() : null;
    if (metadata) {
      await this.prisma.repositoryMetadata.upsert({
        where: { repositoryId },
        create: { repositoryId, ...metadata, graphSha, indexedAt: new Date() },
        update: { ...metadata, graphSha, indexedAt: new Date() },
      });
    } else if (graphSha !== stored?.graphSha) {
      // Only the graph was behind (the metadata row exists: it was not due).
      await this.prisma.repositoryMetadata.update({ where: { repositoryId }, data: { graphSha, indexedAt: new Date() } });
    }
    step('metadata');
    this.logger.info({ repositoryId, commitSha, metadata: outcome.metadata, graph: outcome.graph, filesRead: outcome.filesRead, timings: outcome.timings }, 'indexed');

    const mode = outcome.metadata === 'full' || outcome.graph === 'full' ? 'full' : 'incremental';
    this.metrics.indexDuration.observe({ mode, outcome: outcome.warning ? 'warning' : 'ok' }, (performance.now() - started) / 1000);
    this.metrics.indexedFiles.inc({ mode }, outcome.filesRead);
    return outcome;
  }

  /** The tree-sitter parser, loaded on first use (a failed load is tried again next time). */
  private codeParser(): Promise<CodeParser> {
    this.parser ??= CodeParser.create().catch((error: unknown) => {
      this.parser = null;
      throw error;
    });
    return this.parser;
  }

  /** Removes a repository's graph (its metadata row goes with the repository). */
  async removeRepository(repositoryId: string): Promise<void> {
    await this.graph?.removeRepository(repositoryId);
  }
}

/** An object to read, and what for. */
type Reader =
  /** A side of a changed file for metadata: -1 the old blob, +1 the new one (or +1 every file, from scratch). */
  | { role: 'metadata'; path: string; sign: 1 | -1; counted: boolean }
  | { role: 'graph'; path: string }
  | { role: 'license' }
  | { role: 'commit' };

/**
 * One indexing pass over a commit: which objects to read (one `git cat-file
 * --batch` for all of them), and what each yields: metadata figures and
 * their changes, a parsed file for the graph, the license, the commit.
 * Content is handled as git streams it and then dropped.
 */
class Work {
  parser: CodeParser | null = null;
  filesRead = 0;
  private readonly readers = new Map<string, Reader[]>();
  private readonly graphFiles = new Map<string, GraphFile>();
  /** Resolved imports of the files read so far. */
  private readonly imports: GraphImport[] = [];
  /** Every path of the commit, when the tree was listed (the graph's import resolution needs it). */
  private readonly paths: Set<string>;
  private writer: GraphWriter | null = null;
  private commit: CommitInfo | null = null;
  /** Metadata adjusted by changes (totals move with each side read) rather than counted from the tree. */
  private metadataIncremental = false;
  private figures: Omit<RepositoryMetadata, 'repositoryId' | 'graphSha' | 'indexedAt' | 'lastCommitAuthor' | 'lastCommitAt' | 'lastCommitMessage' | 'languages'> & {
    languages: LanguageTally;
  } = { commitSha: '', languages: {}, fileCount: 0, totalBytes: 0, linesOfCode: 0, readmePath: null, license: null };

  constructor(
    private readonly commitSha: string,
    private readonly tree: TreeEntry[] | null,
    private readonly maxFileBytes: number,
  ) {
    this.paths = new Set((tree ?? []).filter((entry) => entry.mode !== submoduleMode).map((entry) => entry.path));
    this.want(commitSha, { role: 'commit' });
  }

  /** Whether files will be parsed: the graph is being written and has files to parse. */
  get needsParser(): boolean {
    return this.writer !== null && this.graphFiles.size > 0;
  }

  /**
   * Metadata from scratch (every file of the tree), or the stored figures
   * adjusted by the changes: each changed path's old blob counted out and its
   * new one in (files, bytes, and the language tally for code). README and
   * license are looked for again when the root folder changed (`root`).
   */
  planMetadata(incremental: { changes: TreeChange[]; stored: RepositoryMetadata } | null, root: TreeEntry[] | null): void {
    this.figures.commitSha = this.commitSha;
    if (incremental) {
      this.metadataIncremental = true;
      const { stored, changes } = incremental;
      Object.assign(this.figures, {
        languages: structuredClone(stored.languages as LanguageTally),
        fileCount: stored.fileCount,
        totalBytes: stored.totalBytes,
        readmePath: stored.readmePath,
        license: stored.license,
      });
      for (const change of changes) {
        if (change.oldSha && change.oldMode !== submoduleMode) {
          this.want(change.oldSha, { role: 'metadata', path: change.path, sign: -1, counted: countable(change.path, change.oldMode) });
        }
        if (change.newSha && change.newMode !== submoduleMode) {
          this.want(change.newSha, { role: 'metadata', path: change.path, sign: 1, counted: countable(change.path, change.newMode) });
        }
      }
    } else {
      const files = this.tree!.filter((entry) => entry.mode !== submoduleMode);
      this.figures.fileCount = files.length;
      this.figures.totalBytes = files.reduce((sum, entry) => sum + entry.size, 0);
      for (const entry of files) if (countable(entry.path, entry.mode)) this.want(entry.sha, { role: 'metadata', path: entry.path, sign: 1, counted: true });
    }
    if (root) {
      const names = root.filter((entry) => entry.mode !== submoduleMode && !entry.mode.startsWith('04')).map((entry) => entry.path);
      this.figures.readmePath = pickReadme(names);
      const licensePath = pickLicenseFile(names);
      const license = licensePath ? root.find((entry) => entry.path === licensePath) : undefined;
      this.figures.license = null;
      if (license && license.mode !== symlinkMode) this.want(license.sha, { role: 'license' });
    }
  }

  /** Graph: every file of the tree, or the changed ones; what the update removes and prepares first. */
  planGraph(repositoryId: string, changes: TreeChange[] | null): GraphUpdatePlan {
    const tree = this.tree!;
    const entries = changes
      ? changes.filter((change) => change.newSha && change.newMode !== submoduleMode).map((change) => ({ path: change.path, mode: change.newMode!, sha: change.newSha! }))
      : tree.filter((entry) => entry.mode !== submoduleMode);
    const sizes = new Map(tree.map((entry) => [entry.path, entry.size]));
    for (const entry of entries) {
      const file: GraphFile = {
        path: entry.path,
        language: languageOf(entry.path)?.name ?? null,
        bytes: sizes.get(entry.path) ?? 0,
        blobSha: entry.sha,
        skipped: pathSkip(entry.path, entry.mode),
        imports: [],
        unresolvedImports: [],
      };
      this.graphFiles.set(entry.path, file);
      if (!file.skipped && parserLanguageOf(entry.path)) {
        if (file.bytes > this.maxFileBytes) file.skipped = 'too large';
        else this.want(entry.sha, { path: entry.path, role: 'graph' });
      }
    }
    const directories = new Set<string>(['']);
    for (const path of this.graphFiles.keys()) for (const dir of ancestors(path)) directories.add(dir);
    return {
      repositoryId,
      full: changes === null,
      removedFiles: changes ? removedPaths(changes) : [],
      changedFiles: changes ? [...this.graphFiles.keys()] : [],
      directories: [...directories],
    };
  }

  /** Streams files into the graph update: those not to be parsed now, the others as they are parsed. */
  writeTo(writer: GraphWriter): void {
    this.writer = writer;
    const parsed = new Set<string>();
    for (const readers of this.readers.values()) for (const reader of readers) if (reader.role === 'graph') parsed.add(reader.path);
    for (const file of this.graphFiles.values()) if (!parsed.has(file.path)) writer.add({ ...file, symbols: [] });
  }

  /** Every object to read, each once. */
  objectIds(): string[] {
    return [...this.readers.keys()];
  }

  /**
   * Where an object's content goes: kept whole when a reader needs it, else let past. The size
   * limit is for files; the commit and the license are always read.
   */
  sink(id: string, size: number): BlobSink {
    const readers = this.readers.get(id) ?? [];
    const whole = readers.some((reader) => reader.role === 'commit' || reader.role === 'license');
    const needed = whole || readers.some((reader) => reader.role === 'graph' || (reader.role === 'metadata' && reader.counted));
    const parts: Buffer[] | null = needed && (whole || size <= this.maxFileBytes) ? [] : null;
    return {
      write: (chunk) => void parts?.push(chunk),
      end: () => this.consume(readers, size, parts ? (parts.length === 1 ? parts[0]! : Buffer.concat(parts)) : null),
    };
  }

  /** The metadata row's figures, once everything is read. */
  metadata(): Omit<RepositoryMetadata, 'repositoryId' | 'graphSha' | 'indexedAt' | 'languages'> & { languages: LanguageTally } {
    const { languages } = this.figures;
    for (const [language, share] of Object.entries(languages)) if (share.files <= 0) delete languages[language];
    const sorted = Object.fromEntries(Object.entries(languages).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const at = this.commit?.at;
    return {
      ...this.figures,
      languages: sorted,
      linesOfCode: Object.values(sorted).reduce((sum, share) => sum + share.lines, 0),
      lastCommitAuthor: this.commit?.author ?? null,
      lastCommitAt: at && !Number.isNaN(at.getTime()) ? at : null,
      lastCommitMessage: this.commit?.message ?? null,
    };
  }

  /** What the update writes once every file is in: import edges, re-resolved files, emptied directories, the commit. */
  async graphEnd(repositoryId: string, changes: TreeChange[] | null, graph: CodeGraph): Promise<GraphUpdateEnd> {
    const info = this.commit ?? { author: '', at: new Date(Number.NaN), message: '' };
    const commit = { sha: this.commitSha, author: info.author, committedAt: Number.isNaN(info.at.getTime()) ? '' : info.at.toISOString(), message: info.message };
    const imports = this.imports;
    const removedFiles = changes ? removedPaths(changes) : [];
    const reresolved: GraphUpdateEnd['reresolved'] = [];
    if (changes) {
      // Paths that came or went can change how unchanged files' imports resolve.
      const moved = new Set([...removedFiles, ...addedPaths(changes)]);
      if (moved.size) {
        for (const file of await graph.importsOf(repositoryId)) {
          if (this.graphFiles.has(file.path) || !this.paths.has(file.path)) continue;
          const language = parserLanguageOf(file.path);
          if (!language || !resolvesToFiles(language)) continue;
          const touched = file.imports.some((specifier) => importCandidates(language, file.path, specifier).candidates.some((candidate) => moved.has(candidate)));
          if (!touched) continue;
          const entry: GraphFile = { path: file.path, language: null, bytes: 0, blobSha: '', skipped: null, imports: file.imports, unresolvedImports: [] };
          imports.push(...this.resolve(entry));
          reresolved.push({ path: file.path, unresolvedImports: entry.unresolvedImports });
        }
      }
    }

    const removedDirectories = new Set<string>();
    if (changes) {
      const live = new Set<string>(['']);
      for (const path of this.paths) for (const dir of ancestors(path)) live.add(dir);
      for (const path of removedFiles) for (const dir of ancestors(path)) if (!live.has(dir)) removedDirectories.add(dir);
    }
    return { commit, reresolved, imports, removedDirectories: [...removedDirectories] };
  }

  private want(id: string, reader: Reader): void {
    const list = this.readers.get(id);
    if (list) list.push(reader);
    else this.readers.set(id, [reader]);
  }

  /** Parses a file, resolves its imports, and hands it (with its symbols) to the graph update. */
  private parse(path: string, content: Buffer | null): void {
    const file = this.graphFiles.get(path)!;
    const skip = content ? contentSkip(path, content) : 'too large';
    if (skip || !content) {
      file.skipped = skip;
      this.writer?.add({ ...file, symbols: [] });
      return;
    }
    const parsed = this.parser!.parse(parserLanguageOf(path)!, content.toString('utf8'));
    file.imports = parsed.imports;
    this.imports.push(...this.resolve(file));
    this.writer?.add({ ...file, symbols: parsed.symbols });
  }

  private consume(readers: Reader[], size: number, content: Buffer | null): void {
    for (const reader of readers) {
      switch (reader.role) {
        case 'commit':
          if (content) this.commit = parseCommit(content);
          break;
        case 'license':
          if (content) this.figures.license = detectLicense(content.toString('utf8'));
          break;
        case 'graph':
          this.filesRead++;
          // Not written anywhere when the graph's update could not begin.
          if (this.writer) this.parse(reader.path, content);
          break;
        case 'metadata':
          this.filesRead++;
          this.count(reader, size, content);
          break;
      }
    }
  }

  /** One side of a file in the figures: files and bytes always, the language tally for code that is not binary or generated. */
  private count(reader: Extract<Reader, { role: 'metadata' }>, size: number, content: Buffer | null): void {
    const { path, sign } = reader;
    if (this.metadataIncremental) {
      // The file and byte totals move with each side (from scratch they come from the tree).
      this.figures.fileCount += sign;
      this.figures.totalBytes += sign * size;
    }
    if (!reader.counted) return;
    if (content && (isBinary(content) || isGenerated(path, content.subarray(0, headBytes)))) return;
    const share = (this.figures.languages[languageOf(path)!.name] ??= { files: 0, bytes: 0, lines: 0 });
    share.files += sign;
    share.bytes += sign * size;
    share.lines += sign * (content ? countLines(content) : 0);
  }

  /** A file's import edges; fills its unresolved list. */
  private resolve(file: GraphFile): GraphImport[] {
    const language = parserLanguageOf(file.path);
    if (!language || !file.imports.length) return [];
    const edges = new Map<string, GraphImport>();
    const unresolved: string[] = [];
    for (const specifier of file.imports) {
      const target = resolveImport(language, file.path, specifier, this.paths);
      if (target.kind === 'file') {
        if (target.path !== file.path) edges.set(`f:${target.path}`, { from: file.path, toFile: target.path });
      } else if (target.kind === 'module') {
        edges.set(`m:${target.name}`, { from: file.path, module: target.name });
      } else if (!unresolved.includes(specifier)) {
        unresolved.push(specifier);
      }
    }
    file.unresolvedImports = unresolved;
    return [...edges.values()];
  }
}

/** Whether a path counts in the language breakdown, judged by its path and mode (content is checked later). */
function countable(path: string, mode: string | null): boolean {
  if (!mode || mode === submoduleMode || mode === symlinkMode) return false;
  const language = languageOf(path);
  return language !== null && countsAsCode(language) && !isVendored(path) && !isDocumentation(path) && !isGenerated(path);
}

/**
 * Why a file is not parsed, by its path and mode alone. Declaration files
 * (`*.d.ts`) are vendored to linguist's statistics but parsed for the graph
 * (they are where a TypeScript library's types live): one is judged as a
 * `.ts` file in its place, so only a vendored folder makes it vendored.
 */
function pathSkip(path: string, mode: string): string | null {
  if (mode === symlinkMode) return 'symlink';
  const declaration = path.toLowerCase().endsWith('.d.ts');
  if (isVendored(declaration ? `${path.slice(0, -'.d.ts'.length)}.ts` : path)) return 'vendored';
  if (isGenerated(path)) return 'generated';
  return null;
}

/** Why a file is not parsed, by its content. */
function contentSkip(path: string, content: Buffer): string | null {
  if (isBinary(content)) return 'binary';
  if (isGenerated(path, content.subarray(0, headBytes))) return 'generated';
  return null;
}

/** Paths an update removes: deleted or renamed away, or turned into a submodule. */
function removedPaths(changes: TreeChange[]): string[] {
  return changes.filter((change) => change.status === 'D' || change.newMode === submoduleMode).map((change) => change.path);
}

/** Paths that are new to the graph: added, or a submodule turned into a file. */
function addedPaths(changes: TreeChange[]): string[] {
  return changes.filter((change) => change.newSha && change.newMode !== submoduleMode && (change.status === 'A' || change.oldMode === submoduleMode)).map((change) => change.path);
}

function ancestors(filePath: string): string[] {
  const dirs: string[] = [];
  for (let dir = parentOf(filePath); dir !== ''; dir = parentOf(dir)) dirs.push(dir);
  return dirs;
}

function describe(error: unknown): string {
  return redactSecrets(error instanceof Error ? error.message : String(error));
}
