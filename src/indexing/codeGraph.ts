import neo4j, { type Driver, type ManagedTransaction, type Session, type Transaction } from 'neo4j-driver';

/**
 * The code graph in Neo4j (SPEC §2): one subgraph per repository, every node
 * but symbols carrying its `repositoryId` (symbols hang off their file), and
 * every query starting from it, so no query can reach another repository's
 * (another tenant's) nodes.
 *
 *   (:Repository {id, indexedSha, indexedAt})-[:HEAD]->(:Commit {sha, author, committedAt, message})
 *   (:Repository)-[:CONTAINS]->(:Directory {path: ''})-[:CONTAINS]->(:Directory | :File)…
 *   (:File {path, name, language, bytes, blobSha, skipped, imports, unresolvedImports})-[:DEFINES]->(:Symbol {name, kind, startLine, endLine})
 *     (a symbol is reached through its file: no repositoryId, path or index of its own, so a
 *     repository's tens of thousands of symbols cost no index entries)
 *   (:File)-[:IMPORTS]->(:File)        an import resolved inside the repository
 *   (:File)-[:IMPORTS]->(:Module {name}) an external package
 *
 * `File.imports` keeps the raw specifiers so that an incremental run can
 * re-resolve them when paths come and go without re-reading the file.
 * An update is written in one transaction (begin … finish): the graph is at
 * the old commit or at the new one, never between.
 */

export interface GraphFile {
  path: string;
  language: string | null;
  bytes: number;
  blobSha: string;
  /** Why the file was not parsed (binary, too large, symlink, vendored…); null when it was (or has no parser). */
  skipped: string | null;
  imports: string[];
  unresolvedImports: string[];
}

export type GraphImport = { from: string; toFile: string } | { from: string; module: string };

/** What an update removes and prepares before files stream in (all known before any file is read). */
export interface GraphUpdatePlan {
  repositoryId: string;
  /** Replace the whole subgraph (a from-scratch index) instead of changing it. */
  full: boolean;
  /** Files gone (deleted, or renamed away), with their symbols and edges. */
  removedFiles: string[];
  /** Files about to be written again (changed): their symbols and outgoing imports go. */
  changedFiles: string[];
  /** Directories that must exist, root '' included. */
  directories: string[];
}

/** What an update writes once every file is in: edges between files exist only then. */
export interface GraphUpdateEnd {
  commit: { sha: string; author: string; committedAt: string; message: string };
  /** Unchanged files whose imports resolve differently now: outgoing imports replaced. */
  reresolved: { path: string; unresolvedImports: string[] }[];
  /** Outgoing imports of the written files and of `reresolved`. */
  imports: GraphImport[];
  /** Directories left empty. */
  removedDirectories: string[];
}

/** A file as written, with its symbols. */
export interface GraphFileRow extends GraphFile {
  symbols: Omit<SymbolData, 'path'>[];
}

export interface FileNodeData {
  path: string;
  language: string | null;
  bytes: number;
  blobSha: string;
  skipped: string | null;
  unresolvedImports: string[];
}

export interface SymbolData {
  name: string;
  kind: string;
  path: string;
  startLine: number;
  endLine: number;
}

export interface FileDetail extends FileNodeData {
  symbols: SymbolData[];
  imports: FileNodeData[];
  importedBy: FileNodeData[];
  externalImports: string[];
}

export interface GraphConnectionOptions {
  url: string;
  user?: string | undefined;
  password?: string | undefined;
}

const batchSize = 5_000;
/** Files per streamed statement (each with its symbols). */
const fileBatchSize = 1_000;

export class CodeGraphError extends Error {}

export class CodeGraph {
  private schema: Promise<void> | null = null;

  private constructor(
    private readonly driver: Driver,
    private readonly url: string,
  ) {}

  /**
   * A graph client; nothing connects yet. The first use connects and creates
   * the constraints and indexes the queries rely on; while Neo4j cannot be
   * reached every use fails with a clear error and the next one tries again,
   * so the service starts (and syncs) with Neo4j down.
   */
  static open(options: GraphConnectionOptions): CodeGraph {
    const auth = options.user ? neo4j.auth.basic(options.user, options.password ?? '') : undefined;
    const driver = neo4j.driver(options.url, auth, {
      disableLosslessIntegers: true,
      connectionAcquisitionTimeout: 30_000,
      connectionTimeout: 10_000,
      maxTransactionRetryTime: 15_000,
      logging: { level: 'error', logger: () => undefined },
    });
    return new CodeGraph(driver, options.url);
  }

