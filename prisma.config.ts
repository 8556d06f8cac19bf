import { defineConfig } from 'prisma/config';

// Only `prisma generate` uses this file; migrations run through
// src/storage/migrations.ts (the wasm schema engine), see README.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
});
