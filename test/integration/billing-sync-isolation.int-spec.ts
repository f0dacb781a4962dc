import { type LoggerService, Logger } from '@nestjs/common';
import { BillingSyncMetrics, StripeClient } from '@spot/billing';
import { type Org, OrgBillingRepository } from '@spot/db';
import {
  billedTokens,
  type BillingTestStack,
  createOrg,
  insertUsage,
  startBillingStack,
  usageTokens,
} from '../fakes/stripe/billing-test-stack';

/** Keeps what the billing services log (Nest's static Logger), for the test to read. */
class LogLines implements LoggerService {
  readonly lines: string[] = [];
  log(m: unknown): void {
    this.lines.push(String(m));
  }
  error(m: unknown): void {
    this.lines.push(String(m));
  }
  warn(m: unknown): void {
    this.lines.push(String(m));
  }
}

const MINUTE = 60_000;

describe('billing sync: one org Stripe refuses does not stop the others', () => {
  let stack: BillingTestStack;
  const logs = new LogLines();

  beforeAll(async () => {
    stack = await startBillingStack();
    Logger.overrideLogger(logs);
  });
  afterAll(async () => {
    Logger.overrideLogger(['error']);
    await stack.close();
  });

  const row = (org: Org) => stack.prisma.org.findUniqueOrThrow({ where: { id: org.id } });
  const metric = async (name: string) => {
    const text = await stack.app.get(BillingSyncMetrics).registry.metrics();
    return text.split('\n').filter((l) => l.startsWith(name));
  };

  it('flags a canceled subscription, a vanished one and a deleted customer, bills the healthy orgs, backs off, and clears the flags once fixed', async () => {
    const api = stack.app.get(StripeClient).api!;
    const healthy1 = await createOrg(stack.prisma, 'ok1');
    const canceled = await createOrg(stack.prisma, 'cncl');
    const vanished = await createOrg(stack.prisma, 'vnsh');
    const deleted = await createOrg(stack.prisma, 'gone');
    const healthy2 = await createOrg(stack.prisma, 'ok2');
    const all = [healthy1, canceled, vanished, deleted, healthy2];
    const broken = [canceled, vanished, deleted];
    const enabled = new Map<string, { customerId: string; subscriptionId: string }>();
    for (const org of all) enabled.set(org.id, await stack.setup.enableOrg(org.id));
    for (const [i, org] of all.entries()) await insertUsage(stack.prisma, org.id, 60, { seed: 20 + i });

    // `canceled`: its subscription is canceled in Stripe, and it uses lines its subscription lacks (a price line
    // added since), so sync must add items to a canceled subscription: Stripe refuses
    await api.subscriptions.cancel(enabled.get(canceled.id)!.subscriptionId);
    await stack.prisma.billingSubscriptionItem.deleteMany({ where: { orgId: canceled.id } });
    // `vanished`: Stripe has no such subscription any more (and it needs items too)
    stack.fake.state.subscriptions.delete(enabled.get(vanished.id)!.subscriptionId);
    await stack.prisma.billingSubscriptionItem.deleteMany({ where: { orgId: vanished.id } });
    // `deleted`: its customer is deleted in Stripe (which cancels the subscription); the webhook mirrored it
    await api.customers.del(enabled.get(deleted.id)!.customerId);
    await new OrgBillingRepository(stack.prisma).setStatus(deleted.id, 'canceled');

    let clock = Date.now();
    const now = () => new Date(clock);
    await stack.rollup.runPass();
    const first = await stack.sync.runPass(now);
    expect([...first.failedOrgs].sort()).toEqual(broken.map((o) => o.slug).sort());
    expect(first.held).toBeGreaterThan(0);
    // the healthy orgs are billed, all of their usage
    for (const org of [healthy1, healthy2]) {
      expect(billedTokens(stack.fake, enabled.get(org.id)!.customerId)).toBe(await usageTokens(stack.prisma, org.id));
    }
    for (const org of broken) expect(billedTokens(stack.fake, enabled.get(org.id)!.customerId)).toBe(0);
    // flagged, persisted, with a retry time and plain words for the console
    expect(await row(canceled)).toMatchObject({
      billingSyncErrorCode: 'subscription_canceled',
      billingSyncFailures: 1,
      billingSyncFailedAt: now(),
      billingSyncRetryAt: new Date(clock + MINUTE),
      billingSyncError: expect.stringMatching(/subscription of this org was canceled/),
    });
    expect(await row(vanished)).toMatchObject({ billingSyncErrorCode: 'resource_missing', billingSyncFailures: 1, billingSyncError: expect.stringMatching(/Stripe no longer has this org's subscription or customer \(Stripe said: No such subscription/) });
    expect(await row(deleted)).toMatchObject({ billingSyncErrorCode: 'customer_deleted', billingSyncFailures: 1, billingSyncError: expect.stringMatching(/customer of this org was deleted/) });
    expect(await row(healthy1)).toMatchObject({ billingSyncFailures: 0, billingSyncError: null, billingSyncRetryAt: null });
    // the unsent usage is kept
    // (held: those claimed before their org was flagged; the rest of its events were not even claimed)
    expect(await stack.prisma.meterEventOutbox.count({ where: { orgId: { in: broken.map((o) => o.id) }, status: { not: 'pending' } } })).toBe(0);
    expect(await stack.prisma.meterEventOutbox.count({ where: { orgId: { in: broken.map((o) => o.id) } } })).toBeGreaterThanOrEqual(first.held);
    // a log line naming each org and Stripe's reason, never the key; a metric
    const flagged = logs.lines.filter((l) => l.startsWith('billing sync failing for org'));
    expect(flagged).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`org ${canceled.slug} (${canceled.id}): Stripe subscription_canceled: A canceled subscription can only update`),
        expect.stringContaining(`org ${deleted.slug} (${deleted.id}): Stripe customer_deleted`),
      ]),
    );
    expect(logs.lines.join('\n')).not.toContain(stack.fake.apiKey);
    expect(await metric('billing_sync_failing_orgs ')).toEqual(['billing_sync_failing_orgs 3']);
    expect((await metric('billing_sync_org_failures_total{')).sort()).toEqual([
      'billing_sync_org_failures_total{code="customer_deleted"} 1',
      'billing_sync_org_failures_total{code="resource_missing"} 1',
      'billing_sync_org_failures_total{code="subscription_canceled"} 1',
    ]);
    expect(first.failing.map((f) => [f.slug, f.code, f.failures]).sort()).toEqual(
      [[canceled.slug, 'subscription_canceled', 1], [vanished.slug, 'resource_missing', 1], [deleted.slug, 'customer_deleted', 1]].sort(),
    );

    // before the retry time, their events are left alone: no Stripe call about them
    const asked = () => stack.fake.requests.filter((r) => r.path.includes(enabled.get(canceled.id)!.subscriptionId) || r.body.subscription === enabled.get(canceled.id)!.subscriptionId).length;
    const askedBefore = asked();
    await insertUsage(stack.prisma, healthy1.id, 10, { seed: 99 });
    await stack.rollup.runPass();
    clock += 30_000;
    const early = await stack.sync.runPass(now);
    expect(early.failedOrgs).toEqual([]);
    expect(asked()).toBe(askedBefore);
    expect(billedTokens(stack.fake, enabled.get(healthy1.id)!.customerId)).toBe(await usageTokens(stack.prisma, healthy1.id));

    // after it: tried again (Stripe is asked about the subscription), still broken, the wait doubles
    clock += 31_000;
    const retried = await stack.sync.runPass(now);
    expect([...retried.failedOrgs].sort()).toEqual(broken.map((o) => o.slug).sort());
    expect(asked()).toBeGreaterThan(askedBefore);
    expect(await row(canceled)).toMatchObject({ billingSyncFailures: 2, billingSyncRetryAt: new Date(clock + 2 * MINUTE), billingSyncFailedAt: new Date(clock - 61_000) });

    // fixed: billing enabled again (a new subscription; for the deleted customer a new customer too)
    const again = await stack.setup.enableOrg(canceled.id);
    expect(again).toMatchObject({ created: true, customerId: enabled.get(canceled.id)!.customerId });
    expect(again.subscriptionId).not.toBe(enabled.get(canceled.id)!.subscriptionId);
    const revived = await stack.setup.enableOrg(vanished.id);
    expect(revived).toMatchObject({ created: true, customerId: enabled.get(vanished.id)!.customerId });
    const renewed = await stack.setup.enableOrg(deleted.id);
    expect(renewed.customerId).not.toBe(enabled.get(deleted.id)!.customerId);
    expect(await row(deleted)).toMatchObject({ billingStatus: 'active', billingSyncFailures: 2, billingSyncRetryAt: null });

    // the next pass sends their held usage, once, and clears the flags
    const fixed = await stack.sync.runPass(now);
    expect(fixed.failedOrgs).toEqual([]);
    expect([...fixed.recoveredOrgs].sort()).toEqual(broken.map((o) => o.slug).sort());
    expect(fixed.failing).toEqual([]);
    expect(fixed.pending).toBe(0);
    expect(billedTokens(stack.fake, again.customerId)).toBe(await usageTokens(stack.prisma, canceled.id));
    expect(billedTokens(stack.fake, revived.customerId)).toBe(await usageTokens(stack.prisma, vanished.id));
    expect(billedTokens(stack.fake, renewed.customerId)).toBe(await usageTokens(stack.prisma, deleted.id));
    for (const org of broken) {
      expect(await row(org)).toMatchObject({ billingSyncFailures: 0, billingSyncError: null, billingSyncErrorCode: null, billingSyncFailedAt: null, billingSyncRetryAt: null });
    }
    expect(logs.lines).toEqual(expect.arrayContaining([expect.stringContaining(`billing sync works again for org ${canceled.slug}`)]));
    expect(await metric('billing_sync_failing_orgs ')).toEqual(['billing_sync_failing_orgs 0']);
    const identifiers = stack.fake.state.meterEvents.map((e) => e.identifier);
    expect(new Set(identifiers).size).toBe(identifiers.length);
  });
});
