import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type INestApplicationContext, Logger, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BillCalculator, BillingModule, BillingSetupService, BillingSyncService, UsageRollupService } from '@spot/billing';
import { type AppConfig, ConfigModule, loadConfig } from '@spot/config';
import { DbModule, type Org, OrgsRepository, PrismaService } from '@spot/db';
import { RedisModule } from '@spot/redis';
import { type FakeStripe, startFakeStripe } from './fake-stripe';

/** The price book of the billing tests: a model with a cached price, one without, on two tiers (no batch lines: see the batch tests). */
export const TEST_TIERS_YAML = `tiers:
  - name: t-spot
    kind: spot
    batch: false
    endpoints: [http://127.0.0.1:9]
    models:
      - id: m-plain
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
      - id: m-cached
        price: { input_per_mtok: 0.3, output_per_mtok: 1.2, cached_input_per_mtok: 0.075 }
  - name: t-od
    kind: on-demand
    endpoints: [http://127.0.0.1:9]
    models:
      - id: m-plain
        price: { input_per_mtok: 0.07, output_per_mtok: 0.14 }
`;

/** Writes the test price book to a temp file; returns its path. */
export function writeTestTiers(yaml = TEST_TIERS_YAML): string {
  const dir = mkdtempSync(join(tmpdir(), 'spot-billing-'));
  const path = join(dir, 'tiers.yaml');
  writeFileSync(path, yaml);
  return path;
}

@Module({})
class BillingTestModule {
  static forRoot(config: AppConfig): DynamicModule {
    return { module: BillingTestModule, imports: [ConfigModule.forRoot(config), DbModule, RedisModule, BillingModule] };
  }
}

/** A fake Stripe account of its own (unique secret key) and the billing services wired to it, in-process. */
export interface BillingTestStack {
  fake: FakeStripe;
  /** The environment a worker or CLI process needs to use the same Stripe, Postgres, Redis and price book. */
  env: Record<string, string>;
  config: AppConfig;
  app: INestApplicationContext;
  prisma: PrismaService;
  rollup: UsageRollupService;
  sync: BillingSyncService;
  setup: BillingSetupService;
  bills: BillCalculator;
  /** A second, independent set of services (own Postgres pool): a second worker. */
  second(): Promise<{ rollup: UsageRollupService; sync: BillingSyncService; app: INestApplicationContext }>;
  close(): Promise<void>;
}

export async function startBillingStack(overrides: Record<string, string> = {}): Promise<BillingTestStack> {
  Logger.overrideLogger(['error']);
  const fake = await startFakeStripe({ apiKey: `sk_test_${randomBytes(12).toString('hex')}` });
  const env: Record<string, string> = {
    DATABASE_URL: process.env.DATABASE_URL ?? '',
    REDIS_URL: process.env.REDIS_URL ?? '',
    REDIS_PREFIX: `test:billing:${randomBytes(4).toString('hex')}:`,
    STRIPE_SECRET_KEY: fake.apiKey,
    STRIPE_API_BASE: fake.url,
    STRIPE_WEBHOOK_SECRET: fake.webhookSecret,
    STRIPE_TIMEOUT_MS: '2000',
    TIERS_FILE: writeTestTiers(),
    LOG_LEVEL: 'error',
    ...overrides,
  };
  const config = loadConfig({ ...process.env, ...env });
  const apps: INestApplicationContext[] = [];
  const open = async () => {
    const app = await NestFactory.createApplicationContext(BillingTestModule.forRoot(config), { logger: ['error'] });
    apps.push(app);
    return app;
  };
  const app = await open();
  return {
    fake,
    env,
    config,
    app,
    prisma: app.get(PrismaService),
    rollup: app.get(UsageRollupService),
    sync: app.get(BillingSyncService).tune({ leaseMs: 3_000 }),
    setup: app.get(BillingSetupService),
    bills: app.get(BillCalculator),
    async second() {
      const other = await open();
      return { app: other, rollup: other.get(UsageRollupService), sync: other.get(BillingSyncService).tune({ leaseMs: 3_000 }) };
    },
    async close() {
      for (const a of apps) await a.close();
      await fake.close();
    },
  };
}

/** A new org (unique slug). */
export async function createOrg(prisma: PrismaService, base = 'bill'): Promise<Org> {
  const org = await new OrgsRepository(prisma).create(`${base}-${randomBytes(5).toString('hex')}`, 'Billing test org');
  if (org === null) throw new Error('slug taken');
  return org;
}

/** Usage events as the gateway writes them, for one org; returns the tokens the clients were told. */
export async function insertUsage(
  prisma: PrismaService,
  orgId: string,
  n: number,
  opts: { keys?: string[]; at?: () => Date; seed?: number } = {},
): Promise<{ prompt: number; completion: number; cached: number }> {
  const keys = opts.keys ?? [randomUUID(), randomUUID()];
  const models: Array<[string, string]> = [['m-plain', 't-spot'], ['m-cached', 't-spot'], ['m-plain', 't-od']];
  const now = Date.now();
  const monthStart = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1);
  const at = opts.at ?? (() => new Date(Math.max(monthStart, now - Math.floor(Math.random() * 3 * 3_600_000))));
  let s = opts.seed ?? 7;
  const rnd = (m: number) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % m;
  };
  const rows = Array.from({ length: n }, (_, i) => {
    const [model, tier] = models[i % models.length];
    const prompt = 1 + rnd(3000);
    const cached = model === 'm-cached' ? rnd(prompt + 1) : 0;
    return { requestId: `bill-${randomUUID()}`, createdAt: at(), orgId, keyId: keys[i % keys.length], model, tier, promptTokens: prompt, completionTokens: rnd(1500), cachedTokens: cached };
  });
  const col = <T>(pick: (r: (typeof rows)[number]) => T): T[] => rows.map(pick);
  await prisma.$executeRaw`
    INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, cached_tokens,
      duration_ms, status, estimated, cost_nanos)
    SELECT r, c, o, k, m, t, p, q, x, 10, 200, false, 0
    FROM unnest(${col((r) => r.requestId)}::text[], ${col((r) => r.createdAt)}::timestamptz[], ${col((r) => r.orgId)}::uuid[],
      ${col((r) => r.keyId)}::uuid[], ${col((r) => r.model)}::text[], ${col((r) => r.tier)}::text[], ${col((r) => r.promptTokens)}::int[],
      ${col((r) => r.completionTokens)}::int[], ${col((r) => r.cachedTokens)}::int[]) AS u(r, c, o, k, m, t, p, q, x)`;
  return rows.reduce((t, r) => ({ prompt: t.prompt + r.promptTokens, completion: t.completion + r.completionTokens, cached: t.cached + r.cachedTokens }), { prompt: 0, completion: 0, cached: 0 });
}

/** Tokens of an org's usage_events (what its clients were told): prompt + completion. */
export async function usageTokens(prisma: PrismaService, orgId: string): Promise<number> {
  const rows = await prisma.$queryRaw<Array<{ n: bigint | null }>>`
    SELECT sum(prompt_tokens + completion_tokens)::bigint AS n FROM usage_events WHERE org_id = ${orgId}::uuid`;
  return Number(rows[0]?.n ?? 0);
}

/** Tokens Stripe holds for a customer: the sum of its accepted meter events' values (all lines). */
export function billedTokens(fake: FakeStripe, customerId: string): number {
  return fake.state.meterEvents.filter((e) => e.payload.stripe_customer_id === customerId).reduce((s, e) => s + Number(e.payload.value), 0);
}

/** Polls until `check` returns true (or throws after `ms`). */
export async function waitUntil(check: () => Promise<boolean> | boolean, ms = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
