import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ApiKeysRepository } from '@spot/db';
import { mintApiKey } from '@spot/keys';
import OpenAI, { toFile } from 'openai';
import { type BillingTestStack, createOrg, startBillingStack, waitUntil } from '../fakes/stripe/billing-test-stack';
import { BATCH_ADMIN_TOKEN, batchTiersFile, chatLines, killProcess, type SimProcess, simProcess, spawnWorker } from '../support/batch-stack';
import { type GatewayProcess, spawnGateway } from '../support/gateway-process';

const MODEL = 'batch-llama';
const LINES = 2000;

/**
 * The Batch API end to end with the official SDK, on spot capacity that vanishes: the gateway and two-then-one
 * worker processes from the build over real Postgres and Redis, two spot engines (vllm-sim processes), fake Stripe.
 * During the run the first spot engine is SIGKILLed twice and a worker once; every line is still done once,
 * billed once at the batch price, and the bill equals Stripe's invoice preview to the cent.
 */
describe('Batch API on spot capacity: 2,000 lines through SIGKILLs', () => {
  let stack: BillingTestStack;
  let gateway: GatewayProcess;
  let spotA: SimProcess;
  let spotB: SimProcess;
  let od: SimProcess;
  const workers: ChildProcess[] = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    const simArgs = ['--ttft-ms', '2', '--itl-ms', '1', '--output-tokens', '6'];
    spotA = await simProcess(simArgs);
    spotB = await simProcess(simArgs);
    od = await simProcess(simArgs);
    const tiers = batchTiersFile([spotA.url, spotB.url], [od.url], MODEL);
    stack = await startBillingStack({ TIERS_FILE: tiers });
    env = {
      ...stack.env,
      ADMIN_TOKEN: BATCH_ADMIN_TOKEN,
      HEALTH_CHECK_INTERVAL_MS: '200',
      BREAKER_COOLDOWN_MS: '300',
      ROUTE_DEADLINE_MS: '3000',
    };
    gateway = await spawnGateway({ env });
    Object.assign(env, {
      GATEWAY_INTERNAL_URL: gateway.url,
      BATCH_LOCK_MS: '3000',
      BATCH_SWEEP_MS: '300',
      BATCH_CONCURRENCY: '24',
      BATCH_METRICS_EVERY_MS: '200',
      USAGE_ROLLUP_EVERY_MS: '500',
      BILLING_SYNC_EVERY_MS: '500',
    });
  }, 60_000);

  afterAll(async () => {
    for (const w of workers) await killProcess(w);
    await gateway?.stop('SIGKILL');
    for (const s of [spotA, spotB, od]) await s?.kill();
    await stack?.close();
  });

  it('files.create, batches.create, poll to completed, files.content: every line exactly once, billed once at the batch price', async () => {
    const org = await createOrg(stack.prisma, 'batch');
    const customer = (await stack.setup.enableOrg(org.id)).customerId;
    const minted = mintApiKey();
    await new ApiKeysRepository(stack.prisma).create({ orgId: org.id, name: 'b', prefix: minted.prefix, secretHash: minted.secretHash, allowedModels: [], expiresAt: null, createdById: null });
    const client = new OpenAI({ baseURL: gateway.baseURL, apiKey: minted.key, maxRetries: 2 });

    workers.push(spawnWorker(env), spawnWorker(env));
    const input = await client.files.create({ file: await toFile(Buffer.from(chatLines(LINES, MODEL)), 'input.jsonl'), purpose: 'batch' });
    expect(input).toMatchObject({ object: 'file', purpose: 'batch', status: 'processed', filename: 'input.jsonl' });
    const created = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'spot' } });
    expect(created).toMatchObject({ object: 'batch', status: 'validating', input_file_id: input.id, metadata: { run: 'spot' } });

    // the faults, each once progress passes its mark
    const faults: Array<{ at: number; done: boolean; run: () => Promise<void> }> = [
      { at: 300, done: false, run: async () => { await spotA.kill(); setTimeout(() => void spotA.start(), 800); } },
      { at: 800, done: false, run: async () => { await killProcess(workers[0]); workers.push(spawnWorker(env)); } },
      { at: 1300, done: false, run: async () => { await spotA.kill(); setTimeout(() => void spotA.start(), 800); } },
    ];
    let batch = created;
    const seen = new Set<string>();
    const deadline = Date.now() + 240_000;
    while (batch.status !== 'completed') {
      if (Date.now() > deadline || ['failed', 'expired', 'cancelled'].includes(batch.status)) throw new Error(`batch ended ${batch.status}: ${JSON.stringify(batch)}`);
      await new Promise((r) => setTimeout(r, 100));
      batch = await client.batches.retrieve(created.id);
      seen.add(batch.status);
      const done = batch.request_counts?.completed ?? 0;
      for (const f of faults) {
        if (!f.done && done >= f.at) {
          f.done = true;
          await f.run();
        }
      }
    }
    expect(faults.every((f) => f.done)).toBe(true);
    expect(seen.has('in_progress')).toBe(true);
    expect(batch.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });
    expect(batch.output_file_id).toEqual(expect.stringMatching(/^file-/));
    expect(batch.error_file_id ?? null).toBeNull();
    expect(batch.completed_at).toBeGreaterThanOrEqual(batch.in_progress_at!);

    const text = await (await client.files.content(batch.output_file_id!)).text();
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { id: string; custom_id: string; response: { status_code: number; request_id: string; body: { object: string; choices: unknown[]; usage: { prompt_tokens: number; completion_tokens: number } } }; error: null });
    expect(lines).toHaveLength(LINES);
    expect(new Set(lines.map((l) => l.custom_id)).size).toBe(LINES);
    for (const l of lines) {
      expect(l.id).toMatch(/^batch_req_/);
      expect(l.error).toBeNull();
      expect(l.response.status_code).toBe(200);
      expect(l.response.request_id).toMatch(/^req_/);
      expect(l.response.body.object).toBe('chat.completion');
    }
    const output = await client.files.retrieve(batch.output_file_id!);
    expect(output).toMatchObject({ purpose: 'batch_output', bytes: Buffer.byteLength(text) });

    // one usage event per line, at the batch tier's price line
    const events = await stack.prisma.usageEvent.findMany({ where: { batchId: created.id } });
    expect(events).toHaveLength(LINES);
    expect(new Set(events.map((e) => e.requestId)).size).toBe(LINES);
    expect(new Set(events.map((e) => e.tier))).toEqual(new Set(['spot:batch']));
    const tokens = lines.reduce((s, l) => ({ p: s.p + l.response.body.usage.prompt_tokens, c: s.c + l.response.body.usage.completion_tokens }), { p: 0, c: 0 });
    expect(events.reduce((s, e) => s + e.promptTokens, 0)).toBe(tokens.p);
    expect(events.reduce((s, e) => s + e.completionTokens, 0)).toBe(tokens.c);
    // half of spot's 40/80 $ per Mtok
    const nanos = events.reduce((s, e) => s + Number(e.costNanos), 0);
    expect(nanos).toBe(tokens.p * 20_000 + tokens.c * 40_000);
    expect(await stack.prisma.usageEvent.count({ where: { orgId: org.id, batchId: null } })).toBe(0);

    // rolled up, synced to Stripe once, and the bill is Stripe's preview to the cent
    await waitUntil(
      async () =>
        (await stack.prisma.usageEvent.count({ where: { orgId: org.id, rolledUpAt: null } })) === 0 &&
        (await stack.prisma.meterEventOutbox.count({ where: { orgId: org.id, status: { not: 'accepted' } } })) === 0 &&
        (await stack.prisma.meterEventOutbox.count({ where: { orgId: org.id } })) > 0,
      60_000,
      'the rollup and the Stripe sync',
    );
    const billed = stack.fake.state.meterEvents.filter((e) => e.payload.stripe_customer_id === customer).reduce((s, e) => s + Number(e.payload.value), 0);
    expect(billed).toBe(tokens.p + tokens.c);
    const period = new Date().toISOString().slice(0, 7);
    const fresh = await stack.prisma.org.findUniqueOrThrow({ where: { id: org.id } });
    const bill = await stack.bills.bill(fresh, period);
    expect(bill.lines.map((l) => l.tier)).toEqual(['spot:batch', 'spot:batch']);
    expect(bill.lines.map((l) => l.unitAmountDecimal)).toEqual(['0.002', '0.004']);
    expect(bill.totalCents).toBeGreaterThan(0);
    expect(bill.stripe?.totalCents).toBe(bill.totalCents);
    expect(Math.abs(bill.totalCents - nanos / 1e7)).toBeLessThanOrEqual(1);
    void randomBytes;
  }, 300_000);
});
