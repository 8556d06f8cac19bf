import type { CodeGraph } from '../../src/indexing/codeGraph.js';
import { Indexer, type IndexOutcome } from '../../src/indexing/indexer.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics } from '../../src/metrics.js';
import type { Prisma } from '../../src/storage/database.js';
import { Git } from '../../src/sync/git.js';
import { mulberry32, type FileChange } from './gitFixtures.js';

/**
 * A repository's whole subgraph as sorted plain text lines, with the
 * repository id and index times left out: two repositories indexed at the
 * same commit (one incrementally, one from scratch) must give the same lines.
 */
export async function dumpGraph(graph: CodeGraph, repositoryId: string): Promise<string[]> {
  const nodes = await graph.read<{ labels: string[]; props: Record<string, unknown> }>(
    `MATCH (n) WHERE n.repositoryId = $r OR (n:Repository AND n.id = $r) RETURN labels(n) AS labels, properties(n) AS props
     UNION ALL
     MATCH (:File {repositoryId: $r})-[:DEFINES]->(n:Symbol) RETURN labels(n) AS labels, properties(n) AS props`,
    { r: repositoryId },
  );
  const edges = await graph.read<{ from: string; type: string; to: string; foreign: boolean }>(
    `MATCH (a)-[e]->(b) WHERE a.repositoryId = $r OR (a:Repository AND a.id = $r)
     RETURN ${keyOf('a')} AS from, type(e) AS type, ${keyOf('b')} AS to,
            NOT (b:Symbol OR b.repositoryId = $r OR (b:Repository AND b.id = $r)) AS foreign`,
    { r: repositoryId },
  );
  // Every symbol hangs off exactly one file of the repository.
  const [orphans] = await graph.read<{ count: number }>(
    `MATCH (:File {repositoryId: $r})-[:DEFINES]->(s:Symbol) WITH s, COUNT { ()-[:DEFINES]->(s) } AS owners WHERE owners <> 1 RETURN count(s) AS count`,
    { r: repositoryId },
  );
  const lines: string[] = orphans!.count ? [`${orphans!.count} symbols with more than one file`] : [];
  for (const node of nodes) {
    const { repositoryId: _r, id: _id, indexedAt: _at, ...props } = node.props;
    lines.push(`${node.labels.sort().join(':')} ${JSON.stringify(sortKeys(props))}`);
  }
  for (const edge of edges) lines.push(`${edge.from} -${edge.type}-> ${edge.to}${edge.foreign ? ' (FOREIGN)' : ''}`);
  return lines.sort();
}

/** A readable identity for a node: label and path / name / sha (a symbol: name, kind and line). */
function keyOf(variable: string): string {
  const v = variable;
  return `head(labels(${v})) + ':' + CASE WHEN ${v}:Symbol THEN ${v}.name + '@' + ${v}.kind + '@' + toString(${v}.startLine) ELSE coalesce(${v}.path, ${v}.name, ${v}.sha, 'repository') END`;
}

