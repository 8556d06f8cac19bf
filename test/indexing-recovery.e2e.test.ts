import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { CodeGraph } from '../src/indexing/codeGraph.js';
import { openDatabase } from '../src/storage/database.js';
import { createApiToken } from '../src/storage/tenants.js';
import { AddRepositoryDocument, CreateProjectDocument, SyncRepositoryDocument, SyncStatusDocument } from './generated/graphql.js';
import { waitForRepository } from './support/app.js';
import { TestClient } from './support/client.js';
import { dumpGraph, indexFromScratch, metadataOf } from './support/codeGraph.js';
import { createTestDatabase } from './support/database.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { neo4jTestEnv } from './support/neo4j.js';
import { faultSuite } from './support/reliabilityReport.js';
import { killAllServers, startServer } from './support/serverProcess.js';

const suite = faultSuite({
  name: 'killed while indexing',
  file: 'test/indexing-recovery.e2e.test.ts',
  intro: [
    'A `repolens serve` with the code graph (a real Neo4j) is killed while it indexes a commit that changes every one of',
    '3000 TypeScript files, then started again on the same DATA_DIR and database. The graph must be one commit\'s, whole',
    '(what indexing that commit from scratch gives), right after the kill and once the restart has indexed the new head.',
  ],
});

let gitServer: GitServer;

beforeAll(async () => {
  gitServer = await startGitServer();
});

afterAll(async () => {
  await killAllServers();
  await gitServer?.close();
});

function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
}

/** Enough TypeScript files that indexing them takes a while (the kill has to land inside it). */
function manyFiles(count: number, version: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const folder = `src/part-${i % 20}`;
    files[`${folder}/file-${i}.ts`] = [
      `import { value${(i + 1) % count} } from '../part-${(i + 1) % 20}/file-${(i + 1) % count}';`,
      "import { readFile } from 'node:fs/promises';",
      `export const value${i} = '${version}-${i}';`,
      `export function read${i}() {`,
      '  return readFile(value' + i + ');',
      '}',
      `export class Thing${i}${version.replace(/\W/g, '')} {`,
      '  run() {}',
      '}',
      '',
    ].join('\n');
  }
  return files;
}

suite.scenario(
  'a server killed during INDEXING leaves the graph at the old or the new commit, and after a restart indexes the new one',
  {
    fault: 'SIGKILL to the server\'s process group while it indexes (INDEXING) a commit that rewrites every one of 3000 TypeScript files',
    checks: 'right after the kill the graph is the old or the new commit\'s, equal to indexing that commit from scratch; after the restart the repository is SYNCED at the new head, no run is left active, and graph and metadata are exactly the new commit\'s',
  },
  async ({ nothingLost }) => {
    const database = await createTestDatabase();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'repolens-indexing-kill-'));
    const handle = await openDatabase({ databaseUrl: database.url, dataDir });
    const neo4j = neo4jTestEnv();
    const graph = await CodeGraph.connect({ url: neo4j.NEO4J_URL, user: neo4j.NEO4J_USER, password: neo4j.NEO4J_PASSWORD });
    try {
      const token = (await createApiToken(handle.prisma, 'acme')).token;
      const serve = () => startServer({ databaseUrl: database.url, dataDir, env: { REPOLENS_SCHEDULER_INTERVAL_MS: '0', ...neo4j } });
      let server = await serve();
      let client = new TestClient(server.url, token);

      const upstream = await createUpstream(gitServer, 'indexing-kill', { files: manyFiles(3000, 'v1') });
      const projectId = (await client.request(CreateProjectDocument, { name: 'indexing-kill' })).createProject.project.id;
      const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
      const id = addRepository.repository.id;
      const repositoryId = dbId(id);
      const oldSha = await upstream.head();
      await waitForRepository(client, id, (state) => state.status === 'SYNCED' && state.lastCommitSha === oldSha, 120_000);
      expect(await graph.indexedSha(repositoryId)).toBe(oldSha);

      // Every file changes: the incremental INDEXING of the next run has real work to do.
      const newSha = await upstream.commit(manyFiles(3000, 'v2'), 'rewrite every file');
      const events = client.subscribe(SyncStatusDocument, { repositoryId: id });
      await client.request(SyncRepositoryDocument, { repositoryId: id });
      await events.waitFor((list) => list.some((event) => event.syncStatus.phase === 'INDEXING'), 60_000);
      server.killGroup('SIGKILL');
      await server.waitForExit();
      await events.close().catch(() => undefined);

      // Whatever the kill interrupted, the graph is one commit's, whole.
      const cwd = path.join(dataDir, 'repos', repositoryId);
      await nothingLost(async () => {
        const at = await graph.indexedSha(repositoryId);
        expect([oldSha, newSha]).toContain(at);
        expect(await dumpGraph(graph, repositoryId)).toEqual((await indexFromScratch({ prisma: handle.prisma, graph, cwd, sourceRepositoryId: repositoryId, sha: at! })).graph);
      });

      server = await serve();
      client = new TestClient(server.url, token);
      await nothingLost(async () => {
        await waitForRepository(client, id, (state) => state.status === 'SYNCED' && state.lastCommitSha === newSha, 120_000);
        await expect.poll(() => handle.prisma.syncRun.count({ where: { repositoryId, activeSlot: { not: null } } }), { timeout: 30_000 }).toBe(0);
        expect(await graph.indexedSha(repositoryId)).toBe(newSha);
        const expected = await indexFromScratch({ prisma: handle.prisma, graph, cwd, sourceRepositoryId: repositoryId, sha: newSha });
        expect(await dumpGraph(graph, repositoryId)).toEqual(expected.graph);
        expect(await metadataOf(handle.prisma, repositoryId)).toEqual(expected.metadata);
      });
    } finally {
      await killAllServers();
      await graph.close();
      await handle.close();
      await database.drop().catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  },
  300_000,
);

suite.reportCheck();
