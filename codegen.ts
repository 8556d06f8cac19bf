import type { CodegenConfig } from '@graphql-codegen/cli';

// Types the GraphQL documents the tests send (test/documents) against the
// committed schema.graphql: `npm run codegen` after changing either.
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: 'test/documents/**/*.graphql',
  generates: {
    'test/generated/graphql.ts': {
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        enumsAsTypes: true,
        useTypeImports: true,
        scalars: { DateTime: 'string', ID: 'string' },
        avoidOptionals: { field: true, inputValue: false },
      },
    },
  },
};

export default config;
