import { lexicographicSortSchema, printSchema } from 'graphql';
import { builder } from './builder.js';
import './enums.js';
import './project.js';
import './repository.js';
import './syncRun.js';
import './syncEvent.js';
import './credential.js';
import './ref.js';
import './webhook.js';
import './archive.js';
import './codeGraph.js';

builder.queryType({});
builder.mutationType({});

export const schema = builder.toSchema();

export function printSchemaSDL(): string {
  return printSchema(lexicographicSortSchema(schema));
}
