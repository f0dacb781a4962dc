import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { runCli } from '../../apps/cli/src/cli';
import { uniqueRedisPrefix, uniqueSlug } from '../factories/orgs.factory';

const KEY_LINE = /^sk-spot-[0-9A-Za-z]{12}-[0-9A-Za-z]{40}$/;
const prefix = uniqueRedisPrefix('cli');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  lines: string[];
}

/** Runs the CLI in-process, as main.ts does, capturing what it writes. */
async function cli(...argv: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr, lines: stdout.split('\n').filter((l) => l !== '') };
}

/** Runs with some environment variables changed (the CLI reads its config from the environment). */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function field(result: CliResult, name: string): string {
  const line = result.lines.find((l) => l.trim().startsWith(`${name}:`));
  if (!line) throw new Error(`no "${name}:" line in:\n${result.stdout}`);
  return line.slice(line.indexOf(':') + 1).trim();
}

async function waitFor<T>(get: () => T | undefined, ms = 3_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cli (in-process, real Postgres and Redis)', () => {
  let pg: Client;
  let sub: Redis;
  const messages: string[] = [];

  beforeAll(async () => {
    process.env.REDIS_PREFIX = prefix;
    pg = new Client({ connectionString: process.env.DATABASE_URL });
    await pg.connect();
    sub = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    sub.on('message', (_channel: string, message: string) => messages.push(message));
    await sub.subscribe(`${prefix}keys:revoked`);
  });

  afterAll(async () => {
    await sub.quit();
    await pg.end();
  });

  async function keyRow(id: string): Promise<Record<string, unknown>> {
    const { rows } = await pg.query('SELECT * FROM api_keys WHERE id = $1', [id]);
    expect(rows).toHaveLength(1);
    return rows[0] as Record<string, unknown>;
  }

  async function newOrg(): Promise<string> {
    const slug = uniqueSlug('cli');
    const res = await cli('org', 'create', slug);
    if (res.code !== 0) throw new Error(res.stderr);
    return slug;
  }

  describe('org create', () => {
    it('creates an org and prints its id and slug', async () => {
      const slug = uniqueSlug('acme');
      const res = await cli('org', 'create', slug, '--name', 'Acme Inc');
      expect(res).toMatchObject({ code: 0, stderr: '' });
      const id = field(res, 'id');
      expect(field(res, 'slug')).toBe(slug);
      const { rows } = await pg.query('SELECT slug, name FROM orgs WHERE id = $1', [id]);
      expect(rows).toEqual([{ slug, name: 'Acme Inc' }]);
    });

    it('refuses a taken slug with exit 1 and a clear message', async () => {
      const slug = uniqueSlug('dup');
      expect((await cli('org', 'create', slug)).code).toBe(0);
      const res = await cli('org', 'create', slug);
      expect(res.code).toBe(1);
      expect(res.stdout).toBe('');
      expect(res.stderr).toBe(`error: an org with slug ${slug} already exists\n`);
    });

    it('rejects a malformed slug with one line naming the argument (exit 2)', async () => {
      const res = await cli('org', 'create', 'Not_A_Slug');
      expect(res.code).toBe(2);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
      expect(res.stderr).toContain('slug:');
    });
  });

  describe('key create', () => {
    it('prints the key alone on the last line; only its SHA-256 is stored', async () => {
      const slug = await newOrg();
      const res = await cli('key', 'create', '--org', slug);
      expect(res.code).toBe(0);
      const key = res.lines.at(-1) ?? '';
      expect(key).toMatch(KEY_LINE);
      expect(res.stdout.endsWith(`${key}\n`)).toBe(true);
      expect(res.stdout.split(key)).toHaveLength(2); // printed once

      const id = field(res, 'id');
      expect(field(res, 'prefix')).toBe(key.slice(0, 20));
      expect(field(res, 'org')).toBe(slug);
      const row = await keyRow(id);
      expect(row.secret_hash).toBe(createHash('sha256').update(key).digest('hex'));
      expect(row.prefix).toBe(key.slice(0, 20));
      expect(row.allowed_models).toEqual([]);
      expect(row.expires_at).toBeNull();
      const stored = JSON.stringify(row);
      expect(stored).not.toContain(key);
      expect(stored).not.toContain(key.slice(21)); // the secret part
    });

    it('stores --name, --models and --expires-in', async () => {
      const slug = await newOrg();
      const before = Date.now();
      const res = await cli('key', 'create', '--org', slug, '--name', 'ci runner', '--models', 'llama-3.1-8b, qwen2.5:7b', '--expires-in', '30d');
      expect(res.code).toBe(0);
      expect(field(res, 'models')).toBe('llama-3.1-8b, qwen2.5:7b');
      const row = await keyRow(field(res, 'id'));
      expect(row.name).toBe('ci runner');
      expect(row.allowed_models).toEqual(['llama-3.1-8b', 'qwen2.5:7b']);
      const expires = (row.expires_at as Date).getTime();
      const thirtyDays = 30 * 86_400_000;
      expect(expires).toBeGreaterThanOrEqual(before + thirtyDays);
      expect(expires).toBeLessThanOrEqual(Date.now() + thirtyDays);
    });

    it('fails with exit 1 for an unknown org', async () => {
      const slug = uniqueSlug('ghost');
      const res = await cli('key', 'create', '--org', slug);
      expect(res.code).toBe(1);
      expect(res.stdout).toBe('');
      expect(res.stderr).toBe(`error: no org with slug ${slug}\n`);
    });

    it.each([
      [['--expires-in', '0d'], '--expires-in: must be greater than zero'],
      [['--expires-in', 'soon'], '--expires-in: expected a duration like 90m, 12h, 30d or 1w'],
      [['--models', 'a model'], '--models:'],
      [['--name', 'x'.repeat(101)], '--name: must be at most 100 characters'],
    ])('rejects %j with one line naming the argument and no stack', async (extra, message) => {
      const res = await cli('key', 'create', '--org', uniqueSlug(), ...extra);
      expect(res.code).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr.trim().split('\n')).toEqual([expect.stringContaining(`error: ${message}`)]);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    });

    it('requires --org', async () => {
      const res = await cli('key', 'create');
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('error: --org is required');
    });
  });

  describe('key revoke', () => {
    it('sets revoked_at and publishes the hash (not the key) to the gateways; revoking again is harmless', async () => {
      const slug = await newOrg();
      const created = await cli('key', 'create', '--org', slug);
      const key = created.lines.at(-1) ?? '';
      const id = field(created, 'id');
      const secretHash = createHash('sha256').update(key).digest('hex');

      const res = await cli('key', 'revoke', key.slice(0, 20));
      expect(res.code).toBe(0);
      expect(res.stdout).toContain(`Revoked key ${key.slice(0, 20)}`);
      const row = await keyRow(id);
      expect(row.revoked_at).toBeInstanceOf(Date);

      const message = await waitFor(() => messages.find((m) => m.includes(id)));
      expect(JSON.parse(message)).toEqual({ secretHash, keyId: id });
      expect(message).not.toContain(key.slice(21));

      const again = await cli('key', 'revoke', id);
      expect(again.code).toBe(0);
      expect((await keyRow(id)).revoked_at).toEqual(row.revoked_at);
      await waitFor(() => (messages.filter((m) => m.includes(id)).length === 2 ? true : undefined));
    });

    it('fails with exit 1 for an unknown key', async () => {
      const res = await cli('key', 'revoke', 'sk-spot-000000000000');
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('error: no API key with id or prefix sk-spot-000000000000\n');
      const byId = await cli('key', 'revoke', '00000000-0000-4000-8000-000000000000');
      expect(byId.code).toBe(1);
    });

    it('rejects something that is neither an id nor a prefix (exit 2)', async () => {
      const res = await cli('key', 'revoke', 'hello');
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('key-id-or-prefix:');
    });
  });

  describe('usage rollup', () => {
    it('folds new events into rollups now, with a one-line summary', async () => {
      const orgId = '0a0a0a0a-0000-4000-8000-' + Date.now().toString(16).padStart(12, '0').slice(-12);
      await pg.query(
        `INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, duration_ms, status, cost_nanos)
         SELECT 'cli-roll-' || $1 || '-' || i, now() - interval '1 minute', $1::uuid, $1::uuid, 'm', 'spot', 3, 4, 1, 200, 10 FROM generate_series(1, 25) i`,
        [orgId],
      );
      const res = await cli('usage', 'rollup');
      expect(res.code).toBe(0);
      expect(res.lines).toHaveLength(1);
      expect(res.lines[0]).toMatch(/^rolled up \d+ events into \d+ rollup rows in \d+\.\d\ds$/);
      const { rows } = await pg.query('SELECT requests, prompt_tokens, completion_tokens, cost_nanos FROM usage_rollups WHERE org_id = $1', [orgId]);
      expect(rows).toEqual([{ requests: '25', prompt_tokens: '75', completion_tokens: '100', cost_nanos: '250' }]);
      // a second pass finds nothing new of this org: counted once
      await cli('usage', 'rollup');
      expect((await pg.query('SELECT requests FROM usage_rollups WHERE org_id = $1', [orgId])).rows).toEqual([{ requests: '25' }]);
    });
  });

  describe('usage', () => {
    it.each([[[]], [['--help']], [['nope']], [['key', 'rotate']], [['key', 'create', '--help']], [['org', 'create', 'a-slug', '--bogus']]])(
      '%j -> usage on stderr, exit 2',
      async (argv) => {
        const res = await cli(...argv);
        expect(res.code).toBe(2);
        expect(res.stdout).toBe('');
        expect(res.stderr).toMatch(/usage: npm run cli --/i);
      },
    );
  });

  describe('unreachable services', () => {
    // ioredis 6 leaves a 2 s timer behind when a client that never connected is disconnected
    // (AbstractConnector.disconnect waits for a 'close' that already happened); let it run out.
    afterAll(() => new Promise((resolve) => setTimeout(resolve, 2_100)));

    it('names Redis and its URL, and fails within seconds', async () => {
      const started = Date.now();
      const res = await withEnv({ REDIS_URL: 'redis://127.0.0.1:1' }, () => cli('org', 'create', uniqueSlug()));
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('Redis (redis://127.0.0.1:1) is not available');
      expect(res.stderr).not.toContain('Postgres');
      expect(Date.now() - started).toBeLessThan(8_000);
    });

    it('names Postgres and its URL, password masked', async () => {
      const res = await withEnv({ DATABASE_URL: 'postgresql://postgres:hunter2@127.0.0.1:1/nowhere' }, () =>
        cli('key', 'create', '--org', uniqueSlug()),
      );
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('Postgres (postgresql://postgres:***@127.0.0.1:1/nowhere) is not available');
      expect(res.stderr).not.toContain('hunter2');
    });
  });
});