  /** open(), then connected and its schema in place. */
  static async connect(options: GraphConnectionOptions): Promise<CodeGraph> {
    const graph = CodeGraph.open(options);
    try {
      await graph.ready();
    } catch (error) {
      await graph.close();
      throw error;
    }
    return graph;
  }

  async close(): Promise<void> {
    await this.driver.close();
  }

  private unavailable(cause: unknown): CodeGraphError {
    return new CodeGraphError(`code graph unavailable: cannot use Neo4j at ${redactUrl(this.url)}: ${(cause as Error).message}`);
  }

  /** Connected, with constraints and indexes created (once per process; retried after a failure). */
  ready(): Promise<void> {
    this.schema ??= this.ensureSchema().catch((error: unknown) => {
      this.schema = null;
      throw this.unavailable(error);
    });
    return this.schema;
  }

  private async ensureSchema(): Promise<void> {
    await this.driver.verifyConnectivity();
    const statements = [
      'CREATE CONSTRAINT repolens_repository_id IF NOT EXISTS FOR (n:Repository) REQUIRE n.id IS UNIQUE',
      'CREATE CONSTRAINT repolens_file_path IF NOT EXISTS FOR (n:File) REQUIRE (n.repositoryId, n.path) IS UNIQUE',
      'CREATE CONSTRAINT repolens_directory_path IF NOT EXISTS FOR (n:Directory) REQUIRE (n.repositoryId, n.path) IS UNIQUE',
      'CREATE CONSTRAINT repolens_module_name IF NOT EXISTS FOR (n:Module) REQUIRE (n.repositoryId, n.name) IS UNIQUE',
      'CREATE INDEX repolens_commit_repository IF NOT EXISTS FOR (n:Commit) ON (n.repositoryId)',
    ];
    // Managed transactions (executeQuery): a deadlock with another instance's writes, which
    // schema changes can meet, is retried by the driver rather than failing the start.
    for (const statement of statements) await this.driver.executeQuery(statement);
    await this.driver.executeQuery('CALL db.awaitIndexes(60)');
  }

  /** The commit the repository's graph is at; null when it has none. */
  async indexedSha(repositoryId: string): Promise<string | null> {
    const rows = await this.read<{ sha: string | null }>('MATCH (r:Repository {id: $r}) RETURN r.indexedSha AS sha', { r: repositoryId });
    return rows[0]?.sha ?? null;
  }

