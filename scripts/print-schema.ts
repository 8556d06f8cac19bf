// Writes schema.graphql from the Pothos schema (test/schema.unit.test.ts fails when it is stale).
import { writeFileSync } from 'node:fs';
import { printSchemaSDL } from '../src/schema/index.js';

writeFileSync(new URL('../schema.graphql', import.meta.url), printSchemaSDL() + '\n');
console.log('wrote schema.graphql');
