import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodeGraph } from '../src/indexing/codeGraph.js';
import { Indexer } from '../src/indexing/indexer.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { openDatabase, type Database } from '../src/storage/database.js';
import { Git } from '../src/sync/git.js';
import { dumpGraph, indexFromScratch, metadataOf, RandomEdits } from './support/codeGraph.js';
import { createTestDatabase } from './support/database.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { neo4jTestEnv } from './support/neo4j.js';

/**
 * The invariant of SPEC §1 INDEXING on many random edit sequences, without the
 * sync around it (code-graph.e2e covers that path): the Indexer, run
 * incrementally commit after commit over a repository's objects, always
 * leaves the same graph and metadata as a from-scratch index of that commit.
 */
let server: GitServer;
let database: { url: string; drop(): Promise<void> };
let db: Database;
let graph: CodeGraph;

beforeAll(async () => {
  server = await startGitServer();
  database = await createTestDatabase();
  db = await openDatabase({ databaseUrl: database.url, dataDir: '/nonexistent' });
  const neo4j = neo4jTestEnv();
  graph = await CodeGraph.connect({ url: neo4j.NEO4J_URL, user: neo4j.NEO4J_USER, password: neo4j.NEO4J_PASSWORD });
});

afterAll(async () => {
  await graph?.close();
  await db?.close();
  await database?.drop();
  await server?.close();
});

async function repositoryRow(name: string): Promise<string> {
  const tenant = await db.prisma.tenant.create({ data: { name } });
  const project = await db.prisma.project.create({ data: { tenantId: tenant.id, name } });
  const repository = await db.prisma.repository.create({
    data: { tenantId: tenant.id, projectId: project.id, provider: 'GIT', name, url: `https://example.invalid/${name}.git`, host: 'example.invalid', branch: 'main' },
  });
  return repository.id;
}

describe('incremental index = from-scratch index', () => {
  const seeds = Array.from({ length: 8 }, (_, index) => index + 10);
  it.each(seeds)('over 12 random commits (seed %i)', async (seed) => {
    const upstream = await createUpstream(server, `invariant-${seed}`, { files: { 'README.md': '# start\n', 'pkg/__init__.py': '', 'pkg/sub/__init__.py': '' } });
    const repositoryId = await repositoryRow(`invariant-${seed}`);
    const indexer = new Indexer(db.prisma, new Git({ timeoutMs: 60_000, idleTimeoutMs: 60_000 }), graph, createLogger('silent'), createMetrics(async () => ({})), {
      maxFileBytes: 1024 * 1024,
    });
    // The bare repository holds every commit: the indexer reads objects only.
    const cwd = upstream.bareDir;
    expect(await indexer.index(repositoryId, cwd, await upstream.head())).toMatchObject({ metadata: 'full', graph: 'full', warning: null });
    const edits = new RandomEdits(seed, { 'README.md': '# start\n', 'pkg/__init__.py': '', 'pkg/sub/__init__.py': '' });
    for (let round = 0; round < 12; round++) {
      const sha = await upstream.commit(edits.next(round), `round ${round}`);
      const outcome = await indexer.index(repositoryId, cwd, sha);
      expect(outcome).toMatchObject({ metadata: 'incremental', graph: 'incremental', warning: null });
      const expected = await indexFromScratch({ prisma: db.prisma, graph, cwd, sourceRepositoryId: repositoryId, sha });
      expect(await dumpGraph(graph, repositoryId), `seed ${seed}, round ${round}`).toEqual(expected.graph);
      expect(await metadataOf(db.prisma, repositoryId), `seed ${seed}, round ${round}`).toEqual(expected.metadata);
    }
  });

  it.each([20, 21, 22])('metadata alone (no code graph configured), over 12 random commits (seed %i)', async (seed) => {
    const upstream = await createUpstream(server, `invariant-metadata-${seed}`, { files: { 'README.md': '# start\n', LICENSE: 'MIT License\n' } });
    const repositoryId = await repositoryRow(`invariant-metadata-${seed}`);
    const indexer = new Indexer(db.prisma, new Git({ timeoutMs: 60_000, idleTimeoutMs: 60_000 }), null, createLogger('silent'), createMetrics(async () => ({})), {
      maxFileBytes: 64,
    });
    const cwd = upstream.bareDir;
    await indexer.index(repositoryId, cwd, await upstream.head());
    const edits = new RandomEdits(seed, { 'README.md': '# start\n', LICENSE: 'MIT License\n' });
    for (let round = 0; round < 12; round++) {
      const changes = edits.next(round);
      // Now and then the root changes: README and LICENSE come and go.
      if (round % 4 === 1) changes[round % 8 === 1 ? 'README.md' : 'readme.rst'] = round % 8 === 1 ? null : 'Read me\n';
      if (round % 4 === 3) changes.LICENSE = round % 8 === 3 ? null : 'Apache License\nVersion 2.0, January 2004\n';
      const sha = await upstream.commit(changes, `round ${round}`);
      expect(await indexer.index(repositoryId, cwd, sha)).toMatchObject({ metadata: 'incremental', graph: 'disabled', warning: null });
      const expected = await indexFromScratch({ prisma: db.prisma, graph: null, cwd, sourceRepositoryId: repositoryId, sha, maxFileBytes: 64 });
      expect(await metadataOf(db.prisma, repositoryId), `seed ${seed}, round ${round}`).toEqual(expected.metadata);
      // The size limit is for files: the commit is read whatever its size.
      expect(expected.metadata).toMatchObject({ commitSha: sha, lastCommitMessage: `round ${round}`, lastCommitAuthor: 'RepoLens Fixture' });
    }
  });

  it('a previous commit the repository no longer has (history rewritten and collected) means a from-scratch index', async () => {
    const before = await createUpstream(server, 'invariant-before', { files: { 'a.ts': "import './b';\nexport function a() {}\n", 'b.ts': '' } });
    const after = await createUpstream(server, 'invariant-after', { files: { 'c.ts': "import './a';\nexport function c() {}\n" } });
    const repositoryId = await repositoryRow('invariant-rewrite');
    const indexer = new Indexer(db.prisma, new Git({ timeoutMs: 60_000, idleTimeoutMs: 60_000 }), graph, createLogger('silent'), createMetrics(async () => ({})), {
      maxFileBytes: 1024 * 1024,
    });
    await indexer.index(repositoryId, before.bareDir, await before.head());
    // `after` never had the indexed commit: git diff cannot start from it.
    const sha = await after.head();
    expect(await indexer.index(repositoryId, after.bareDir, sha)).toMatchObject({ metadata: 'full', graph: 'full', warning: null });
    const expected = await indexFromScratch({ prisma: db.prisma, graph, cwd: after.bareDir, sourceRepositoryId: repositoryId, sha });
    expect(await dumpGraph(graph, repositoryId)).toEqual(expected.graph);
    expect(await metadataOf(db.prisma, repositoryId)).toEqual(expected.metadata);
    expect((await graph.file(repositoryId, 'c.ts'))?.unresolvedImports).toEqual(['./a']);
  });
});
