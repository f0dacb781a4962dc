import { PgProxy } from '../support/pg-proxy';
import {
  billedTokens,
  type BillingTestStack,
  createOrg,
  insertUsage,
  startBillingStack,
  usageTokens,
  waitUntil,
} from '../fakes/stripe/billing-test-stack';

/** Postgres goes away while a rollup and a sync pass run (PgProxy cuts every connection), then comes back. */
describe('billing sync: Postgres cut mid-pass', () => {
  let proxy: PgProxy;
  let stack: BillingTestStack;

  beforeAll(async () => {
    proxy = await PgProxy.start();
    stack = await startBillingStack({ DATABASE_URL: proxy.url(process.env.DATABASE_URL as string) });
  });
  afterAll(async () => {
    await stack.close();
    await proxy.close();
  });

  it('loses nothing and bills nothing twice: Stripe holds exactly the usage once Postgres is back', async () => {
    const org = await createOrg(stack.prisma);
    const { customerId } = await stack.setup.enableOrg(org.id);
    const keys = Array.from({ length: 30 }, (_, i) => `00000000-0000-4000-8000-${String(i + 100).padStart(12, '0')}`);
    await insertUsage(stack.prisma, org.id, 600, { keys, seed: 600 });
    stack.sync.tune({ concurrency: 2 });

    // cut while the rollup runs
    const rollup = stack.rollup.runPass(50);
    setTimeout(() => proxy.cut(), 20);
    setTimeout(() => proxy.restore(), 600);
    await rollup.catch(() => undefined);

    // cut while meter events are being sent: some were accepted by Stripe but not recorded as such
    const sent = stack.fake.requests.length;
    const pass = stack.sync.runPass().catch((err: unknown) => err);
    await waitUntil(() => stack.fake.requests.filter((r) => r.path === '/v1/billing/meter_events').length > 0 || stack.fake.requests.length > sent + 50, 30_000, 'a meter event');
    proxy.cut();
    await pass;
    proxy.restore();

    await stack.rollup.runPass();
    await waitUntil(
      async () => {
        const p = await stack.sync.runPass();
        return p.pending === 0 && (await stack.prisma.usageRollup.count({ where: { orgId: org.id, syncedVersion: { lt: stack.prisma.usageRollup.fields.version } } })) === 0;
      },
      60_000,
      'the sync to converge',
    );
    expect(billedTokens(stack.fake, customerId)).toBe(await usageTokens(stack.prisma, org.id));
  }, 120_000);
});
