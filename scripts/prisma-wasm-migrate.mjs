// Offline Prisma migrations: Prisma's own schema engine (WebAssembly) + @prisma/adapter-pg.
// Usage: node scripts/prisma-wasm-migrate.mjs deploy | status | create <name> | diff
// Needs: @prisma/schema-engine-wasm, @prisma/adapter-pg, @prisma/driver-adapter-utils; DATABASE_URL.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import pg from 'pg';
import * as runtime from '@prisma/schema-engine-wasm/schema_engine_bg';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';

const require = createRequire(import.meta.url);
const root = process.cwd();
const schemaPath = path.join(root, 'prisma/schema.prisma');
const migrationsDir = path.join(root, 'prisma/migrations');
const url = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/spotinference';

const filters = { externalTables: [], externalEnums: [] };

// Node 20 cannot `import` a .wasm file, so instantiate the engine by hand (wasm-bindgen "bundler" output).
const wasmPath = process.env.SCHEMA_ENGINE_WASM ??
  require.resolve('@prisma/schema-engine-wasm/schema_engine_bg').replace(/\.js$/, '.wasm');
const instance = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(wasmPath)), { './schema_engine_bg.js': runtime });
runtime.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start();

// Fixes to @prisma/adapter-pg 7.10.1 for schema-engine use:
// 1. executeScript() splits on ';' (breaks $$ bodies, ';' in strings) and is not atomic: send the whole
//    script as ONE simple-protocol query instead (implicit transaction, like the native engine).
// 2. catalog columns of Postgres type "char" (OID 18, e.g. pg_class.relkind) are rejected as
//    UnsupportedNativeDataType when the engine introspects: report them as text (25) / text[] (1009).
function relabelChar(q) {
  const io = q.performIO.bind(q);
  q.performIO = async (query) => {
    const res = await io(query);
    for (const f of res.fields ?? []) f.dataTypeID = f.dataTypeID === 18 ? 25 : f.dataTypeID === 1002 ? 1009 : f.dataTypeID;
    return res;
  };
  return q;
}
class MigratePg extends PrismaPg {
  patch(a) {
    relabelChar(a);
    const start = a.startTransaction.bind(a);
    a.startTransaction = async (...args) => relabelChar(await start(...args));
    a.executeScript = async (sql) => { await a.executeRaw({ sql, args: [], argTypes: [] }); };
    return a;
  }
  async connect() { return this.patch(await super.connect()); }
  // 3. adapter-pg's own connectToShadowDb() does new Pool({ connectionString, database }) and pg lets the
  //    connectionString win, so it would replay migrations into the MAIN database. Use a proper temp-DB URL.
  async connectToShadowDb() {
    const admin = await super.connect();
    const db = `prisma_migrate_shadow_db_${crypto.randomUUID()}`;
    await admin.executeRaw({ sql: `CREATE DATABASE "${db}"`, args: [], argTypes: [] });
    const u = new URL(url);
    u.pathname = `/${db}`;
    const shadow = await new MigratePg({ connectionString: u.href, allowExitOnIdle: true }).connect();
    const dispose = shadow.dispose.bind(shadow);
    shadow.dispose = async () => {
      await dispose();
      await admin.executeRaw({ sql: `DROP DATABASE IF EXISTS "${db}"`, args: [], argTypes: [] });
      await admin.dispose();
    };
    return shadow;
  }
}

