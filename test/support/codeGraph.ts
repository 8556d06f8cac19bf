import type { CodeGraph } from '../../src/indexing/codeGraph.js';
import { Indexer, type IndexOutcome } from '../../src/indexing/indexer.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics } from '../../src/metrics.js';
import type { Prisma } from '../../src/storage/database.js';
import { Git } from '../../src/sync/git.js';

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
  graph: CodeGraph;
  cwd: string;
  sourceRepositoryId: string;
  sha: string;
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
  await graph.removeRepository(shadow.id);
  const indexer = new Indexer(prisma, new Git({ timeoutMs: 120_000, idleTimeoutMs: 120_000 }), graph, createLogger('silent'), createMetrics(async () => ({})), {
    maxFileBytes: 1024 * 1024,
  });
  const outcome = await indexer.index(shadow.id, input.cwd, input.sha);
  return { graph: await dumpGraph(graph, shadow.id), metadata: await metadataOf(prisma, shadow.id), outcome };
}

/** A repository's metadata row without its id and index time. */
export async function metadataOf(prisma: Prisma, repositoryId: string): Promise<Record<string, unknown>> {
  const { repositoryId: _id, indexedAt: _at, ...rest } = await prisma.repositoryMetadata.findUniqueOrThrow({ where: { repositoryId } });
  return rest;
}
