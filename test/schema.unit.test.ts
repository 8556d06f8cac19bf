import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { printSchemaSDL } from '../src/schema/index.js';

describe('schema.graphql', () => {
  it('is the printed Pothos schema (run `npm run schema:print` after changing the schema)', async () => {
    const committed = await readFile(new URL('../schema.graphql', import.meta.url), 'utf8');
    expect(committed).toBe(printSchemaSDL() + '\n');
  });

  it('keeps the fixed names of SPEC §4', () => {
    const sdl = printSchemaSDL();
    for (const fragment of [
      'syncStatus(repositoryId: ID!): SyncEvent!',
      'addRepository(input: AddRepositoryInput!): AddRepositoryPayload!',
      'syncRepository(input: SyncRepositoryInput!): SyncRepositoryPayload!',
      'removeRepository(input: RemoveRepositoryInput!): RemoveRepositoryPayload!',
      'createProject(input: CreateProjectInput!): CreateProjectPayload!',
      'node(id: ID!): Node',
      'project(id: ID!): Project',
      'repository(id: ID!): Repository',
    ]) {
      expect(sdl).toContain(fragment);
    }
    expect(sdl).toMatch(/repositories\([^)]*projectId: ID[^)]*status: RepositoryStatus[^)]*\): RepositoryConnection!/);
    expect(sdl).toMatch(/enum SyncPhase \{\s+APPLYING\s+ARCHIVING\s+CHECKING\s+CLONING\s+DONE\s+FAILED\s+FETCHING\s+INDEXING\s+QUEUED\s+RESTORING\s+SKIPPED\s+\}/);
  });
});