function listMigrations() {
  const lockPath = path.join(migrationsDir, 'migration_lock.toml');
  const dirs = fs.existsSync(migrationsDir)
    ? fs.readdirSync(migrationsDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()
    : [];
  return {
    baseDir: migrationsDir,
    lockfile: { path: 'migration_lock.toml', content: fs.existsSync(lockPath) ? fs.readFileSync(lockPath, 'utf8') : null },
    shadowDbInitScript: '',
    migrationDirectories: dirs.map((d) => {
      const f = path.join(migrationsDir, d, 'migration.sql');
      return { path: d, migrationFile: { path: 'migration.sql',
        content: fs.existsSync(f) ? { tag: 'ok', value: fs.readFileSync(f, 'utf8') } : { tag: 'error', value: `missing ${f}` } } };
    }),
  };
}

// Like `prisma migrate deploy`: create the target database if it does not exist yet.
async function ensureDatabase() {
  const u = new URL(url);
  const db = decodeURIComponent(u.pathname.slice(1));
  u.pathname = '/postgres';
  const c = new pg.Client({ connectionString: u.href });
  await c.connect();
  try {
    const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
    if (!rowCount) { await c.query(`CREATE DATABASE "${db.replaceAll('"', '""')}"`); console.log(`Created database ${db}`); }
  } finally { await c.end(); }
}
const [cmd, name] = process.argv.slice(2);
if (cmd === 'deploy' || cmd === 'create') await ensureDatabase();

const schema = fs.readFileSync(schemaPath, 'utf8');
const files = [{ path: schemaPath, content: schema }];
const engine = await runtime.SchemaEngine.new(
  { datamodels: [[schemaPath, schema]] },
  (msg) => process.env.DEBUG_SCHEMA_ENGINE && console.error(msg),
  bindMigrationAwareSqlAdapterFactory(new MigratePg({ connectionString: url, allowExitOnIdle: true })),
);

try {
  if (cmd === 'deploy') {
    const { appliedMigrationNames } = await engine.applyMigrations({ migrationsList: listMigrations(), filters });
    console.log(appliedMigrationNames.length ? `Applied: ${appliedMigrationNames.join(', ')}` : 'No pending migrations.');
  } else if (cmd === 'status') {
    const r = await engine.diagnoseMigrationHistory({ migrationsList: listMigrations(), optInToShadowDatabase: false, filters });
    console.log(JSON.stringify(r, null, 2));
    if (r.history || r.failedMigrationNames.length || r.editedMigrationNames.length) process.exitCode = 1;
  } else if (cmd === 'create') {
    // like `prisma migrate dev --create-only`: SQL from (migrations replayed in a temporary shadow DB) to schema.prisma
    const lock = '# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "postgresql"\n';
    const list = listMigrations();
    list.lockfile.content ??= lock; // first migration: no lockfile yet
    const { stdout } = await engine.diff({ from: { tag: 'migrations', ...list }, to: { tag: 'schemaDatamodel', files }, script: true, exitCode: null, filters });
    if (!stdout || stdout.trim() === '-- This is an empty migration.') console.log('Schema unchanged; no migration created.');
    else {
      const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14); // same YYYYMMDDHHMMSS (UTC) as prisma
      const dir = `${stamp}_${(name ?? 'migration').replace(/[^A-Za-z0-9_]+/g, '_')}`;
      fs.mkdirSync(path.join(migrationsDir, dir), { recursive: true });
      fs.writeFileSync(path.join(migrationsDir, dir, 'migration.sql'), stdout);
      fs.writeFileSync(path.join(migrationsDir, 'migration_lock.toml'), lock);
      console.log(`Created prisma/migrations/${dir}/migration.sql`);
    }
  } else if (cmd === 'diff') {
    // SQL from migrations folder -> schema.prisma (stdout), like `prisma migrate diff --from-migrations --to-schema --script`
    const r = await engine.diff({ from: { tag: 'migrations', ...listMigrations() }, to: { tag: 'schemaDatamodel', files },
      script: true, exitCode: true, filters });
    process.stdout.write(r.stdout ?? '');
    process.exitCode = r.exitCode; // 2 = schema.prisma has changes not yet in a migration (CI check)
  } else {
    console.error('usage: prisma-wasm-migrate deploy | status | create <name> | diff'); process.exitCode = 2;
  }
} finally {
  engine.free();
}
process.exit(); // the wasm engine leaves a ~10 s advisory-lock timer armed; don't wait for it