  /**
   * Opens an update, one explicit transaction: the plan's removals and
   * directories are written now, files stream in through `add` (while the
   * caller is still parsing others), and `finish` writes the edges and
   * commits. The graph is at the old commit until that commit, and stays
   * there when the update is abandoned or the process dies.
   */
  async begin(plan: GraphUpdatePlan, signal?: AbortSignal): Promise<GraphWriter> {
    await this.ready();
    const session = this.driver.session({ defaultAccessMode: neo4j.session.WRITE });
    const tx = session.beginTransaction();
    const writer = new GraphWriter(session, tx, plan, signal);
    try {
      await writer.start();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer;
  }

  /** Removes a repository's subgraph (the repository was removed). */
  async removeRepository(repositoryId: string): Promise<void> {
    await this.ready();
    const session = this.driver.session({ defaultAccessMode: neo4j.session.WRITE });
    try {
      await session.executeWrite((tx) => clear(tx, repositoryId, true));
    } finally {
      await session.close();
    }
  }

  /** Files in path order, optionally under a prefix and of one language; `offset` pages. */
  async files(repositoryId: string, options: { pathPrefix?: string | null; language?: string | null; first: number; offset: number }): Promise<FileNodeData[]> {
    return this.read<FileNodeData>(
      `MATCH (f:File {repositoryId: $r})
       WHERE ($prefix IS NULL OR f.path STARTS WITH $prefix) AND ($language IS NULL OR f.language = $language)
       RETURN ${fileFields('f')} ORDER BY f.path SKIP $offset LIMIT $limit`,
      { r: repositoryId, prefix: options.pathPrefix ?? null, language: options.language ?? null, offset: neo4j.int(options.offset), limit: neo4j.int(options.first) },
    );
  }

  async file(repositoryId: string, path: string): Promise<FileDetail | null> {
    const rows = await this.read<FileDetail>(
      `MATCH (f:File {repositoryId: $r, path: $path})
       RETURN ${fileFields('f')},
         COLLECT { MATCH (f)-[:DEFINES]->(s:Symbol) RETURN s {.name, .kind, path: f.path, .startLine, .endLine} ORDER BY s.startLine, s.name } AS symbols,
         COLLECT { MATCH (f)-[:IMPORTS]->(t:File) RETURN t {${fileMap}} ORDER BY t.path } AS imports,
         COLLECT { MATCH (t:File)-[:IMPORTS]->(f) RETURN t {${fileMap}} ORDER BY t.path } AS importedBy,
         COLLECT { MATCH (f)-[:IMPORTS]->(m:Module) RETURN m.name ORDER BY m.name } AS externalImports`,
      { r: repositoryId, path },
    );
    return rows[0] ?? null;
  }

  /** Symbols whose name contains `query` (case-insensitive), by name then path then line; `offset` pages. */
  async symbols(repositoryId: string, options: { query: string; kind?: string | null; first: number; offset: number }): Promise<SymbolData[]> {
    return this.read<SymbolData>(
      `MATCH (f:File {repositoryId: $r})-[:DEFINES]->(s:Symbol)
       WHERE toLower(s.name) CONTAINS toLower($query) AND ($kind IS NULL OR s.kind = $kind)
       RETURN s.name AS name, s.kind AS kind, f.path AS path, s.startLine AS startLine, s.endLine AS endLine
       ORDER BY name, path, startLine SKIP $offset LIMIT $limit`,
      { r: repositoryId, query: options.query, kind: options.kind ?? null, offset: neo4j.int(options.offset), limit: neo4j.int(options.first) },
    );
  }

  /** External modules with the number of files importing each, most imported first. */
  async dependencies(repositoryId: string): Promise<{ module: string; importCount: number }[]> {
    return this.read(
      `MATCH (m:Module {repositoryId: $r})
       RETURN m.name AS module, COUNT { (:File)-[:IMPORTS]->(m) } AS importCount
       ORDER BY importCount DESC, module`,
      { r: repositoryId },
    );
  }

  /** Every file's raw imports (for re-resolving them when paths come and go). */
  async importsOf(repositoryId: string): Promise<{ path: string; imports: string[] }[]> {
    return this.read(
      `MATCH (f:File {repositoryId: $r}) WHERE size(f.imports) > 0 RETURN f.path AS path, f.imports AS imports`,
      { r: repositoryId },
    );
  }

  /** Runs a read query and returns its records as plain objects; Neo4j gone since it was first reached is a CodeGraphError too. */
  async read<T>(query: string, parameters: Record<string, unknown>): Promise<T[]> {
    await this.ready();
    try {
      const result = await this.driver.executeQuery(query, parameters, { routing: neo4j.routing.READ });
      return result.records.map((record) => record.toObject() as T);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === neo4j.error.SERVICE_UNAVAILABLE || code === neo4j.error.SESSION_EXPIRED) {
        throw this.unavailable(error);
      }
      throw error;
    }
  }
}

/** A File node's fields as the API reads them (FileNodeData). */
const fileFieldNames = ['path', 'language', 'bytes', 'blobSha', 'skipped', 'unresolvedImports'] as const;
/** `f {.path, …}`: the fields as a map projection, for lists of files. */
const fileMap = fileFieldNames.map((field) => `.${field}`).join(', ');

/** `f.path AS path, …`: the fields as columns. */
function fileFields(variable: string): string {
  return fileFieldNames.map((field) => `${variable}.${field} AS ${field}`).join(', ');
}

/** Deletes a repository's nodes label by label (each lookup served by an index). */
async function clear(tx: ManagedTransaction | Transaction, repositoryId: string, withRepository = false): Promise<void> {
  const r = repositoryId;
  await tx.run('MATCH (:File {repositoryId: $r})-[:DEFINES]->(n:Symbol) DETACH DELETE n', { r });
  await tx.run('MATCH (n:File {repositoryId: $r}) DETACH DELETE n', { r });
  await tx.run('MATCH (n:Directory {repositoryId: $r}) DETACH DELETE n', { r });
  await tx.run('MATCH (n:Module {repositoryId: $r}) DETACH DELETE n', { r });
  await tx.run('MATCH (n:Commit {repositoryId: $r}) DETACH DELETE n', { r });
  if (withRepository) await tx.run('MATCH (n:Repository {id: $r}) DETACH DELETE n', { r });
}

