import { BillingSyncService, StripeClient, UsageRollupService } from '@spot/billing';
import { PrismaService } from '@spot/db';
import { ORG_CHANGED_CHANNEL } from '@spot/keys';
import { Redis } from 'ioredis';
import { billedTokens, insertUsage, usageTokens, waitUntil, writeTestTiers } from '../fakes/stripe/billing-test-stack';
import { type FakeStripe, startFakeStripe } from '../fakes/stripe/fake-stripe';
import { type Browser, type ConsoleStack, newGitHubUser, startConsoleStack } from '../support/console-stack';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

describe('console: Stripe billing (enable, bill beside Stripe preview, webhooks)', () => {
  let fake: FakeStripe;
  let s: ConsoleStack;
  let owner: Browser;
  let stranger: Browser;
  let slug: string;
  let orgId: string;
  let sub: Redis;
  const published: string[] = [];

  beforeAll(async () => {
    fake = await startFakeStripe({ apiKey: `sk_test_console_${Date.now()}`, webhookSecret: 'whsec_console_test' });
    s = await startConsoleStack({
      STRIPE_SECRET_KEY: fake.apiKey,
      STRIPE_API_BASE: fake.url,
      STRIPE_WEBHOOK_SECRET: fake.webhookSecret,
      STRIPE_TIMEOUT_MS: '3000',
      TIERS_FILE: writeTestTiers(),
    });
    owner = await s.signIn(newGitHubUser('payer'));
    stranger = await s.signIn(newGitHubUser('other'));
    slug = `pay-${Math.random().toString(36).slice(2, 10)}`;
    await owner.api('POST', '/api/orgs', { slug, name: 'Payer' });
    orgId = (await s.app.get(PrismaService).org.findUniqueOrThrow({ where: { slug } })).id;
    sub = new Redis(s.config.REDIS_URL);
    sub.on('message', (_c: string, m: string) => published.push(m));
    await sub.subscribe(`${s.config.REDIS_PREFIX}${ORG_CHANGED_CHANNEL}`);
  });
  afterAll(async () => {
    await sub?.quit();
    await s?.close();
    await fake?.close();
  });

  it('turns billing on from the console (admins only, idempotent), and shows our bill beside Stripe\'s preview, equal to the cent', async () => {
    const off = await j(owner.fetch(`/api/orgs/${slug}/billing`));
    expect(off).toMatchObject({ stripe: 'on', enabled: false, status: 'none' });
    expect((await stranger.api('POST', `/api/orgs/${slug}/billing/enable`)).status).toBe(404);
    expect((await owner.fetch(`/api/orgs/${slug}/billing/enable`, { method: 'POST', json: {} })).status).toBe(403); // no CSRF token

    const enabled = await j(owner.api('POST', `/api/orgs/${slug}/billing/enable`));
    expect(enabled).toMatchObject({ enabled: true, created: true, status: 'active' });
    expect(enabled.customerId).toMatch(/^cus_/);
    expect(await j(owner.api('POST', `/api/orgs/${slug}/billing/enable`))).toMatchObject({ created: false, customerId: enabled.customerId });
    await waitUntil(() => published.some((m) => m.includes(orgId)), 5_000, 'the org change to be published');

    const prisma = s.app.get(PrismaService);
    await insertUsage(prisma, orgId, 77, { seed: 77 });
    await s.app.get(UsageRollupService).runPass();
    const pass = await s.app.get(BillingSyncService).runPass();
    expect(pass).toMatchObject({ rejected: 0, pending: 0 });
    expect(billedTokens(fake, enabled.customerId)).toBe(await usageTokens(prisma, orgId));

    const view = await j(owner.fetch(`/api/orgs/${slug}/billing`));
    expect(view).toMatchObject({ stripe: 'on', enabled: true, status: 'active', customerId: enabled.customerId });
    expect(view.bill.source).toBe('stripe');
    expect(view.bill.totalCents).toBeGreaterThan(0);
    expect(view.bill.stripe.totalCents).toBe(view.bill.totalCents);
    expect(view.bill.lines.every((l: { unitAmountDecimal: string }) => /^\d+(\.\d+)?$/.test(l.unitAmountDecimal))).toBe(true);

    // the page: our figure and Stripe's, side by side
    const page = await owner.fetch(`/orgs/${slug}/billing`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    const dollars = `$${(view.bill.totalCents / 100).toFixed(2)}`;
    expect(html).toContain(`<strong data-testid="our-total">${dollars}</strong>`);
    expect(html).toContain(`<strong data-testid="stripe-preview">${dollars}</strong> (agrees with ours)`);

    expect((await stranger.fetch(`/api/orgs/${slug}/billing`)).status).toBe(404);
    expect((await stranger.fetch(`/orgs/${slug}/billing`, { headers: { accept: 'text/html' } })).status).toBe(404);
    expect((await owner.fetch(`/api/orgs/${slug}/billing?period=2026-13`)).status).toBe(400);
  });

  it('the billing page enables billing with its form (CSRF checked), and says so when Stripe is off', async () => {
    const other = `pay-${Math.random().toString(36).slice(2, 10)}`;
    await owner.api('POST', '/api/orgs', { slug: other, name: 'Other' });
    const before = await (await owner.fetch(`/orgs/${other}/billing`, { headers: { accept: 'text/html' } })).text();
    expect(before).toContain('Enable billing');
    const forged = await owner.fetch(`/orgs/${other}/billing/enable`, { method: 'POST', form: { _csrf: 'wrong' }, headers: { accept: 'text/html' } });
    expect(forged.status).toBe(403);
    const posted = await owner.fetch(`/orgs/${other}/billing/enable`, { method: 'POST', form: { _csrf: owner.csrfToken }, headers: { accept: 'text/html' } });
    expect(posted.status).toBe(303);
    expect(posted.headers.get('location')).toBe(`/orgs/${other}/billing`);
    const after = await (await owner.fetch(`/orgs/${other}/billing`, { headers: { accept: 'text/html' } })).text();
    expect(after).toMatch(/Billed through Stripe: customer <code>cus_/);

    const off = await startConsoleStack({ TIERS_FILE: writeTestTiers() });
    try {
      const someone = await off.signIn(newGitHubUser('free'));
      const free = `free-${Math.random().toString(36).slice(2, 10)}`;
      await someone.api('POST', '/api/orgs', { slug: free, name: 'Free' });
      expect(await j(someone.fetch(`/api/orgs/${free}/billing`))).toMatchObject({ stripe: 'off', enabled: false, bill: { source: 'price_book', stripe: null } });
      expect(await (await someone.fetch(`/orgs/${free}/billing`, { headers: { accept: 'text/html' } })).text()).toContain('Stripe billing is off');
      const refused = await someone.api('POST', `/api/orgs/${free}/billing/enable`);
      expect(refused.status).toBe(409);
      expect((await j(refused)).error.code).toBe('billing_disabled');
    } finally {
      await off.close();
    }
  });

  async function deliver(payload: object, opts: { secret?: string; timestamp?: number } = {}): Promise<Response> {
    const signed = fake.signWebhook(payload, opts);
    return fetch(`${s.base}/stripe/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signed.header },
      body: signed.body,
    });
  }

  async function status(): Promise<{ billingStatus: string; billingStatusAt: Date | null }> {
    return s.app.get(PrismaService).org.findUniqueOrThrow({ where: { id: orgId }, select: { billingStatus: true, billingStatusAt: true } });
  }

  it('webhooks: signed events drive the billing status and tell the gateways; bad signatures 400; replays and stale events change nothing', async () => {
    const org = await s.app.get(PrismaService).org.findUniqueOrThrow({ where: { id: orgId } });
    const customer = org.stripeCustomerId as string;
    const subscription = org.stripeSubscriptionId as string;

    const bad = await deliver(fake.event('invoice.payment_failed', { object: 'invoice', customer }), { secret: 'whsec_wrong' });
    expect(bad.status).toBe(400);
    expect((await j(bad)).error.code).toBe('invalid_signature');
    const unsigned = await fetch(`${s.base}/stripe/webhook`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(unsigned.status).toBe(400);
    expect((await status()).billingStatus).toBe('active');

    published.length = 0;
    const failed = fake.event('invoice.payment_failed', { id: 'in_1', object: 'invoice', customer });
    const res = await deliver(failed);
    expect(res.status).toBe(200);
    expect(await j(res)).toEqual({ received: true, applied: true });
    const pastDue = await status();
    expect(pastDue.billingStatus).toBe('past_due');
    await waitUntil(() => published.some((m) => m.includes(orgId)), 5_000, 'the org change to be published');

    // the same event again (Stripe redelivers): a no-op
    expect(await j(deliver(failed))).toMatchObject({ applied: false, note: 'duplicate' });
    // a second failure (Stripe's retry of the charge) keeps the grace period's start
    const again = fake.event('invoice.payment_failed', { id: 'in_1', object: 'invoice', customer });
    expect(await j(deliver(again))).toMatchObject({ applied: false });
    expect((await status()).billingStatusAt).toEqual(pastDue.billingStatusAt);

    // an event created before the last applied one does not overwrite it
    const stale = { ...fake.event('customer.subscription.updated', { id: subscription, object: 'subscription', customer, status: 'active' }) };
    stale.created = (failed.created as number) - 60;
    expect(await j(deliver(stale))).toMatchObject({ applied: false, note: 'stale' });
    expect((await status()).billingStatus).toBe('past_due');

    const paid = fake.event('invoice.paid', { id: 'in_1', object: 'invoice', customer });
    paid.created = (failed.created as number) + 1;
    expect(await j(deliver(paid))).toMatchObject({ applied: true });
    expect((await status()).billingStatus).toBe('active');

    const deleted = fake.event('customer.subscription.deleted', { id: subscription, object: 'subscription', customer, status: 'canceled' });
    deleted.created = (failed.created as number) + 2;
    expect(await j(deliver(deleted))).toMatchObject({ applied: true });
    expect((await status()).billingStatus).toBe('canceled');
    // a late invoice.paid does not revive a canceled subscription
    const late = fake.event('invoice.paid', { id: 'in_2', object: 'invoice', customer });
    late.created = (failed.created as number) + 3;
    expect(await j(deliver(late))).toMatchObject({ applied: false });
    expect((await status()).billingStatus).toBe('canceled');
  });
});

describe('console: an org whose billing sync fails', () => {
  let fake: FakeStripe;
  let s: ConsoleStack;

  beforeAll(async () => {
    fake = await startFakeStripe({ apiKey: `sk_test_banner_${Date.now()}` });
    s = await startConsoleStack({ STRIPE_SECRET_KEY: fake.apiKey, STRIPE_API_BASE: fake.url, STRIPE_TIMEOUT_MS: '3000', TIERS_FILE: writeTestTiers() });
  });
  afterAll(async () => {
    await s?.close();
    await fake?.close();
  });

  it('shows owners a banner on every org page saying why, in plain words, until billing enabled again lets the usage through', async () => {
    const owner = await s.signIn(newGitHubUser('bannerowner'));
    const memberUser = newGitHubUser('bannermember');
    const slug = `sync-${Math.random().toString(36).slice(2, 10)}`;
    await owner.api('POST', '/api/orgs', { slug, name: 'Failing sync' });
    await owner.api('POST', `/api/orgs/${slug}/members`, { login: memberUser.login, role: 'member' });
    const member = await s.signIn(memberUser);
    const enabled = await j(owner.api('POST', `/api/orgs/${slug}/billing/enable`));
    const prisma = s.app.get(PrismaService);
    const orgId = (await prisma.org.findUniqueOrThrow({ where: { slug } })).id;
    await insertUsage(prisma, orgId, 30, { seed: 3 });
    // Stripe's side: the subscription is canceled, and the org needs items added to it
    const sync = s.app.get(BillingSyncService);
    await s.app.get(StripeClient).require().api.subscriptions.cancel(enabled.subscriptionId);
    await prisma.billingSubscriptionItem.deleteMany({ where: { orgId } });
    await s.app.get(UsageRollupService).runPass();
    expect((await sync.runPass()).failedOrgs).toEqual([slug]);

    const pages = [`/orgs/${slug}/keys`, `/orgs/${slug}/members`, `/orgs/${slug}/limits`, `/orgs/${slug}/usage`, `/orgs/${slug}/billing`];
    for (const page of pages) {
      const html = await (await owner.fetch(page, { headers: { accept: 'text/html' } })).text();
      const banner = /<div class="error" role="alert" data-testid="billing-sync-failing">([\s\S]*?)<\/div>/.exec(html);
      expect({ page, banner: banner?.[1] ?? null }).toEqual({ page, banner: expect.stringContaining('Billing sync to Stripe is failing for this org') });
      expect(banner![1]).toContain('The Stripe subscription of this org was canceled, so its usage cannot be invoiced.');
      expect(banner![1]).toMatch(/Next try: \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
      // members are not the ones who can fix it
      expect(await (await member.fetch(page, { headers: { accept: 'text/html' } })).text()).not.toContain('billing-sync-failing');
    }
    expect((await j(owner.fetch(`/api/orgs/${slug}`))).billingSync).toMatchObject({ code: 'subscription_canceled', failures: 1 });

    // the fix: billing enabled again from the Bill page; the next pass sends the held usage and the banner goes
    const again = await owner.fetch(`/orgs/${slug}/billing/enable`, { method: 'POST', form: { _csrf: owner.csrfToken } });
    expect(again.status).toBe(303);
    const pass = await sync.runPass();
    expect(pass.recoveredOrgs).toEqual([slug]);
    const org = await prisma.org.findUniqueOrThrow({ where: { slug } });
    expect(billedTokens(fake, org.stripeCustomerId!)).toBe(await usageTokens(prisma, orgId));
    for (const page of pages) {
      expect(await (await owner.fetch(page, { headers: { accept: 'text/html' } })).text()).not.toContain('billing-sync-failing');
    }
  });
});
