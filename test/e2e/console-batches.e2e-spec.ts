import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { BatchesRepository, FilesRepository, PrismaService } from '@spot/db';
import OpenAI, { toFile } from 'openai';
import { BATCH_ADMIN_TOKEN, batchTiersFile, killProcess, seedRunningBatch, type SimProcess, simProcess, spawnWorker } from '../support/batch-stack';
import { type Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';
import { type GatewayProcess, spawnGateway } from '../support/gateway-process';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();
const slugOf = (tag: string) => `${tag}-${Math.random().toString(36).slice(2, 10)}`;

const MODEL = 'console-batch-model';
const EVIL = `<img src=x onerror=alert(1)>"'&`;

/**
 * The console's Batches page and its JSON twins, over a batch made through the gateway with the official SDK and
 * run by a worker (sim, gateway and worker processes from the build), and batches seeded through the repositories.
 */
describe('console: the Batches page', () => {
  let s: ConsoleStack;
  let prisma: PrismaService;
  let sim: SimProcess;
  let gateway: GatewayProcess;
  let worker: ChildProcess;
  let alice: Browser;
  let bob: Browser;
  const orgA = slugOf('bat-a');
  const orgB = slugOf('bat-b');
  let orgAId: string;
  let keyAId: string;
  let client: OpenAI;
  /** The batch run through the gateway: 6 lines, one refused by the engine. */
  let done: OpenAI.Batches.Batch;
  let inputText: string;
  /** A seeded batch in progress: 1 of 3 lines done. */
  let running: string;

  async function until(id: string, statuses: string[], ms = 60_000): Promise<OpenAI.Batches.Batch> {
    const deadline = Date.now() + ms;
    for (;;) {
      const b = await client.batches.retrieve(id);
      if (statuses.includes(b.status)) return b;
      if (Date.now() > deadline) throw new Error(`batch ${id} is ${b.status}, not ${statuses.join('|')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const seedRunning = (lines: number, done: number, metadata: Record<string, string> | null = null) =>
    seedRunningBatch(prisma, { orgId: orgAId, keyId: keyAId, lines, done, metadata, model: MODEL });

  beforeAll(async () => {
    sim = await simProcess(['--ttft-ms', '1', '--itl-ms', '1', '--output-tokens', '5']);
    const tiers = batchTiersFile([sim.url], [sim.url], MODEL);
    s = await startConsoleStack({ TIERS_FILE: tiers });
    prisma = s.app.get(PrismaService);
    const env = { TIERS_FILE: tiers, ADMIN_TOKEN: BATCH_ADMIN_TOKEN, REDIS_PREFIX: `test:${randomUUID()}:` };
    gateway = await spawnGateway({ env });
    worker = spawnWorker({ ...env, GATEWAY_INTERNAL_URL: gateway.url, BATCH_SWEEP_MS: '200', BATCH_LOCK_MS: '3000', BATCH_CHUNK_LINES: '10', BATCH_METRICS_EVERY_MS: '200' });

    alice = await s.signIn(newGitHubUser('bat-alice'));
    bob = await s.signIn(newGitHubUser('bat-bob'));
    expect((await alice.api('POST', '/api/orgs', { slug: orgA, name: 'Batches A' })).status).toBe(201);
    expect((await bob.api('POST', '/api/orgs', { slug: orgB, name: 'Batches B' })).status).toBe(201);
    orgAId = (await prisma.org.findUniqueOrThrow({ where: { slug: orgA } })).id;
    // the key's name is shown beside its batches: an HTML payload, escaped there
    const key = await j(alice.api('POST', `/api/orgs/${orgA}/keys`, { name: EVIL }));
    keyAId = key.id;
    client = new OpenAI({ baseURL: gateway.baseURL, apiKey: key.key, maxRetries: 1 });

    const lines = Array.from({ length: 6 }, (_, i) =>
      JSON.stringify({ custom_id: i === 0 ? EVIL : `line-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: MODEL, messages: i === 3 ? [] : [{ role: 'user', content: `hello ${i}` }], max_tokens: 5 } }),
    );
    inputText = `${lines.join('\n')}\n`;
    const file = await client.files.create({ file: await toFile(Buffer.from(inputText), `${EVIL}.jsonl`), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { project: EVIL, owner: 'alice' } });
    done = await until(created.id, ['completed']);
    running = await seedRunning(3, 1, { stage: 'seeded' });
  }, 90_000);

  afterAll(async () => {
    if (worker) await killProcess(worker);
    await gateway?.stop('SIGKILL');
    await sim?.kill();
    await s?.close();
  });

  it('lists the org\'s batches newest first with status, progress, counts, endpoint, times and the cost so far; the page is in the navigation', async () => {
    expect(done.request_counts).toEqual({ total: 6, completed: 5, failed: 1 });
    const events = await prisma.usageEvent.findMany({ where: { batchId: done.id } });
    expect(events).toHaveLength(5);
    const nanos = events.reduce((n, e) => n + Number(e.costNanos), 0);
    // half of spot's 40/80 $ per Mtok
    expect(nanos).toBe(events.reduce((n, e) => n + e.promptTokens * 20_000 + e.completionTokens * 40_000, 0));
    expect(nanos).toBeGreaterThan(0);

    const list = await j(alice.fetch(`/api/orgs/${orgA}/batches`));
    expect(list.data.map((b: { id: string }) => b.id)).toEqual([running, done.id]);
    expect(list).toMatchObject({ hasMore: false, nextAfter: null });
    const [seeded, ran] = list.data;
    expect(ran).toMatchObject({
      id: done.id,
      status: 'completed',
      endpoint: '/v1/chat/completions',
      requestCounts: { total: 6, completed: 5, failed: 1 },
      done: 6,
      metadata: { project: EVIL, owner: 'alice' },
      key: { id: keyAId, name: EVIL },
      outputFileId: done.output_file_id,
      errorFileId: done.error_file_id,
      finishedAt: expect.any(String),
      cancellable: false,
      errors: [],
    });
    expect(ran.costUsd).toBeCloseTo(nanos / 1e9, 12);
    // the batch object's usage and model (OpenAI's), and the console's, are the billed lines' tokens
    const tokens = { input: events.reduce((n, e) => n + e.promptTokens, 0), output: events.reduce((n, e) => n + e.completionTokens, 0) };
    expect(tokens.input).toBeGreaterThan(0);
    expect(done.model).toBe(MODEL);
    expect(done.usage).toEqual({
      input_tokens: tokens.input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: tokens.output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: tokens.input + tokens.output,
    });
    expect(ran).toMatchObject({ model: MODEL, usage: { inputTokens: tokens.input, outputTokens: tokens.output, cachedTokens: 0, totalTokens: tokens.input + tokens.output } });
    expect(Math.floor(Date.parse(ran.createdAt) / 1000)).toBe(done.created_at);
    expect(Math.floor(Date.parse(ran.finishedAt) / 1000)).toBe(done.completed_at);
    expect(seeded).toMatchObject({ status: 'in_progress', requestCounts: { total: 3, completed: 1, failed: 0 }, done: 1, finishedAt: null, cancellable: true, costUsd: 1.234e-6 });
    expect(await j(alice.fetch(`/api/orgs/${orgA}/batches/${done.id}`))).toEqual(ran);

    const res = await alice.fetch(`/orgs/${orgA}/batches`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(html).toContain(`<a href="/orgs/${orgA}/batches" aria-current="page">Batches</a>`);
    expect(html.indexOf(`data-batch="${running}"`)).toBeLessThan(html.indexOf(`data-batch="${done.id}"`));
    const rowOf = (id: string) => html.slice(html.indexOf(`<tr data-batch="${id}">`), html.indexOf('</tr>', html.indexOf(`<tr data-batch="${id}">`)));
    const doneRow = rowOf(done.id);
    expect(doneRow).toContain('<span class="badge" data-status="completed">completed</span>');
    expect(doneRow).toContain(`<progress value="6" max="6" aria-label="Progress of ${done.id}">100%</progress>`);
    expect(doneRow).toContain('<td data-testid="counts">5 completed · 1 failed · 6 total</td>');
    expect(doneRow).toContain('<code>/v1/chat/completions</code>');
    expect(doneRow).toContain(`<span data-testid="cost">$${(nanos / 1e9).toFixed(6)}</span>`);
    const input = events.reduce((n, e) => n + e.promptTokens, 0);
    const outputTokens = events.reduce((n, e) => n + e.completionTokens, 0);
    expect(doneRow).toContain(`<span class="muted" data-testid="tokens">${input.toLocaleString('en-US')} in · ${outputTokens.toLocaleString('en-US')} out</span>`);
    expect(doneRow).toContain(`<code>/v1/chat/completions</code><br><code>${MODEL}</code>`);
    expect(doneRow).toContain(`<time datetime="${ran.finishedAt}">`);
    expect(doneRow).toContain(`href="/orgs/${orgA}/batches/${done.id}/output"`);
    expect(doneRow).toContain(`href="/orgs/${orgA}/batches/${done.id}/errors"`);
    expect(doneRow).not.toContain('/cancel"');
    const runningRow = rowOf(running);
    expect(runningRow).toContain(`<progress value="1" max="3" aria-label="Progress of ${running}">33%</progress>`);
    expect(runningRow).toContain('<span data-testid="cost">$0.000001</span></td>');
    expect(runningRow).toContain(`<form method="post" action="/orgs/${orgA}/batches/${running}/cancel"`);
    expect(runningRow).toContain(`<input type="hidden" name="_csrf" value="${alice.csrfToken}">`);
    expect(runningRow).not.toContain('/output"');
  });

  it('downloads the output, error and input files through the console: the bytes the API serves, as attachments', async () => {
    const output = await (await client.files.content(done.output_file_id!)).text();
    const errors = await (await client.files.content(done.error_file_id!)).text();
    expect(output.trimEnd().split('\n')).toHaveLength(5);
    expect(JSON.parse(errors.trimEnd())).toMatchObject({ custom_id: 'line-3', response: { status_code: 400 } });
    for (const prefix of [`/orgs/${orgA}`, `/api/orgs/${orgA}`]) {
      for (const [which, text, name] of [
        ['output', output, `${done.id}_output.jsonl`],
        ['errors', errors, `${done.id}_error.jsonl`],
        ['input', inputText, null],
      ] as const) {
        const res = await alice.fetch(`${prefix}/batches/${done.id}/${which}`);
        expect({ which, status: res.status }).toEqual({ which, status: 200 });
        expect(res.headers.get('content-type')).toBe('application/octet-stream');
        expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
        const disposition = res.headers.get('content-disposition')!;
        if (name !== null) expect(disposition).toBe(`attachment; filename="${name}"; filename*=UTF-8''${name}`);
        else {
          // the uploaded name, harmless in the header and exact in filename*
          expect(disposition).toMatch(/^attachment; filename="[^"\\]*"; filename\*=UTF-8''[A-Za-z0-9%._~!-]+$/);
          const stored = (await client.files.retrieve(done.input_file_id)).filename;
          expect(stored).toMatch(/^<img src=x onerror=alert\(1\)>.*'&\.jsonl$/);
          expect(decodeURIComponent(disposition.split("UTF-8''")[1])).toBe(stored);
        }
        expect(await res.text()).toBe(text);
      }
    }
    // the custom id with HTML in it comes back as it went in, in a download (never rendered)
    expect(JSON.parse(output.split('\n')[0]).custom_id).toBe(EVIL);
    // a batch without an output file yet, and a file name that is not one
    expect((await alice.fetch(`/api/orgs/${orgA}/batches/${running}/output`)).status).toBe(404);
    expect((await alice.fetch(`/api/orgs/${orgA}/batches/${done.id}/secrets`)).status).toBe(404);
  });

  it('a chunked file is streamed whole, chunk after chunk', async () => {
    const id = await seedRunning(2, 0);
    const batch = await prisma.batch.findUniqueOrThrow({ where: { id } });
    const files = s.app.get(FilesRepository);
    // three more chunks of 1 MiB after the first, each a different byte
    const first = (await files.chunk(batch.inputFileId, 0))!;
    const extra = [0x61, 0x62, 0x63].map((b) => Buffer.alloc(1024 * 1024, b));
    for (const [i, buf] of extra.entries()) await files.appendChunk(batch.inputFileId, i + 1, new Uint8Array(buf));
    const bytes = first.byteLength + 3 * 1024 * 1024;
    await prisma.file.update({ where: { id: batch.inputFileId }, data: { bytes: BigInt(bytes) } });
    const res = await alice.fetch(`/orgs/${orgA}/batches/${id}/input`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.length).toBe(bytes);
    expect(body.subarray(0, first.byteLength).equals(Buffer.from(first))).toBe(true);
    expect(body.subarray(first.byteLength).equals(Buffer.concat(extra))).toBe(true);
    await s.app.get(BatchesRepository).requestCancel(orgAId, id);
  });

  it('escapes metadata, key names and validation errors: no markup from the data reaches the page', async () => {
    // a batch that fails validation, through the gateway and the worker
    const file = await client.files.create({ file: await toFile(Buffer.from(`{"custom_id": "${'x'.repeat(3)}", "method": "POST"\nnot json`), 'bad.jsonl'), purpose: 'batch' });
    const failed = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { [EVIL]: EVIL } });
    await until(failed.id, ['failed']);
    const html = await (await alice.fetch(`/orgs/${orgA}/batches`, { headers: { accept: 'text/html' } })).text();
    expect(html).not.toContain(EVIL);
    expect(html).not.toContain('<img');
    const escaped = '&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;';
    expect(html).toContain(`<dt>project</dt><dd>${escaped}</dd>`);
    expect(html).toContain(`<dt>${escaped}</dt><dd>${escaped}</dd>`);
    expect(html).toContain(`key ${escaped} (`);
    const row = html.slice(html.indexOf(`<tr data-batch="${failed.id}">`));
    expect(row).toContain('<span class="badge" data-status="failed">failed</span><details><summary>2 validation errors</summary>');
    expect(row).toContain('<li>line 1: This line is not parseable as valid JSON. <code>invalid_json_line</code></li>');
    const api = await j(alice.fetch(`/api/orgs/${orgA}/batches/${failed.id}`));
    expect(api.errors).toEqual([
      { code: 'invalid_json_line', message: 'This line is not parseable as valid JSON.', line: 1 },
      { code: 'invalid_json_line', message: 'This line is not parseable as valid JSON.', line: 2 },
    ]);
    expect(api).toMatchObject({ status: 'failed', cancellable: false, outputFileId: null, errorFileId: null });
  });

  it('pages through the batches, newest first, with a cursor', async () => {
    const all = (await j(alice.fetch(`/api/orgs/${orgA}/batches?limit=100`))).data.map((b: { id: string }) => b.id);
    expect(all.length).toBeGreaterThanOrEqual(4);
    const seen: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 10; i++) {
      const page: { data: Array<{ id: string }>; hasMore: boolean; nextAfter: string | null } = await j(alice.fetch(`/api/orgs/${orgA}/batches?limit=2${after ? `&after=${after}` : ''}`));
      seen.push(...page.data.map((b) => b.id));
      if (!page.hasMore) break;
      after = page.nextAfter;
    }
    expect(seen).toEqual(all);
    const html = await (await alice.fetch(`/orgs/${orgA}/batches?after=${all[1]}`, { headers: { accept: 'text/html' } })).text();
    expect(html).not.toContain(`data-batch="${all[0]}"`);
    expect(html).not.toContain(`data-batch="${all[1]}"`);
    expect(html).toContain(`data-batch="${all[2]}"`);
    expect(html).toContain(`<a href="/orgs/${orgA}/batches">Newest batches</a>`);
    expect((await alice.fetch(`/api/orgs/${orgA}/batches?limit=0`)).status).toBe(400);
    expect((await alice.fetch(`/api/orgs/${orgA}/batches?after=nope`)).status).toBe(400);
  });

  it('another org\'s batches and files are 404 on every route: page, JSON, downloads and cancel, and nothing changes', async () => {
    const ids = [done.id, running];
    const gets = [`/orgs/${orgA}/batches`, `/api/orgs/${orgA}/batches`];
    for (const id of ids) {
      for (const org of [orgA, orgB]) {
        gets.push(`/api/orgs/${org}/batches/${id}`);
        for (const which of ['input', 'output', 'errors']) gets.push(`/orgs/${org}/batches/${id}/${which}`, `/api/orgs/${org}/batches/${id}/${which}`);
      }
    }
    for (const path of gets) {
      for (const accept of ['application/json', 'text/html']) {
        const res = await bob.fetch(path, { headers: { accept } });
        expect({ path, accept, status: res.status }).toEqual({ path, accept, status: 404 });
        expect(await res.text()).not.toContain('"custom_id"');
      }
    }
    for (const org of [orgA, orgB]) {
      const api = await bob.api('POST', `/api/orgs/${org}/batches/${running}/cancel`);
      expect({ org, status: api.status }).toEqual({ org, status: 404 });
      const form = await bob.fetch(`/orgs/${org}/batches/${running}/cancel`, { method: 'POST', form: { _csrf: bob.csrfToken }, headers: { accept: 'text/html' } });
      expect({ org, status: form.status }).toEqual({ org, status: 404 });
    }
    // bob's own list is empty
    expect((await j(bob.fetch(`/api/orgs/${orgB}/batches`))).data).toEqual([]);
    expect((await prisma.batch.findUniqueOrThrow({ where: { id: running } })).status).toBe('in_progress');
  });

  it('cancel needs the CSRF token; with it the batch is cancelling, then cancelled by the worker; an ended batch is 409', async () => {
    const wrong = `${alice.csrfToken.slice(0, -1)}${alice.csrfToken.endsWith('x') ? 'y' : 'x'}`;
    for (const token of [null, wrong]) {
      const form = await alice.fetch(`/orgs/${orgA}/batches/${running}/cancel`, { method: 'POST', form: token === null ? {} : { _csrf: token }, headers: { accept: 'text/html' } });
      expect({ token, status: form.status }).toEqual({ token, status: 403 });
      const api = await alice.fetch(`/api/orgs/${orgA}/batches/${running}/cancel`, { method: 'POST', headers: token === null ? {} : { 'x-csrf-token': token } });
      expect({ token, status: api.status }).toEqual({ token, status: 403 });
    }
    expect((await prisma.batch.findUniqueOrThrow({ where: { id: running } })).status).toBe('in_progress');

    const res = await alice.fetch(`/orgs/${orgA}/batches/${running}/cancel`, { method: 'POST', form: { _csrf: alice.csrfToken } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/orgs/${orgA}/batches?cancelled=${running}`);
    expect(['cancelling', 'cancelled']).toContain((await prisma.batch.findUniqueOrThrow({ where: { id: running } })).status);
    const page = await (await alice.fetch(res.headers.get('location')!, { headers: { accept: 'text/html' } })).text();
    expect(page).toContain(`Batch <code>${running}</code> is being cancelled`);
    expect(page.slice(page.indexOf(`<tr data-batch="${running}">`)).split('</tr>')[0]).not.toContain('/cancel"');

    // the worker finishes it: the line done is delivered, the two not run are in the error file
    const cancelled = await until(running, ['cancelled'], 20_000);
    expect(cancelled.request_counts).toEqual({ total: 3, completed: 1, failed: 0 });
    const errors = (await (await alice.fetch(`/orgs/${orgA}/batches/${running}/errors`)).text()).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(errors.map((e) => [e.custom_id, e.error.code])).toEqual([
      ['seed-1', 'batch_cancelled'],
      ['seed-2', 'batch_cancelled'],
    ]);
    // the JSON twin answers the batch; one that has ended cannot be cancelled
    expect(await j(alice.api('POST', `/api/orgs/${orgA}/batches/${running}/cancel`))).toMatchObject({ id: running, status: 'cancelled', cancellable: false });
    const refused = await alice.api('POST', `/api/orgs/${orgA}/batches/${done.id}/cancel`);
    expect(refused.status).toBe(409);
    expect(await j(refused)).toMatchObject({ error: { code: 'batch_not_cancellable' } });
    expect((await prisma.batch.findUniqueOrThrow({ where: { id: done.id } })).status).toBe('completed');
  });
});
