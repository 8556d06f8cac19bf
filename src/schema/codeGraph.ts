import { resolveOffsetConnection } from '@pothos/plugin-relay';
import type { Repository as RepositoryRow } from '../generated/prisma/client.js';
import { BadUserInputError, UnavailableError } from '../errors.js';
import { CodeGraphError, type CodeGraph, type FileDetail, type FileNodeData, type SymbolData } from '../indexing/codeGraph.js';
import type { LanguageTally } from '../indexing/indexer.js';
import { builder } from './builder.js';
import type { GraphQLContext } from './context.js';
import { maxPageSize, pageSize } from './pagination.js';

// Repository.metadata (PostgreSQL) and the code graph read API (Neo4j), SPEC §4.

const LanguageShare = builder.objectRef<{ language: string; files: number; bytes: number; lines: number }>('LanguageShare').implement({
  fields: (t) => ({
    language: t.exposeString('language'),
    files: t.exposeInt('files'),
    bytes: t.exposeFloat('bytes'),
    lines: t.exposeInt('lines', { description: 'non-blank lines' }),
  }),
});

builder.prismaObject('RepositoryMetadata', {
  description:
    'What indexing found at a commit: languages by file name and extension (linguist), vendored, generated and documentation files left out of the breakdown',
  fields: (t) => ({
    commitSha: t.exposeString('commitSha', { description: 'the commit these figures describe' }),
    languages: t.field({
      type: [LanguageShare],
      description: 'programming and markup languages, most bytes first',
      resolve: (metadata) =>
        Object.entries(metadata.languages as LanguageTally)
          .map(([language, share]) => ({ language, ...share }))
          .sort((a, b) => b.bytes - a.bytes || (a.language < b.language ? -1 : 1)),
    }),
    fileCount: t.exposeInt('fileCount', { description: 'every file of the commit (submodules left out)' }),
    totalBytes: t.exposeFloat('totalBytes'),
    linesOfCode: t.exposeInt('linesOfCode', { description: 'non-blank lines of the languages above' }),
    readmePath: t.exposeString('readmePath', { nullable: true }),
    license: t.exposeString('license', { nullable: true, description: 'SPDX identifier of the root license file, when recognised' }),
    lastCommitAuthor: t.exposeString('lastCommitAuthor', { nullable: true }),
    lastCommitAt: t.expose('lastCommitAt', { type: 'DateTime', nullable: true }),
    lastCommitMessage: t.exposeString('lastCommitMessage', { nullable: true }),
    indexedAt: t.expose('indexedAt', { type: 'DateTime' }),
  }),
});

interface FileNodeShape extends FileNodeData {
  repositoryId: string;
  detail?: Promise<FileDetail | null>;
}

/** The file's symbols and edges: given when the node came from fileNode(), read on first use otherwise. */
function detailOf(file: FileNodeShape, ctx: GraphQLContext): Promise<FileDetail | null> {
  file.detail ??= graphCall(ctx, (graph) => graph.file(file.repositoryId, file.path));
  return file.detail;
}

const CodeSymbol = builder.objectRef<SymbolData>('CodeSymbol').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    kind: t.exposeString('kind', { description: 'function, class, method, interface, type, enum, struct, trait, module, constant' }),
    path: t.exposeString('path'),
    startLine: t.exposeInt('startLine', { description: '1-based' }),
    endLine: t.exposeInt('endLine'),
  }),
});

const FileNode = builder.objectRef<FileNodeShape>('FileNode');
FileNode.implement({
  description: 'A file of the indexed commit in the code graph',
  fields: (t) => ({
    path: t.exposeString('path'),
    language: t.exposeString('language', { nullable: true }),
    bytes: t.exposeFloat('bytes'),
    blobSha: t.exposeString('blobSha'),
    skipped: t.exposeString('skipped', {
      nullable: true,
      description: 'why it was not parsed: symlink, vendored, generated, binary, too large; null when parsed or no parser exists for its language',
    }),
    symbols: t.field({ type: [CodeSymbol], resolve: async (file, _args, ctx) => (await detailOf(file, ctx))?.symbols ?? [] }),
    imports: t.field({
      type: [FileNode],
      description: 'files of the repository this file imports',
      resolve: async (file, _args, ctx) => ((await detailOf(file, ctx))?.imports ?? []).map((node) => ({ ...node, repositoryId: file.repositoryId })),
    }),
    importedBy: t.field({
      type: [FileNode],
      resolve: async (file, _args, ctx) => ((await detailOf(file, ctx))?.importedBy ?? []).map((node) => ({ ...node, repositoryId: file.repositoryId })),
    }),
    externalImports: t.stringList({
      description: 'external modules (packages) it imports',
      resolve: async (file, _args, ctx) => (await detailOf(file, ctx))?.externalImports ?? [],
    }),
    unresolvedImports: t.stringList({
      description: 'imports that name no file of the repository and no package (a missing relative path)',
      resolve: (file) => file.unresolvedImports ?? [],
    }),
  }),
});

