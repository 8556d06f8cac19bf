import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 has no "exports": Node loads its CommonJS build for every
    // importer, but Vite would hand our sources the .mjs one — two realms.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/globalSetup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: more workers only make git and PostgreSQL fight for them.
    maxWorkers: 2,
    env: { NODE_ENV: 'test' },
    reporters: ['default', './test/support/summaryReporter.ts'],
  },
});
