import { createServer, connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodeGraph } from '../src/indexing/codeGraph.js';
import {
  AddRepositoryDocument,
  CreateProjectDocument,
  RemoveRepositoryDocument,
  RepositoryDependenciesDocument,
  RepositoryFileNodeDocument,
  RepositoryFilesDocument,
  RepositoryMetadataDocument,
  RepositorySymbolsDocument,
  SyncRepositoryDocument,
} from './generated/graphql.js';
import { startTestApp, waitForIdle, waitForRepository, type TestApp } from './support/app.js';
import type { TestClient } from './support/client.js';
import { dumpGraph, indexFromScratch, metadataOf, RandomEdits } from './support/codeGraph.js';
import { createUpstream, type FileChange, type Upstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';
import { neo4jTestEnv } from './support/neo4j.js';
import { freePort } from './support/serverProcess.js';

let server: GitServer;

beforeAll(async () => {
  server = await startGitServer();
});

afterAll(async () => {
  await server?.close();
});

function dbId(globalId: string): string {
  return Buffer.from(globalId, 'base64url').toString().split(':')[1]!;
}

interface Harness {
  testApp: TestApp;
  client: TestClient;
  projectId: string;
}

async function startHarness(env: Record<string, string>, tenant = 'acme'): Promise<Harness> {
  const testApp = await startTestApp({ env });
  const client = await testApp.client(tenant);
  const projectId = (await client.request(CreateProjectDocument, { name: 'graph' })).createProject.project.id;
  return { testApp, client, projectId };
}

async function addSynced(harness: Harness, upstream: Upstream, client = harness.client, projectId = harness.projectId) {
  const { addRepository } = await client.request(AddRepositoryDocument, { input: { projectId, url: upstream.url, archivePolicy: 'NONE' } });
  const id = addRepository.repository.id;
  const head = await upstream.head();
  await waitForRepository(client, id, (state) => state.status === 'SYNCED' && state.lastCommitSha === head);
  await waitForIdle(harness.testApp.app, dbId(id));
  return id;
}

async function syncTo(harness: Harness, id: string, sha: string) {
  await harness.client.request(SyncRepositoryDocument, { repositoryId: id });
  await waitForRepository(harness.client, id, (state) => state.status === 'SYNCED' && state.lastCommitSha === sha);
  await waitForIdle(harness.testApp.app, dbId(id));
}

const MIT = `MIT License

Copyright (c) 2026 RepoLens

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
`;

/** One file per language the graph parses, plus what it must skip or survive. */
const fixture: Record<string, FileChange> = {
  'README.md': '# Fixture\n\nA repository for the code graph tests.\n',
  LICENSE: MIT,
  'docs/guide.md': '# Guide\n\nDocumentation is left out of the language breakdown.\n',
  'src/app.ts': [
    "import { helper } from './util';",
    "import React from 'react';",
    "import type { Config } from './types.js';",
    "import './missing';",
    'export interface Options {',
    '  verbose: boolean;',
    '}',
    'export type Id = string;',
    'export enum Color {',
    '  Red,',
    '}',
    'export class Service {',
    '  run(): void {}',
    '}',
    'export function main(config: Config): number {',
    '  return helper();',
    '}',
    '',
  ].join('\n'),
  'src/util.ts': 'export function helper(): number {\n  return 1;\n}\n',
  'src/types.ts': 'export interface Config {\n  a: number;\n}\n',
  'src/globals.d.ts': 'declare function globalHelper(): void;\ninterface Window {\n  repolens: string;\n}\n',
  'node_modules/dep/index.d.ts': 'export declare function vendoredType(): void;\n',
  'src/other.ts': "import { useState } from 'react';\nexport const counter = () => useState(0);\n",
  'web/view.tsx': "import { Service } from '../src/app';\nexport function View() {\n  return <div>{String(Service)}</div>;\n}\n",
  'lib/legacy.js': "const fs = require('fs');\nfunction legacy() {\n  return fs;\n}\nmodule.exports = { legacy };\n",
  'py/pkg/__init__.py': '',
  'py/pkg/base.py': 'class Base:\n    pass\n',
  'py/pkg/models.py': 'import os\nfrom .base import Base\n\n\nclass Model(Base):\n    def save(self):\n        return os.getcwd()\n',
  'py/main.py': 'from pkg.models import Model\nimport numpy as np\n\n\ndef run():\n    return Model()\n',
  'go/main.go': 'package main\n\nimport (\n\t"fmt"\n\t"github.com/acme/lib"\n)\n\ntype Server struct{}\n\ntype Handler interface {\n\tServe()\n}\n\nfunc (s *Server) Start() {}\n\nfunc main() {\n\tfmt.Println(lib.X)\n}\n',
  'java/App.java': 'package com.acme;\n\nimport java.util.List;\n\npublic class App {\n  public App() {}\n\n  public void run(List<String> args) {}\n}\n',
  'rust/lib.rs': 'use serde::Serialize;\nuse std::collections::HashMap;\n\npub struct Point {\n    x: i32,\n}\n\npub trait Shape {\n    fn area(&self) -> f64;\n}\n\nimpl Point {\n    pub fn new() -> Self {\n        Point { x: 0 }\n    }\n}\n\npub fn top() {}\n',
  // skipped by rule
  'node_modules/dep/index.js': 'export function vendored() {}\n',
  'gen/schema.ts': '// @generated by a tool\nexport function generated() {}\n',
  'src/blob.ts': 'binary\u0000\u0001\u0002 content\n',
  'big/huge.ts': 'export const x = 1;\n'.repeat(1000),
  'link-passwd': { symlink: '/etc/passwd' },
  'src/alias.ts': { symlink: 'util.ts' },
  // odd names
  'odd names/with space.ts': 'export function spaced() {}\n',
  'unicode/ñandú.ts': 'export function ñandú() {}\n',
  'weird\nname.ts': 'export function newline() {}\n',
};

describe('code graph and metadata (Neo4j)', () => {
  let harness: Harness;
  let upstream: Upstream;
  let id: string;

  beforeAll(async () => {
    harness = await startHarness({ ...neo4jTestEnv(), REPOLENS_INDEX_MAX_FILE_BYTES: '8192' });
    upstream = await createUpstream(server, 'graph-fixture', { files: {} });
    await upstream.commit(fixture, 'initial commit');
    id = await addSynced(harness, upstream);
  });

  afterAll(async () => {
    await harness?.testApp.close();
  });

  async function fileNode(path: string, repositoryId = id) {
    return (await harness.client.request(RepositoryFileNodeDocument, { id: repositoryId, path })).repository!.fileNode;
  }

  it('stores metadata: languages without vendored, generated, documentation and binary files; README, license, last commit', async () => {
    const { repository } = await harness.client.request(RepositoryMetadataDocument, { id });
    const metadata = repository!.metadata!;
    expect(metadata.commitSha).toBe(repository!.lastCommitSha);
    const byLanguage = Object.fromEntries(metadata.languages.map((share) => [share.language, share]));
    // README.md and docs/ are documentation (linguist's rule): no Markdown.
    expect(Object.keys(byLanguage).sort()).toEqual(['Go', 'Java', 'JavaScript', 'Python', 'Rust', 'TSX', 'TypeScript']);
    // app, util, types, other, huge, with space, ñandú, weird\nname: not the vendored, generated, binary or symlinked ones.
    expect(byLanguage.TypeScript!.files).toBe(8);
    expect(byLanguage.JavaScript).toMatchObject({ files: 1, lines: 5 });
    expect(byLanguage.Python).toMatchObject({ files: 4, lines: 2 + 5 + 4 });
    // A file over the size limit counts in files and bytes, not in lines.
    expect(byLanguage.TypeScript!.bytes).toBeGreaterThan(20_000);
    expect(metadata.linesOfCode).toBe(metadata.languages.reduce((sum, share) => sum + share.lines, 0));
    expect(metadata.fileCount).toBe(Object.keys(fixture).length);
    const bytes = Object.values(fixture).reduce((sum, content) => sum + Buffer.byteLength(typeof content === 'string' ? content : ('symlink' in content! ? content.symlink : content!.executable)), 0);
    expect(metadata.totalBytes).toBe(bytes);
    expect(metadata.readmePath).toBe('README.md');
    expect(metadata.license).toBe('MIT');
    expect(metadata.lastCommitAuthor).toBe('RepoLens Fixture');
    expect(metadata.lastCommitMessage).toBe('initial commit');
    expect(metadata.lastCommitAt).toMatch(/^2024-01-01T/);
  });

  it('parses TypeScript: symbols, imports resolved inside the repository, external and unresolved ones', async () => {
    const node = (await fileNode('src/app.ts'))!;
    expect(node.language).toBe('TypeScript');
    expect(node.skipped).toBeNull();
    expect(node.symbols.map((symbol) => [symbol.name, symbol.kind, symbol.startLine, symbol.endLine])).toEqual([
      ['Options', 'interface', 5, 7],
      ['Id', 'type', 8, 8],
      ['Color', 'enum', 9, 11],
      ['Service', 'class', 12, 14],
      ['run', 'method', 13, 13],
      ['main', 'function', 15, 17],
    ]);
    expect(node.imports.map((file) => file.path)).toEqual(['src/types.ts', 'src/util.ts']);
    expect(node.externalImports).toEqual(['react']);
    expect(node.unresolvedImports).toEqual(['./missing']);
    expect(node.importedBy.map((file) => file.path)).toEqual(['web/view.tsx']);
    expect((await fileNode('src/util.ts'))!.importedBy.map((file) => file.path)).toEqual(['src/app.ts']);
    const view = (await fileNode('web/view.tsx'))!;
    expect(view.language).toBe('TSX');
    expect(view.symbols.map((symbol) => symbol.name)).toEqual(['View']);
    const legacy = (await fileNode('lib/legacy.js'))!;
    expect(legacy.symbols.map((symbol) => [symbol.name, symbol.kind])).toEqual([['legacy', 'function']]);
    expect(legacy.externalImports).toEqual(['fs']);
  });

  it('parses Python with relative and package imports', async () => {
    const models = (await fileNode('py/pkg/models.py'))!;
    expect(models.symbols.map((symbol) => [symbol.name, symbol.kind, symbol.startLine, symbol.endLine])).toEqual([
      ['Model', 'class', 5, 7],
      ['save', 'method', 6, 7],
    ]);
    expect(models.imports.map((file) => file.path)).toEqual(['py/pkg/base.py']);
    expect(models.externalImports).toEqual(['os']);
    const main = (await fileNode('py/main.py'))!;
    expect(main.imports.map((file) => file.path)).toEqual(['py/pkg/models.py']);
    expect(main.externalImports).toEqual(['numpy']);
    expect(main.symbols.map((symbol) => [symbol.name, symbol.kind])).toEqual([['run', 'function']]);
  });

  it('parses Go, Java and Rust', async () => {
    const go = (await fileNode('go/main.go'))!;
    expect(go.symbols.map((symbol) => [symbol.name, symbol.kind])).toEqual([
      ['Server', 'struct'],
      ['Handler', 'interface'],
      ['Start', 'method'],
      ['main', 'function'],
    ]);
    expect(go.externalImports).toEqual(['fmt', 'github.com/acme/lib']);
    const java = (await fileNode('java/App.java'))!;
    expect(java.symbols.map((symbol) => [symbol.name, symbol.kind])).toEqual([
      ['App', 'class'],
      ['App', 'method'],
      ['run', 'method'],
    ]);
    expect(java.externalImports).toEqual(['java.util']);
    const rust = (await fileNode('rust/lib.rs'))!;
    expect(rust.symbols.map((symbol) => [symbol.name, symbol.kind])).toEqual([
      ['Point', 'struct'],
      ['Shape', 'trait'],
      ['area', 'method'],
      ['new', 'method'],
      ['top', 'function'],
    ]);
    expect(rust.externalImports).toEqual(['serde', 'std']);
  });

  it('skips vendored, generated, binary, too large and symlinked files by rule, and never follows a symlink', async () => {
    const expectations: [string, string][] = [
      ['node_modules/dep/index.js', 'vendored'],
      ['node_modules/dep/index.d.ts', 'vendored'],
      ['gen/schema.ts', 'generated'],
      ['src/blob.ts', 'binary'],
      ['big/huge.ts', 'too large'],
      ['link-passwd', 'symlink'],
      ['src/alias.ts', 'symlink'],
    ];
    for (const [path, reason] of expectations) {
      const node = await fileNode(path);
      expect(node, path).not.toBeNull();
      expect([path, node!.skipped]).toEqual([path, reason]);
      expect(node!.symbols).toEqual([]);
    }
    // The symlink's node holds what git holds (the link), not /etc/passwd.
    expect((await fileNode('link-passwd'))!.bytes).toBe('/etc/passwd'.length);
  });

  it('parses declaration files (left out of the language statistics, as linguist does) unless they are vendored', async () => {
    const node = (await fileNode('src/globals.d.ts'))!;
    expect(node.skipped).toBeNull();
    expect(node.symbols.map((symbol) => [symbol.name, symbol.kind])).toEqual([
      ['globalHelper', 'function'],
      ['Window', 'interface'],
    ]);
  });

  it('indexes files with spaces, unicode and newlines in their names', async () => {
    for (const [path, symbol] of [
      ['odd names/with space.ts', 'spaced'],
      ['unicode/ñandú.ts', 'ñandú'],
      ['weird\nname.ts', 'newline'],
    ]) {
      const node = await fileNode(path!);
      expect(node?.symbols.map((entry) => entry.name), path).toEqual([symbol]);
    }
  });

  it('lists files by prefix and language, pages them, and refuses oversized pages', async () => {
    const python = (await harness.client.request(RepositoryFilesDocument, { id, pathPrefix: 'py/', first: 10 })).repository!.files!;
    expect(python.edges.map((edge) => edge.node.path)).toEqual(['py/main.py', 'py/pkg/__init__.py', 'py/pkg/base.py', 'py/pkg/models.py']);
    const typescript = (await harness.client.request(RepositoryFilesDocument, { id, language: 'TypeScript', first: 3 })).repository!.files!;
    expect(typescript.pageInfo.hasNextPage).toBe(true);
    const rest = (await harness.client.request(RepositoryFilesDocument, { id, language: 'TypeScript', first: 100, after: typescript.pageInfo.endCursor })).repository!.files!;
    const all = [...typescript.edges, ...rest.edges].map((edge) => edge.node.path);
    expect(all).toEqual([...all].sort());
    expect(all).toContain('src/app.ts');
    expect(all).not.toContain('web/view.tsx');
    expect(await harness.client.errorCode(RepositoryFilesDocument, { id, first: 101 })).toBe('BAD_USER_INPUT');
  });

  it('searches symbols by name and kind, and counts external dependencies', async () => {
    const found = (await harness.client.request(RepositorySymbolsDocument, { id, query: 'HELP' })).repository!.symbols!;
    expect(found.edges.map((edge) => [edge.node.name, edge.node.path])).toEqual([
      ['globalHelper', 'src/globals.d.ts'],
      ['helper', 'src/util.ts'],
    ]);
    const classes = (await harness.client.request(RepositorySymbolsDocument, { id, query: '', kind: 'class', first: 2 })).repository!.symbols!;
    expect(classes.edges.map((edge) => edge.node.name)).toEqual(['App', 'Base']);
    const more = (await harness.client.request(RepositorySymbolsDocument, { id, query: '', kind: 'class', first: 10, after: classes.pageInfo.endCursor })).repository!.symbols!;
    expect(more.edges.map((edge) => edge.node.name)).toEqual(['Model', 'Service']);
    const { dependencies } = (await harness.client.request(RepositoryDependenciesDocument, { id })).repository!;
    expect(dependencies![0]).toEqual({ module: 'react', importCount: 2 });
    expect(dependencies!.map((dependency) => dependency.module).sort()).toEqual(
      ['fmt', 'fs', 'github.com/acme/lib', 'java.util', 'numpy', 'os', 'react', 'serde', 'std'].sort(),
    );
  });

  it('keeps the directory tree as CONTAINS edges from the repository down', async () => {
    const graph = harness.testApp.app.services.graph!;
    const rows = await graph.read<{ path: string }>(
      `MATCH (:Repository {id: $r})-[:CONTAINS]->(:Directory {path: ''})-[:CONTAINS*]->(f:File) RETURN f.path AS path`,
      { r: dbId(id) },
    );
    expect(rows.map((row) => row.path).sort()).toEqual(Object.keys(fixture).sort());
    const pkg = await graph.read<{ name: string }>(
      `MATCH (:Directory {repositoryId: $r, path: 'py/pkg'})-[:CONTAINS]->(child) RETURN child.name AS name ORDER BY name`,
      { r: dbId(id) },
    );
    expect(pkg.map((row) => row.name)).toEqual(['__init__.py', 'base.py', 'models.py']);
  });

  it("keeps each repository's graph apart: another tenant's registration of the same upstream is its own subgraph", async () => {
    const other = await harness.testApp.client('globex');
    const otherProject = (await other.request(CreateProjectDocument, { name: 'graph' })).createProject.project.id;
    const otherId = await addSynced(harness, upstream, other, otherProject);
    // Neither tenant reaches the other's repository, so neither reaches its graph.
    expect(await other.errorCode(RepositoryFileNodeDocument, { id, path: 'src/app.ts' })).toBe('NOT_FOUND');
    expect(await harness.client.errorCode(RepositoryFileNodeDocument, { id: otherId, path: 'src/app.ts' })).toBe('NOT_FOUND');
    expect(await other.errorCode(RepositoryFilesDocument, { id })).toBe('NOT_FOUND');
    const graph = harness.testApp.app.services.graph!;
    const mine = await dumpGraph(graph, dbId(id));
    const theirs = await dumpGraph(graph, dbId(otherId));
    expect(mine.some((line) => line.includes('FOREIGN'))).toBe(false);
    expect(theirs).toEqual(mine);
    await other.request(RemoveRepositoryDocument, { repositoryId: otherId });
    expect(await dumpGraph(graph, dbId(otherId))).toEqual([]);
    expect(await dumpGraph(graph, dbId(id))).toEqual(mine);
  });
});

describe('incremental indexing', () => {
  let harness: Harness;
  let graph: CodeGraph;

  beforeAll(async () => {
    harness = await startHarness({ ...neo4jTestEnv() });
    graph = await CodeGraph.connect({ url: neo4jTestEnv().NEO4J_URL, user: neo4jTestEnv().NEO4J_USER, password: neo4jTestEnv().NEO4J_PASSWORD });
  });

  afterAll(async () => {
    await graph?.close();
    await harness?.testApp.close();
  });

  async function fromScratch(repositoryId: string, sha: string) {
    const prisma = harness.testApp.app.db.prisma;
    const cwd = harness.testApp.app.services.copies.pathOf(repositoryId);
    const expected = await indexFromScratch({ prisma, graph, cwd, sourceRepositoryId: repositoryId, sha });
    expect(expected.outcome).toMatchObject({ metadata: 'full', graph: 'full', warning: null });
    return expected;
  }

  it.each([1, 2])('through syncs: equals a from-scratch index after every step of a random edit sequence (seed %i)', async (seed) => {
    const upstream = await createUpstream(server, `graph-incremental-${seed}`, { files: { 'README.md': '# start\n', 'pkg/__init__.py': '', 'pkg/sub/__init__.py': '' } });
    const id = await addSynced(harness, upstream);
    const repositoryId = dbId(id);
    const edits = new RandomEdits(seed, { 'README.md': '# start\n', 'pkg/__init__.py': '', 'pkg/sub/__init__.py': '' });
    for (let round = 0; round < 8; round++) {
      const changes = edits.next(round);
      if (!Object.keys(changes).length) continue;
      const sha = await upstream.commit(changes, `round ${round}`);
      await syncTo(harness, id, sha);
      // …and it was an incremental run that got there.
      const indexed = harness.testApp.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'indexed' && line.repositoryId === repositoryId);
      expect(indexed.at(-1)).toMatchObject({ commitSha: sha, graph: 'incremental', metadata: 'incremental' });
      const expected = await fromScratch(repositoryId, sha);
      expect(await dumpGraph(graph, repositoryId), `seed ${seed}, round ${round}`).toEqual(expected.graph);
      expect(await metadataOf(harness.testApp.app.db.prisma, repositoryId), `seed ${seed}, round ${round}`).toEqual(expected.metadata);
    }
  });
});