/** One update in flight (CodeGraph.begin). */
export class GraphWriter {
  private readonly r: string;
  private pending: GraphFileRow[] = [];
  private queue: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private closed = false;

  constructor(
    private readonly session: Session,
    private readonly tx: Transaction,
    private readonly plan: GraphUpdatePlan,
    private readonly signal?: AbortSignal,
  ) {
    this.r = plan.repositoryId;
  }

  /** @internal Removals, the repository node and the directory tree. */
  async start(): Promise<void> {
    const { plan } = this;
    if (plan.full) await clear(this.tx, this.r);
    await this.rows(
      `UNWIND $rows AS p MATCH (f:File {repositoryId: $r, path: p})
       OPTIONAL MATCH (f)-[:DEFINES]->(s:Symbol) DETACH DELETE s, f`,
      plan.removedFiles,
    );
    if (!plan.full) {
      await this.rows(`UNWIND $rows AS p MATCH (:File {repositoryId: $r, path: p})-[i:IMPORTS]->() DELETE i`, plan.changedFiles);
      await this.rows(`UNWIND $rows AS p MATCH (:File {repositoryId: $r, path: p})-[:DEFINES]->(s:Symbol) DETACH DELETE s`, plan.changedFiles);
    }
    await this.tx.run(
      `MERGE (repo:Repository {id: $r})
       MERGE (root:Directory {repositoryId: $r, path: ''}) SET root.name = ''
       MERGE (repo)-[:CONTAINS]->(root)`,
      { r: this.r },
    );
    await this.rows(
      `UNWIND $rows AS d
       MERGE (parent:Directory {repositoryId: $r, path: d.parent})
       MERGE (dir:Directory {repositoryId: $r, path: d.path}) SET dir.name = d.name
       MERGE (parent)-[:CONTAINS]->(dir)`,
      [...plan.directories].filter((dir) => dir !== '').sort(byDepth).map((dir) => ({ path: dir, parent: parentOf(dir), name: baseName(dir) })),
    );
  }

  /** Queues files (with their symbols) for writing; written in batches while the caller goes on. */
  add(file: GraphFileRow): void {
    this.pending.push(file);
    if (this.pending.length >= fileBatchSize) this.flush();
  }

  /** Writes the edges and the commit node, and commits. */
  async finish(end: GraphUpdateEnd): Promise<void> {
    try {
      this.flush();
      await this.queue;
      if (this.failure) throw this.failure;
      await this.edges(end);
      this.signal?.throwIfAborted();
      this.closed = true;
      await this.tx.commit();
    } catch (error) {
      await this.abort();
      throw error;
    } finally {
      await this.session.close();
    }
  }

