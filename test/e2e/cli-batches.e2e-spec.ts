import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import { runCli } from '../../apps/cli/src/cli';
import { uniqueRedisPrefix, uniqueSlug } from '../factories/orgs.factory';
import { seedRunningBatch } from '../support/batch-stack';

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
  const code = await runCli(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } });
  return { code, stdout, stderr, lines: stdout.split('\n').filter((l) => l !== '') };
}

/** The cells of a table line (columns are separated by two spaces or more). */
const cells = (line: string) => line.split(/ {2,}/);

describe('cli: batch list and batch cancel (in-process, real Postgres and Redis)', () => {
  let prisma: PrismaService;
  const orgs: Array<{ id: string; slug: string; keyId: string }> = [];
  /** org 0: an older batch 1 of 3 done, a newer one 0 of 2 done; org 1: one batch, completed. */
  const ids: string[] = [];

  beforeAll(async () => {
    process.env.REDIS_PREFIX = uniqueRedisPrefix('cli-batch');
    prisma = new PrismaService(loadConfig());
    for (const tag of ['cli-bat-a', 'cli-bat-b']) {
      const org = (await new OrgsRepository(prisma).create(uniqueSlug(tag), tag))!;
      const minted = mintApiKey();
      const key = await new ApiKeysRepository(prisma).create({ orgId: org.id, name: 'k', prefix: minted.prefix, secretHash: minted.secretHash, allowedModels: [], expiresAt: null, createdById: null });
      orgs.push({ id: org.id, slug: org.slug, keyId: key.id });
    }
    ids.push(await seedRunningBatch(prisma, { orgId: orgs[0].id, keyId: orgs[0].keyId, lines: 3, done: 1 }));
    ids.push(await seedRunningBatch(prisma, { orgId: orgs[0].id, keyId: orgs[0].keyId, lines: 2, done: 0 }));
    ids.push(await seedRunningBatch(prisma, { orgId: orgs[1].id, keyId: orgs[1].keyId, lines: 2, done: 2 }));
    await prisma.batch.update({ where: { id: ids[2] }, data: { status: 'completed', completedAt: new Date('2026-12-01T12:34:00Z') } });
  });

  afterAll(async () => {
    await prisma?.$disconnect();
  });

  it('batch list --org: a table of the org\'s batches, newest first, with status, progress, failed, endpoint, times and cost', async () => {
    const res = await cli('batch', 'list', '--org', orgs[0].slug);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(cells(res.lines[0])).toEqual(['BATCH', 'ORG', 'STATUS', 'PROGRESS', 'FAILED', 'ENDPOINT', 'CREATED', 'FINISHED', 'COST']);
    expect(res.lines).toHaveLength(3);
    const [newer, older] = res.lines.slice(1).map(cells);
    expect(newer).toEqual([ids[1], orgs[0].slug, 'in_progress', '0/2 0%', '0', '/v1/chat/completions', expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\dZ$/), '-', '$0.000000']);
    expect(older).toEqual([ids[0], orgs[0].slug, 'in_progress', '1/3 33%', '0', '/v1/chat/completions', expect.any(String), '-', '$0.000001']);
    expect(res.stdout).not.toContain(ids[2]);
  });

  it('batch list without --org lists every org\'s batches; --limit caps them', async () => {
    const all = await cli('batch', 'list', '--limit', '1000');
    expect(all.code).toBe(0);
    const rows = new Map(all.lines.slice(1).map((l) => [cells(l)[0], cells(l)]));
    expect(rows.get(ids[2])).toEqual([ids[2], orgs[1].slug, 'completed', '2/2 100%', '0', '/v1/chat/completions', expect.any(String), '2026-12-01 12:34Z', '$0.000002']);
    expect(rows.get(ids[0])?.[1]).toBe(orgs[0].slug);
    const one = await cli('batch', 'list', '--org', orgs[0].slug, '--limit', '1');
    expect(one.lines.map((l) => cells(l)[0])).toEqual(['BATCH', ids[1]]);
  });

  it('batch list refuses a bad --limit (exit 2) and an unknown org (exit 1); an org without batches says so', async () => {
    for (const limit of ['0', '-1', 'ten', '1001']) {
      const res = await cli('batch', 'list', '--limit', limit);
      expect({ limit, code: res.code, stdout: res.stdout }).toEqual({ limit, code: 2, stdout: '' });
      expect(res.stderr).toContain('--limit');
    }
    const unknown = uniqueSlug('nobody');
    const res = await cli('batch', 'list', '--org', unknown);
    expect(res).toMatchObject({ code: 1, stdout: '' });
    expect(res.stderr).toBe(`error: no org with slug ${unknown}\n`);
    const empty = (await new OrgsRepository(prisma).create(uniqueSlug('cli-bat-e'), 'empty'))!;
    expect((await cli('batch', 'list', '--org', empty.slug)).lines).toEqual([`No batches in org ${empty.slug}.`]);
  });

  it('batch cancel moves a running batch to cancelling (the worker then ends it); again is harmless', async () => {
    const res = await cli('batch', 'cancel', ids[0]);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.lines[0]).toBe(`Cancelling batch ${ids[0]}`);
    expect(res.stdout).toContain('progress:   1 of 3 lines done (0 failed)');
    const row = await prisma.batch.findUniqueOrThrow({ where: { id: ids[0] } });
    // a worker of another test file may have finished the cancel already
    expect(['cancelling', 'cancelled']).toContain(row.status);
    expect(row.cancellingAt).not.toBeNull();
    const again = await cli('batch', 'cancel', ids[0]);
    expect(again.code).toBe(0);
    expect((await prisma.batch.findUniqueOrThrow({ where: { id: ids[0] } })).cancellingAt).toEqual(row.cancellingAt);
    // the other batch of the org runs on
    expect((await prisma.batch.findUniqueOrThrow({ where: { id: ids[1] } })).status).toBe('in_progress');
  });

  it('batch cancel refuses an ended batch and an unknown one (exit 1), and a malformed id (exit 2)', async () => {
    const ended = await cli('batch', 'cancel', ids[2]);
    expect(ended).toMatchObject({ code: 1, stdout: '' });
    expect(ended.stderr).toBe(`error: batch ${ids[2]} is completed: only a validating, in_progress or finalizing batch can be cancelled\n`);
    expect((await prisma.batch.findUniqueOrThrow({ where: { id: ids[2] } })).status).toBe('completed');
    const unknown = await cli('batch', 'cancel', 'batch_doesnotexist000000000');
    expect(unknown).toMatchObject({ code: 1, stderr: 'error: no batch with id batch_doesnotexist000000000\n' });
    const bad = await cli('batch', 'cancel', "batch_'; DROP TABLE batches");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('batch_id: expected a batch id');
    expect(bad.stderr).toContain('usage: npm run cli -- batch cancel <batch_id>');
  });
});