describe('without a code graph', () => {
  it('syncs and stores metadata; graph fields are null with a clear UNAVAILABLE error', async () => {
    const harness = await startHarness({});
    try {
      const upstream = await createUpstream(server, 'graph-none', { files: { 'a.ts': 'export function a() {}\n' } });
      const id = await addSynced(harness, upstream);
      const { repository } = await harness.client.request(RepositoryMetadataDocument, { id });
      expect(repository!.metadata).toMatchObject({ fileCount: 1, languages: [{ language: 'TypeScript', files: 1, lines: 1 }] });
      const result = await harness.client.raw(RepositoryFilesDocument, { id });
      expect(result.data!.repository!.files).toBeNull();
      expect(result.errors![0]).toMatchObject({ extensions: { code: 'UNAVAILABLE' } });
      expect(result.errors![0]!.message).toMatch(/NEO4J_URL/);
      const node = await harness.client.raw(RepositoryFileNodeDocument, { id, path: 'a.ts' });
      expect(node.data!.repository!.fileNode).toBeNull();
      expect(node.errors![0]).toMatchObject({ extensions: { code: 'UNAVAILABLE' } });
    } finally {
      await harness.testApp.close();
    }
  });

  it('syncs when Neo4j cannot be reached, records the warning, and indexes the graph once it can', async () => {
    // NEO4J_URL names a port where nothing listens yet; later a relay to the test server opens there.
    const port = await freePort();
    const neo4j = neo4jTestEnv();
    const harness = await startHarness({ ...neo4j, NEO4J_URL: `bolt://127.0.0.1:${port}` });
    const target = new URL(neo4j.NEO4J_URL);
    const relayed = new Set<import('node:net').Socket>();
    const relay = createServer((socket) => {
      relayed.add(socket);
      const upstream = connect(Number(target.port), target.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    try {
      const upstream = await createUpstream(server, 'graph-down', { files: { 'a.ts': 'export function a() {}\n' } });
      const id = await addSynced(harness, upstream);
      const prisma = harness.testApp.app.db.prisma;
      const run = await prisma.syncRun.findFirstOrThrow({ where: { repositoryId: dbId(id) }, orderBy: { queuedAt: 'desc' } });
      expect(run.status).toBe('SUCCEEDED');
      expect(run.warning).toContain(`code graph not updated: code graph unavailable: cannot use Neo4j at bolt://127.0.0.1:${port}`);
      expect(run.warning).not.toContain(neo4j.NEO4J_PASSWORD);
      expect((await prisma.repositoryMetadata.findUniqueOrThrow({ where: { repositoryId: dbId(id) } })).graphSha).toBeNull();
      const down = await harness.client.raw(RepositoryFilesDocument, { id });
      expect(down.errors![0]).toMatchObject({ extensions: { code: 'UNAVAILABLE' } });

      await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
      // Nothing changed upstream: the run is SKIPPED, and indexes what the graph lacks.
      await harness.client.request(SyncRepositoryDocument, { repositoryId: id });
      await waitForIdle(harness.testApp.app, dbId(id));
      const latest = await prisma.syncRun.findFirstOrThrow({ where: { repositoryId: dbId(id) }, orderBy: { queuedAt: 'desc' } });
      expect(latest).toMatchObject({ status: 'SKIPPED', warning: null });
      expect((await prisma.repositoryMetadata.findUniqueOrThrow({ where: { repositoryId: dbId(id) } })).graphSha).toBe(await upstream.head());
      const files = (await harness.client.request(RepositoryFilesDocument, { id })).repository!.files!;
      expect(files.edges.map((edge) => edge.node.path)).toEqual(['a.ts']);

      // Neo4j gone again, after the service had reached it: reads answer UNAVAILABLE, not an internal error.
      relay.close();
      for (const socket of relayed) socket.destroy();
      const gone = await harness.client.raw(RepositoryFilesDocument, { id });
      expect(gone.data!.repository!.files).toBeNull();
      expect(gone.errors![0]).toMatchObject({ extensions: { code: 'UNAVAILABLE' } });
      expect(gone.errors![0]!.message).toContain(`cannot use Neo4j at bolt://127.0.0.1:${port}`);
    } finally {
      relay.close();
      await harness.testApp.close();
    }
  });
});
