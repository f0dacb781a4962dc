import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI, { toFile } from 'openai';
import { BATCH_ADMIN_TOKEN, BATCH_UPSTREAM, chatLines, killProcess, type SimProcess, simProcess, spawnWorker } from '../support/batch-stack';
import { type GatewayProcess, spawnGateway } from '../support/gateway-process';

const FAST = 'fast-model';
const SLOW = 'slow-model';

/** Validation, per-line errors, cancel, expiry, two workers on one batch, and tenant isolation on every route. */
describe('Batch API: validation, errors, cancel, expiry, tenancy', () => {
  let prisma: PrismaService;
  let fast: SimProcess;
  let slow: SimProcess;
  let gateway: GatewayProcess;
  let shortWindow: GatewayProcess;
  const workers: ChildProcess[] = [];
  let a: OpenAI;
  let aShort: OpenAI;
  let b: OpenAI;
  let keyA: string;

  async function orgKey(models: string[] = []): Promise<string> {
    const org = await new OrgsRepository(prisma).create(`ba-${randomUUID().slice(0, 12)}`, 'Batch API test');
    const minted = mintApiKey();
    await new ApiKeysRepository(prisma).create({ orgId: org!.id, name: 'b', prefix: minted.prefix, secretHash: minted.secretHash, allowedModels: models, expiresAt: null, createdById: null });
    return minted.key;
  }

  async function until(client: OpenAI, id: string, statuses: string[], ms = 60_000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const batch = await client.batches.retrieve(id);
      if (statuses.includes(batch.status)) return batch;
      if (Date.now() > deadline) throw new Error(`batch ${id} is ${batch.status}, not ${statuses.join('|')}: ${JSON.stringify(batch)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function upload(client: OpenAI, text: string) {
    return client.files.create({ file: await toFile(Buffer.from(text), 'in.jsonl'), purpose: 'batch' });
  }

  beforeAll(async () => {
    prisma = new PrismaService(loadConfig());
    fast = await simProcess(['--ttft-ms', '2', '--itl-ms', '1', '--output-tokens', '4']);
    slow = await simProcess(['--ttft-ms', '700', '--itl-ms', '1', '--output-tokens', '4']);
    const dir = mkdtempSync(join(tmpdir(), 'batch-api-'));
    const tiers = join(dir, 'tiers.yaml');
    writeFileSync(
      tiers,
      `tiers:
  - name: spot-fast
    kind: spot
    endpoints: [${fast.url}]
    models:
      - { id: ${FAST}, upstream: ${BATCH_UPSTREAM}, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  - name: spot-slow
    kind: spot
    endpoints: [${slow.url}]
    models:
      - { id: ${SLOW}, upstream: ${BATCH_UPSTREAM}, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  - name: od
    kind: on-demand
    endpoints: [${fast.url}]
    models:
      - { id: interactive-only, upstream: ${BATCH_UPSTREAM}, price: { input_per_mtok: 1, output_per_mtok: 2 } }
`,
    );
    const prefix = `test:${randomUUID()}:`;
    const env = { TIERS_FILE: tiers, ADMIN_TOKEN: BATCH_ADMIN_TOKEN, REDIS_PREFIX: prefix };
    gateway = await spawnGateway({ env });
    shortWindow = await spawnGateway({ env: { ...env, BATCH_WINDOW_S: '3' } });
    const workerEnv = { ...env, GATEWAY_INTERNAL_URL: gateway.url, BATCH_SWEEP_MS: '200', BATCH_LOCK_MS: '3000', BATCH_CHUNK_LINES: '10', BATCH_CONCURRENCY: '8' };
    workers.push(spawnWorker(workerEnv), spawnWorker(workerEnv));
    keyA = await orgKey();
    a = new OpenAI({ baseURL: gateway.baseURL, apiKey: keyA, maxRetries: 0 });
    aShort = new OpenAI({ baseURL: shortWindow.baseURL, apiKey: keyA, maxRetries: 0 });
    b = new OpenAI({ baseURL: gateway.baseURL, apiKey: await orgKey(), maxRetries: 0 });
  }, 60_000);

  afterAll(async () => {
    for (const w of workers) await killProcess(w);
    await gateway?.stop('SIGKILL');
    await shortWindow?.stop('SIGKILL');
    await fast?.kill();
    await slow?.kill();
    await prisma?.$disconnect();
  });

  it('fails validation naming each bad line: malformed JSON, another url, a duplicate custom_id, a model not for batches', async () => {
    const good = (id: string, model = FAST) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: 'hi' }] } });
    const text = [
      good('a'),
      '{"custom_id": "b", "method": "POST"',
      JSON.stringify({ custom_id: 'c', method: 'POST', url: '/v1/embeddings', body: { model: FAST, input: 'x' } }),
      good('a'),
      good('d', 'interactive-only'),
      good('e', 'no-such-model'),
    ].join('\n');
    const file = await upload(a, text);
    const batch = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const failed = await until(a, batch.id, ['failed']);
    expect(failed.failed_at).toEqual(expect.any(Number));
    expect(failed.errors?.object).toBe('list');
    expect(failed.errors?.data?.map((e) => [e.code, e.line])).toEqual([
      ['invalid_json_line', 2],
      ['mismatched_endpoint', 3],
      ['duplicate_custom_id', 4],
      ['model_not_found', 5],
      ['model_not_found', 6],
    ]);
    expect(failed.output_file_id ?? null).toBeNull();
  });

  it('refuses a bad create at once: unknown endpoint, a window other than 24h, another org\'s file, a file not for batches', async () => {
    const file = await upload(a, chatLines(2, FAST));
    await expect(a.batches.create({ input_file_id: file.id, endpoint: '/v1/moderations' as '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400, param: 'endpoint' });
    await expect(a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '48h' as '24h' })).rejects.toMatchObject({ status: 400, param: 'completion_window' });
    await expect(b.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 404 });
    const other = await a.files.create({ file: await toFile(Buffer.from('x'), 'n.txt'), purpose: 'user_data' });
    await expect(a.batches.create({ input_file_id: other.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400 });
  });

  it('a line the engine refuses lands in the error file with its response; the others in the output file; only those are billed', async () => {
    const lines = chatLines(20, FAST).split('\n');
    lines[7] = JSON.stringify({ custom_id: 'bad', method: 'POST', url: '/v1/chat/completions', body: { model: FAST, messages: [] } });
    const file = await upload(a, lines.join('\n'));
    const created = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await until(a, created.id, ['completed']);
    expect(done.request_counts).toEqual({ total: 20, completed: 19, failed: 1 });
    const errors = (await (await a.files.content(done.error_file_id!)).text()).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ custom_id: 'bad', error: null, response: { status_code: 400, body: { error: { type: 'invalid_request_error' } } } });
    const output = (await (await a.files.content(done.output_file_id!)).text()).trimEnd().split('\n');
    expect(output).toHaveLength(19);
    expect(await prisma.usageEvent.count({ where: { batchId: created.id } })).toBe(19);
  });

  it('two workers share a batch: each line done once, both workers took part', async () => {
    const file = await upload(a, chatLines(200, FAST));
    const created = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await until(a, created.id, ['completed'], 120_000);
    expect(done.request_counts).toEqual({ total: 200, completed: 200, failed: 0 });
    const events = await prisma.usageEvent.findMany({ where: { batchId: created.id } });
    expect(new Set(events.map((e) => e.requestId)).size).toBe(200);
    const out = (await (await a.files.content(done.output_file_id!)).text()).trimEnd().split('\n').map((l) => JSON.parse(l) as { custom_id: string });
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(200);
  });

  it('cancel stops new lines within seconds: cancelling, then cancelled, with what finished delivered and billed, the rest in the error file', async () => {
    const file = await upload(a, chatLines(300, SLOW));
    const created = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await until(a, created.id, ['in_progress']);
    for (let i = 0; i < 100 && ((await a.batches.retrieve(created.id)).request_counts?.completed ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 100));
    const cancelling = await a.batches.cancel(created.id);
    expect(cancelling.status).toBe('cancelling');
    expect(cancelling.cancelling_at).toEqual(expect.any(Number));
    const cancelled = await until(a, created.id, ['cancelled'], 10_000);
    const completed = cancelled.request_counts!.completed;
    expect(completed).toBeGreaterThan(0);
    expect(completed).toBeLessThan(300);
    // nothing runs after the cancel: the counts stay
    await new Promise((r) => setTimeout(r, 1500));
    expect((await a.batches.retrieve(created.id)).request_counts!.completed).toBe(completed);
    expect(await prisma.usageEvent.count({ where: { batchId: created.id } })).toBe(completed);
    const errors = (await (await a.files.content(cancelled.error_file_id!)).text()).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(300 - completed);
    expect(errors[0]).toMatchObject({ response: null, error: { code: 'batch_cancelled' } });
    await expect(a.batches.cancel(created.id)).resolves.toMatchObject({ status: 'cancelled' });
  });

  it('past its window a batch expires: finished lines delivered and billed, the rest in the error file as expired', async () => {
    const file = await upload(aShort, chatLines(200, SLOW));
    const created = await aShort.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(created.expires_at! - created.created_at).toBe(3);
    const expired = await until(a, created.id, ['expired'], 30_000);
    expect(expired.expired_at).toEqual(expect.any(Number));
    const completed = expired.request_counts!.completed;
    expect(completed).toBeLessThan(200);
    expect(await prisma.usageEvent.count({ where: { batchId: created.id } })).toBe(completed);
    const errors = (await (await a.files.content(expired.error_file_id!)).text()).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(200 - completed);
    expect(errors.every((e) => e.error?.code === 'batch_expired' && e.response === null)).toBe(true);
    if (completed > 0) expect((await (await a.files.content(expired.output_file_id!)).text()).trimEnd().split('\n')).toHaveLength(completed);
  });

  it('another org sees none of it: files and batches are 404 on every route and absent from lists', async () => {
    const file = await upload(a, chatLines(2, FAST));
    const batch = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await expect(b.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    await expect(b.files.content(file.id)).rejects.toMatchObject({ status: 404 });
    await expect(b.files.delete(file.id)).rejects.toMatchObject({ status: 404 });
    await expect(b.batches.retrieve(batch.id)).rejects.toMatchObject({ status: 404 });
    await expect(b.batches.cancel(batch.id)).rejects.toMatchObject({ status: 404 });
    const files: string[] = [];
    for await (const f of b.files.list()) files.push(f.id);
    expect(files).not.toContain(file.id);
    const batches: string[] = [];
    for await (const x of b.batches.list()) batches.push(x.id);
    expect(batches).not.toContain(batch.id);
    // still there for its own org
    await expect(a.files.retrieve(file.id)).resolves.toMatchObject({ id: file.id });
    const mine: string[] = [];
    for await (const x of a.batches.list({ limit: 2 })) mine.push(x.id);
    expect(mine).toContain(batch.id);
    // and deleted only by it
    await expect(a.files.delete(file.id)).resolves.toMatchObject({ id: file.id, deleted: true, object: 'file' });
    await expect(a.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
  });

  it('an upload is refused on its key before its body is read; the internal line route needs the admin token', async () => {
    const body = new FormData();
    body.append('purpose', 'batch');
    body.append('file', new Blob([Buffer.alloc(2 * 1024 * 1024, 'a')]), 'big.jsonl');
    const refused = await fetch(`${gateway.baseURL}/files`, { method: 'POST', headers: { authorization: 'Bearer sk-nope' }, body });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect(await prisma.file.count({ where: { filename: 'big.jsonl' } })).toBe(0);
    const line = await fetch(`${gateway.url}/internal/batch/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json', 'x-spot-batch-key': randomUUID() },
      body: JSON.stringify({ model: FAST, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(line.status).toBe(401);
    expect(((await line.json()) as { error: { code: string } }).error.code).toBe('invalid_admin_token');
  });
});
