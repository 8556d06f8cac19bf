// `prisma generate` looks for a schema engine binary it never uses for
// generation and tries to download one, which fails offline; pointing it at
// any existing file is enough (migrations use @prisma/schema-engine-wasm).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const placeholder = fileURLToPath(new URL('../package.json', import.meta.url));
const result = spawnSync('npx', ['prisma', 'generate'], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? placeholder, PRISMA_HIDE_UPDATE_MESSAGE: '1' },
});
process.exit(result.status ?? 1);