  /** Rolls back (nothing of the update stays). */
  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.queue.catch(() => undefined);
      await this.tx.rollback().catch(() => undefined);
    }
    await this.session.close().catch(() => undefined);
  }

  private flush(): void {
    if (!this.pending.length) return;
    const batch = this.pending;
    this.pending = [];
    // A file, its CONTAINS edge and its symbols in one row: one index lookup per file, not per symbol.
    // (The graph was cleared, or the file's symbols deleted, in start(): CREATE cannot duplicate.)
    const query = `UNWIND $rows AS row
       MATCH (parent:Directory {repositoryId: $r, path: row.parent})
       ${this.plan.full ? 'CREATE (parent)-[:CONTAINS]->(f:File {repositoryId: $r, path: row.path})' : 'MERGE (f:File {repositoryId: $r, path: row.path}) MERGE (parent)-[:CONTAINS]->(f)'}
       SET f.name = row.name, f.language = row.language, f.bytes = row.bytes, f.blobSha = row.blobSha,
           f.skipped = row.skipped, f.imports = row.imports, f.unresolvedImports = row.unresolvedImports
       WITH f, row UNWIND row.symbols AS s
       CREATE (f)-[:DEFINES]->(:Symbol {name: s.name, kind: s.kind, startLine: s.startLine, endLine: s.endLine})`;
    const rows = batch.map((file) => ({ ...file, parent: parentOf(file.path), name: baseName(file.path) }));
    this.queue = this.queue.then(async () => {
      if (this.failure) return;
      try {
        this.signal?.throwIfAborted();
        await this.tx.run(query, { r: this.r, rows });
      } catch (error) {
        this.failure = error;
      }
    });
  }

  private async edges(end: GraphUpdateEnd): Promise<void> {
    const reresolved = end.reresolved.map((file) => file.path);
    await this.rows(`UNWIND $rows AS p MATCH (:File {repositoryId: $r, path: p})-[i:IMPORTS]->() DELETE i`, reresolved);
    await this.rows(`UNWIND $rows AS row MATCH (f:File {repositoryId: $r, path: row.path}) SET f.unresolvedImports = row.unresolvedImports`, end.reresolved);
    // Every outgoing import of these files is gone (start() and above): CREATE, grouped by importer.
    const toFiles = groupBy(end.imports, (edge) => edge.from, (edge) => ('toFile' in edge ? edge.toFile : null));
    await this.rows(
      `UNWIND $rows AS row MATCH (a:File {repositoryId: $r, path: row.from})
       UNWIND row.targets AS target MATCH (b:File {repositoryId: $r, path: target})
       CREATE (a)-[:IMPORTS]->(b)`,
      [...toFiles].map(([from, targets]) => ({ from, targets: targets.filter((target) => target !== null) })).filter((row) => row.targets.length),
    );
    const modules = groupBy(end.imports, (edge) => edge.from, (edge) => ('module' in edge ? edge.module : null));
    await this.rows(
      `UNWIND $rows AS row MATCH (a:File {repositoryId: $r, path: row.from})
       UNWIND row.modules AS name MERGE (m:Module {repositoryId: $r, name: name})
       CREATE (a)-[:IMPORTS]->(m)`,
      [...modules].map(([from, names]) => ({ from, modules: names.filter((name) => name !== null) })).filter((row) => row.modules.length),
    );
    await this.rows(`UNWIND $rows AS p MATCH (d:Directory {repositoryId: $r, path: p}) DETACH DELETE d`, end.removedDirectories);
    if (!this.plan.full) await this.tx.run(`MATCH (m:Module {repositoryId: $r}) WHERE NOT EXISTS { ()-[:IMPORTS]->(m) } DELETE m`, { r: this.r });
    await this.tx.run(
      `MATCH (repo:Repository {id: $r})
       OPTIONAL MATCH (repo)-[:HEAD]->(old:Commit) DETACH DELETE old
       WITH DISTINCT repo
       SET repo.indexedSha = $commit.sha, repo.indexedAt = $now
       CREATE (repo)-[:HEAD]->(:Commit {repositoryId: $r, sha: $commit.sha, author: $commit.author, committedAt: $commit.committedAt, message: $commit.message})`,
      { r: this.r, commit: end.commit, now: new Date().toISOString() },
    );
  }

  /** One statement per batch of rows. */
  private async rows(query: string, rows: readonly unknown[]): Promise<void> {
    for (let start = 0; start < rows.length; start += batchSize) {
      this.signal?.throwIfAborted();
      await this.tx.run(query, { r: this.r, rows: rows.slice(start, start + batchSize) });
    }
  }
}

function byDepth(a: string, b: string): number {
  const depth = (dir: string) => (dir === '' ? 0 : dir.split('/').length);
  return depth(a) - depth(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** Items grouped by a key, each mapped, groups in first-seen order. */
function groupBy<T, V>(items: readonly T[], key: (item: T) => string, value: (item: T) => V): Map<string, V[]> {
  const groups = new Map<string, V[]>();
  for (const item of items) {
    const group = groups.get(key(item));
    if (group) group.push(value(item));
    else groups.set(key(item), [value(item)]);
  }
  return groups;
}

export function parentOf(filePath: string): string {
  const slash = filePath.lastIndexOf('/');
  return slash < 0 ? '' : filePath.slice(0, slash);
}

function baseName(filePath: string): string {
  return filePath.slice(filePath.lastIndexOf('/') + 1);
}

/** A Neo4j URL without any user information it might carry. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(unparseable NEO4J_URL)';
  }
}