function sortKeys(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * Indexes `sha` from scratch into a shadow repository (a second row of the
 * same project, made on first use) with a fresh Indexer reading the same git
 * repository, and returns its graph and metadata: what an incrementally
 * maintained index of the source repository must equal.
 */
export async function indexFromScratch(input: {
  prisma: Prisma;
  /** null: metadata only (as a service without NEO4J_URL indexes). */
  graph: CodeGraph | null;
  cwd: string;
  sourceRepositoryId: string;
  sha: string;
  /** REPOLENS_INDEX_MAX_FILE_BYTES of the index compared with (default 1 MiB). */
  maxFileBytes?: number;
}): Promise<{ graph: string[]; metadata: Record<string, unknown>; outcome: IndexOutcome }> {
  const { prisma, graph } = input;
  const source = await prisma.repository.findUniqueOrThrow({ where: { id: input.sourceRepositoryId } });
  const url = `${source.url}#from-scratch`;
  const shadow = await prisma.repository.upsert({
    where: { projectId_url_branch: { projectId: source.projectId, url, branch: source.branch } },
    create: { tenantId: source.tenantId, projectId: source.projectId, provider: source.provider, name: `${source.name}-from-scratch`, url, host: source.host, branch: source.branch },
    update: {},
  });
  await prisma.repositoryMetadata.deleteMany({ where: { repositoryId: shadow.id } });
  await graph?.removeRepository(shadow.id);
  const indexer = new Indexer(prisma, new Git({ timeoutMs: 120_000, idleTimeoutMs: 120_000 }), graph, createLogger('silent'), createMetrics(async () => ({})), {
    maxFileBytes: input.maxFileBytes ?? 1024 * 1024,
  });
  const outcome = await indexer.index(shadow.id, input.cwd, input.sha);
  return { graph: graph ? await dumpGraph(graph, shadow.id) : [], metadata: await metadataOf(prisma, shadow.id), outcome };
}

/** A repository's metadata row without its id and index time. */
export async function metadataOf(prisma: Prisma, repositoryId: string): Promise<Record<string, unknown>> {
  const { repositoryId: _id, indexedAt: _at, ...rest } = await prisma.repositoryMetadata.findUniqueOrThrow({ where: { repositoryId } });
  return rest;
}

const folders = ['src', 'src/lib', 'src/lib/deep', 'app', 'pkg', 'pkg/sub', 'cmd'];

/**
 * Random commits for the incremental = from-scratch invariant: files added
 * (TypeScript, TSX, Python, Go, now and then binary), changed, deleted,
 * renamed (same content, so git diff -M sees a rename), turned into
 * symlinks, and whole folders deleted, with imports that name files which
 * may or may not exist, so resolutions change as paths come and go.
 */
export class RandomEdits {
  private readonly random: () => number;
  private readonly contents: Map<string, FileChange>;

  constructor(seed: number, initial: Record<string, string>) {
    this.random = mulberry32(seed * 7919);
    this.contents = new Map(Object.entries(initial));
  }

  /** The next commit's changes (never empty). */
  next(round: number): Record<string, FileChange> {
    const changes: Record<string, FileChange> = {};
    const steps = 1 + Math.floor(this.random() * 5);
    for (let step = 0; step < steps || !Object.keys(changes).length; step++) {
      const existing = [...this.contents.keys()].filter((path) => !(path in changes));
      const pick = existing[Math.floor(this.random() * existing.length)];
      const action = this.random();
      if (action < 0.38 || !pick) {
        const [path, content] = this.file(round);
        if (path in changes) continue;
        this.set(changes, path, content);
      } else if (action < 0.55) {
        this.set(changes, pick, null);
      } else if (action < 0.7) {
        const content = this.contents.get(pick)!;
        const [target] = this.file(round);
        if (this.contents.has(target) || target in changes) continue;
        this.set(changes, pick, null);
        this.set(changes, target, content);
      } else if (action < 0.78) {
        this.set(changes, pick, { symlink: 'README.md' });
      } else if (action < 0.82) {
        // A whole folder goes: its directories must go from the graph too.
        const folder = pick.includes('/') ? pick.slice(0, pick.lastIndexOf('/')) : null;
        if (!folder) continue;
        for (const path of existing) if (path.startsWith(`${folder}/`)) this.set(changes, path, null);
      } else {
        const [, content] = this.file(round, pick);
        this.set(changes, pick, content);
      }
    }
    return changes;
  }

  private set(changes: Record<string, FileChange>, path: string, content: FileChange): void {
    changes[path] = content;
    if (content === null) this.contents.delete(path);
    else this.contents.set(path, content);
  }

  /** A random file (or new content for `path`) whose imports name other files that may or may not exist. */
  private file(round: number, path?: string): [string, FileChange] {
    const random = this.random;
    const folder = folders[Math.floor(random() * folders.length)]!;
    const kind = path ? kindOf(path) : folder.startsWith('pkg') ? 'py' : folder === 'cmd' ? 'go' : random() < 0.05 ? 'bin' : random() < 0.2 ? 'tsx' : 'ts';
    const target = path ?? `${folder}/${kind === 'py' ? 'm' : 'f'}${Math.floor(random() * 12)}.${kind === 'bin' ? 'ts' : kind}`;
    if (kind === 'bin') return [target, `binary\u0000${round}\u0001`];
    const lines: string[] = [];
    for (let i = 0, imports = Math.floor(random() * 4); i < imports; i++) {
      if (kind === 'py') {
        const name = `m${Math.floor(random() * 12)}`;
        lines.push(random() < 0.5 ? `from . import ${name}` : `from pkg.sub.${name} import thing`, random() < 0.3 ? 'import requests' : '');
      } else if (kind === 'go') {
        lines.push(`import "example.com/mod${Math.floor(random() * 3)}"`);
      } else {
        const scripts = [...this.contents.keys()].filter((candidate) => /\.tsx?$/.test(candidate));
        const to = random() < 0.7 && scripts.length ? scripts[Math.floor(random() * scripts.length)]! : `src/f${Math.floor(random() * 12)}.ts`;
        lines.push(`import { x${i} } from '${relativeImport(target, to)}';`, random() < 0.3 ? "import lodash from 'lodash';" : '');
      }
    }
    if (kind === 'py') lines.push(`class C${round}:`, `    def m${round}(self):`, '        pass', `def f${round}():`, '    pass');
    else if (kind === 'go') {
      lines.unshift('package main');
      lines.push(`func F${round}() {}`, `type T${round} struct{}`);
    } else lines.push(`export function f${round}() {}`, `export class K${round} {`, `  m${round}() {}`, '}');
    return [target, lines.join('\n') + '\n'];
  }
}

function kindOf(path: string): 'py' | 'go' | 'tsx' | 'ts' {
  return path.endsWith('.py') ? 'py' : path.endsWith('.go') ? 'go' : path.endsWith('.tsx') ? 'tsx' : 'ts';
}

function relativeImport(from: string, to: string): string {
  const fromParts = from.split('/').slice(0, -1);
  const toParts = to.replace(/\.tsx?$/, '').split('/');
  let common = 0;
  while (common < fromParts.length && fromParts[common] === toParts[common]) common++;
  const up = fromParts.length - common;
  return `${up ? '../'.repeat(up) : './'}${toParts.slice(common).join('/')}`;
}