const ModuleDependency = builder.objectRef<{ module: string; importCount: number }>('ModuleDependency').implement({
  fields: (t) => ({
    module: t.exposeString('module'),
    importCount: t.exposeInt('importCount', { description: 'files importing it' }),
  }),
});

const notConfigured = 'the code graph is not configured on this server (NEO4J_URL is not set)';

/** Runs a graph read for a field; a missing or unreachable graph is an UNAVAILABLE error (the field is then null). */
async function graphCall<T>(ctx: GraphQLContext, read: (graph: CodeGraph) => Promise<T>): Promise<T> {
  const { graph } = ctx.services;
  if (!graph) throw new UnavailableError(notConfigured);
  try {
    return await read(graph);
  } catch (error) {
    if (error instanceof CodeGraphError) throw new UnavailableError(error.message);
    throw error;
  }
}

/** An offset-paged connection over a graph read (pages over the cap refused, as everywhere). */
function offsetPage<T>(
  args: { first?: number | null; last?: number | null; after?: string | null; before?: string | null },
  read: (page: { offset: number; limit: number }) => Promise<T[]>,
) {
  pageSize.maxSize(args);
  return resolveOffsetConnection({ args, defaultSize: pageSize.defaultSize, maxSize: maxPageSize }, read);
}

builder.prismaObjectFields('Repository', (t) => ({
  metadata: t.relation('metadata', { nullable: true, description: 'null until the first sync has indexed the repository' }),
  files: t.connection(
    {
      type: FileNode,
      nullable: true,
      description: 'files of the indexed commit in path order; null (with an UNAVAILABLE error) without a code graph',
      args: { pathPrefix: t.arg.string(), language: t.arg.string({ description: 'as in metadata.languages, e.g. TypeScript' }) },
      resolve: (repository: RepositoryRow, args, ctx) =>
        offsetPage(args, ({ offset, limit }) =>
          graphCall(ctx, async (graph) =>
            (await graph.files(repository.id, { pathPrefix: args.pathPrefix ?? null, language: args.language ?? null, first: limit, offset })).map((file) => ({
              ...file,
              repositoryId: repository.id,
            })),
          ),
        ),
    },
    { name: 'FileNodeConnection' },
    { name: 'FileNodeEdge' },
  ),
  fileNode: t.field({
    type: FileNode,
    nullable: true,
    description: 'one file of the indexed commit; null when absent (or without a code graph, with an UNAVAILABLE error)',
    args: { path: t.arg.string({ required: true }) },
    resolve: (repository, args, ctx) =>
      graphCall(ctx, async (graph) => {
        const detail = await graph.file(repository.id, args.path);
        return detail ? { ...detail, repositoryId: repository.id, detail: Promise.resolve(detail) } : null;
      }),
  }),
  symbols: t.connection(
    {
      type: CodeSymbol,
      nullable: true,
      description: 'symbols whose name contains the query (case-insensitive), by name, path and line',
      args: { query: t.arg.string({ required: true }), kind: t.arg.string() },
      resolve: (repository: RepositoryRow, args, ctx) => {
        if (args.query.length > 200) throw new BadUserInputError('query must be at most 200 characters');
        return offsetPage(args, ({ offset, limit }) =>
          graphCall(ctx, (graph) => graph.symbols(repository.id, { query: args.query, kind: args.kind ?? null, first: limit, offset })),
        );
      },
    },
    { name: 'SymbolConnection' },
    { name: 'SymbolEdge' },
  ),
  dependencies: t.field({
    type: [ModuleDependency],
    nullable: true,
    description: 'external modules imported by the indexed commit, most imported first',
    resolve: (repository, _args, ctx) => graphCall(ctx, (graph) => graph.dependencies(repository.id)),
  }),
}));
