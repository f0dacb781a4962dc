import { BillingDisabledError, BillingSetupService, BillingSyncMetrics, BillingSyncService, PriceBook, StripeClient } from '@spot/billing';
import { OrgChangePublisher } from '@spot/keys';
import { loadConfig } from '@spot/config';
import { BillingLinesRepository, BillingOutboxRepository, OrgBillingRepository, PrismaService } from '@spot/db';
import {
  billedTokens,
  type BillingTestStack,
  createOrg,
  insertUsage,
  startBillingStack,
  usageTokens,
} from '../fakes/stripe/billing-test-stack';

const period = () => new Date().toISOString().slice(0, 7);

/** Rolls up, syncs until nothing is pending, and returns the last pass. */
async function settle(stack: BillingTestStack, sync = stack.sync) {
  await stack.rollup.runPass();
  for (let i = 0; i < 30; i++) {
    const pass = await sync.runPass();
    if (pass.pending === 0) return pass;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('sync did not converge');
}

describe('billing sync to Stripe (fake Stripe, real Postgres)', () => {
  let stack: BillingTestStack;

  beforeAll(async () => {
    stack = await startBillingStack();
  });
  afterAll(async () => {
    await stack.close();
  });
  beforeEach(() => {
    stack.fake.faults.length = 0;
  });

  it('enables an org (customer, metered subscription per price line), bills every token once, and agrees with Stripe to the cent', async () => {
    const org = await createOrg(stack.prisma);
    const enabled = await stack.setup.enableOrg(org.id);
    expect(enabled.created).toBe(true);
    const customer = stack.fake.state.customers.get(enabled.customerId);
    expect(customer?.metadata).toMatchObject({ org_id: org.id });
    // 2 directions x 2 plain lines + 3 for the cached model
    expect(stack.fake.state.meters.size).toBe(7);
    expect([...stack.fake.state.prices.values()].map((p) => p.unit_amount_decimal).sort()).toEqual(
      ['0.0000075', '0.00003', '0.00012', '0.000005', '0.00001', '0.000007', '0.000014'].sort(),
    );
    const sub = stack.fake.state.subscriptions.get(enabled.subscriptionId);
    expect(sub?.items.data).toHaveLength(7);
    const row = await stack.prisma.org.findUniqueOrThrow({ where: { id: org.id } });
    expect(row).toMatchObject({ stripeCustomerId: enabled.customerId, stripeSubscriptionId: enabled.subscriptionId, billingStatus: 'active' });
    expect(row.billingStatusAt).not.toBeNull();

    // enabling again creates nothing
    const again = await stack.setup.enableOrg(org.id);
    expect(again.created).toBe(false);
    expect(stack.fake.state.customers.size).toBe(1);
    expect(stack.fake.state.subscriptions.size).toBe(1);

    await insertUsage(stack.prisma, org.id, 301, { seed: 11 });
    const pass = await settle(stack);
    expect(pass.rejected).toBe(0);
    expect(billedTokens(stack.fake, enabled.customerId)).toBe(await usageTokens(stack.prisma, org.id));

    // our bill = Stripe's invoice preview, to the cent, across 7 lines each rounded on its own
    const bill = await stack.bills.bill(row, period());
    expect(bill.source).toBe('stripe');
    expect(bill.lines.length).toBeGreaterThanOrEqual(6);
    expect(bill.totalCents).toBeGreaterThan(0);
    expect(bill.stripe?.error).toBeNull();
    expect(bill.stripe?.totalCents).toBe(bill.totalCents);

    // more usage later: only the delta is sent, and the figures still agree
    const sentBefore = stack.fake.state.meterEvents.length;
    await insertUsage(stack.prisma, org.id, 37, { seed: 5 });
    await settle(stack);
    expect(stack.fake.state.meterEvents.length).toBeGreaterThan(sentBefore);
    expect(billedTokens(stack.fake, enabled.customerId)).toBe(await usageTokens(stack.prisma, org.id));
    const after = await stack.bills.bill(row, period());
    expect(after.stripe?.totalCents).toBe(after.totalCents);

    // nothing new: a pass sends nothing
    const idle = await stack.sync.runPass();
    expect(idle).toMatchObject({ queued: 0, accepted: 0, duplicates: 0, pending: 0 });
  });

  it('rounds each invoice line on its own, as Stripe does: three half-cent lines bill 3 cents on both sides', async () => {
    const org = await createOrg(stack.prisma);
    await stack.setup.enableOrg(org.id);
    const key = '00000000-0000-4000-8000-00000000000a';
    const at = new Date(Math.max(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1), Date.now() - 60_000));
    await stack.prisma.$executeRaw`
      INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, cached_tokens, duration_ms, status, cost_nanos)
      VALUES (${`half-${org.id}-1`}, ${at}, ${org.id}::uuid, ${key}::uuid, 'm-plain', 't-spot', 100000, 50000, 0, 1, 200, 10000000),
             (${`half-${org.id}-2`}, ${at}, ${org.id}::uuid, ${key}::uuid, 'm-plain', 't-od', 71429, 0, 0, 1, 200, 5000030)`;
    await settle(stack);
    const row = await stack.prisma.org.findUniqueOrThrow({ where: { id: org.id } });
    const bill = await stack.bills.bill(row, period());
    // 100,000 x 0.000005 = 0.5 -> 1; 50,000 x 0.00001 = 0.5 -> 1; 71,429 x 0.000007 = 0.500003 -> 1
    expect(bill.lines.map((l) => [l.model, l.tier, l.direction, l.tokens, l.amountCents])).toEqual([
      ['m-plain', 't-od', 'input', 71_429, 1],
      ['m-plain', 't-spot', 'input', 100_000, 1],
      ['m-plain', 't-spot', 'output', 50_000, 1],
    ]);
    expect(bill.totalCents).toBe(3);
    expect(bill.stripe?.totalCents).toBe(3);
  });

  it('converges exactly once through 500 and 429 storms, dropped connections and timeouts', async () => {
    const org = await createOrg(stack.prisma);
    const { customerId } = await stack.setup.enableOrg(org.id);
    await insertUsage(stack.prisma, org.id, 120, { seed: 3 });
    const path = '/v1/billing/meter_events';
    stack.fake.faults.push(
      { kind: '500', path, count: 25 },
      { kind: '429', path, count: 25 },
      // Stripe took these, but we never heard: the resend must not bill twice
      { kind: 'drop', when: 'after', path, count: 4 },
      { kind: 'timeout', when: 'after', path, count: 2 },
      { kind: 'drop', when: 'before', path, count: 2 },
    );
    await settle(stack);
    expect(stack.fake.faults).toHaveLength(0);
    const requests = stack.fake.requests.filter((r) => r.path === path);
    expect(requests.some((r) => r.status === 429)).toBe(true);
    expect(requests.some((r) => r.replayed)).toBe(true);
    expect(billedTokens(stack.fake, customerId)).toBe(await usageTokens(stack.prisma, org.id));
    const outbox = await stack.prisma.meterEventOutbox.findMany({ where: { orgId: org.id } });
    expect(outbox.every((e) => e.status === 'accepted')).toBe(true);
    expect(outbox.some((e) => e.attempts > 1)).toBe(true);
  }, 120_000);

  it('two workers rolling up and syncing at once while usage keeps coming: every token billed once', async () => {
    const org = await createOrg(stack.prisma);
    const { customerId } = await stack.setup.enableOrg(org.id);
    const other = await stack.second();
    let writing = true;
    const loop = async (w: { rollup: typeof stack.rollup; sync: typeof stack.sync }) => {
      while (writing) {
        await w.rollup.runPass(40);
        await w.sync.runPass();
      }
    };
    const workers = [loop(stack), loop(other)];
    for (let i = 0; i < 12; i++) {
      await insertUsage(stack.prisma, org.id, 25, { seed: 100 + i });
      await new Promise((r) => setTimeout(r, 60));
    }
    writing = false;
    await Promise.all(workers);
    await settle(stack);
    await settle(stack, other.sync);
    expect(billedTokens(stack.fake, customerId)).toBe(await usageTokens(stack.prisma, org.id));
    const identifiers = stack.fake.state.meterEvents.map((e) => e.identifier);
    expect(new Set(identifiers).size).toBe(identifiers.length);
  }, 120_000);

  it('counts a resent identifier Stripe already has ("already exists") as billed, not failed', async () => {
    const org = await createOrg(stack.prisma);
    const { customerId } = await stack.setup.enableOrg(org.id);
    await insertUsage(stack.prisma, org.id, 9, { seed: 9 });
    await settle(stack);
    const billed = billedTokens(stack.fake, customerId);
    // as if we crashed after Stripe took the events but before recording it, more than a day later
    // (Idempotency-Keys forgotten): the identifier dedup answers instead
    stack.fake.state.idempotency.clear();
    const reset = await stack.prisma.meterEventOutbox.updateMany({ where: { orgId: org.id }, data: { status: 'pending', acceptedAt: null } });
    const pass = await stack.sync.runPass();
    expect(pass.duplicates).toBe(reset.count);
    expect(pass).toMatchObject({ rejected: 0, pending: 0 });
    expect(billedTokens(stack.fake, customerId)).toBe(billed);
    const outbox = await stack.prisma.meterEventOutbox.findMany({ where: { orgId: org.id } });
    expect(outbox.every((e) => e.status === 'accepted' && /already billed/.test(e.lastError ?? ''))).toBe(true);
  });

  it('flags events older than Stripe accepts as rejected_too_old and reports them, never drops them silently', async () => {
    const org = await createOrg(stack.prisma);
    const { customerId } = await stack.setup.enableOrg(org.id);
    await insertUsage(stack.prisma, org.id, 3, { seed: 1 });
    await stack.rollup.runPass();
    // queue the events without sending them (Stripe unreachable), then let them age past Stripe's window
    stack.fake.faults.push({ kind: '500', path: '/v1/billing/meter_events', count: 1_000 });
    const stuck = await stack.sync.tune({ triesPerPass: 1 }).runPass();
    stack.sync.tune({ triesPerPass: 8 });
    stack.fake.faults.length = 0;
    expect(stuck.queued).toBeGreaterThan(0);
    expect(stuck.pending).toBeGreaterThanOrEqual(stuck.queued);
    await stack.prisma.meterEventOutbox.updateMany({ where: { orgId: org.id }, data: { claimedUntil: null } });
    const old = new Date(Date.now() - 40 * 86_400_000);
    await stack.prisma.meterEventOutbox.updateMany({ where: { orgId: org.id }, data: { timestamp: old } });
    const pass = await stack.sync.runPass();
    expect(pass.rejected).toBeGreaterThan(0);
    expect(billedTokens(stack.fake, customerId)).toBe(0);
    const rows = await stack.prisma.meterEventOutbox.findMany({ where: { orgId: org.id } });
    expect(rows.length).toBe(stuck.queued);
    expect(rows.every((r) => r.status === 'rejected_too_old' && /older than Stripe accepts/.test(r.lastError ?? ''))).toBe(true);
  });

  it('is off without STRIPE_SECRET_KEY: a pass does nothing and says so', async () => {
    const config = loadConfig({ ...process.env, STRIPE_SECRET_KEY: '' });
    const stripe = new StripeClient(config);
    expect(stripe.enabled).toBe(false);
    const prisma = new PrismaService(config);
    try {
      const sync = new BillingSyncService(stripe, stack.app.get(PriceBook), stack.setup, new BillingOutboxRepository(prisma), new OrgBillingRepository(prisma), new BillingSyncMetrics());
      expect(await sync.runPass()).toMatchObject({ enabled: false, queued: 0, accepted: 0 });
      const setup = new BillingSetupService(
        stripe,
        stack.app.get(PriceBook),
        new BillingLinesRepository(prisma),
        new OrgBillingRepository(prisma),
        stack.app.get(OrgChangePublisher),
        new BillingOutboxRepository(prisma),
      );
      const org = await createOrg(stack.prisma);
      await expect(setup.enableOrg(org.id)).rejects.toThrow(BillingDisabledError);
    } finally {
      await prisma.$disconnect();
    }
  });
});
