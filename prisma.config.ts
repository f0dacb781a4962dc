import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  // env() throws when unset and would break `prisma generate`, which needs no database.
  datasource: { url: process.env.DATABASE_URL ?? '' },
});
