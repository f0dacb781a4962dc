import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  billedTokens,
  type BillingTestStack,
  createOrg,
  insertUsage,
  startBillingStack,
  usageTokens,
  waitUntil,
} from '../fakes/stripe/billing-test-stack';
import { freePort } from '../support/free-port';

const MAIN = resolve(__dirname, '../../dist/apps/worker/src/main.js');
const METER_EVENTS = '/v1/billing/meter_events';

/** The built worker process against the fake Stripe: killed mid-sync, restarted, every token billed once. */
describe('worker process: Stripe sync survives SIGKILL', () => {
  let stack: BillingTestStack;
  const children: ChildProcess[] = [];

  function startWorker(): ChildProcess {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, ...stack.env, USAGE_ROLLUP_EVERY_MS: '200', BILLING_SYNC_EVERY_MS: '200', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
    return child;
  }

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    stack = await startBillingStack();
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await stack.close();
  });

  it('a worker killed with SIGKILL while sending meter events, then restarted: Stripe bills exactly the usage', async () => {
    const orgs = [await createOrg(stack.prisma), await createOrg(stack.prisma)];
    const customers: string[] = [];
    for (const org of orgs) customers.push((await stack.setup.enableOrg(org.id)).customerId);
    // many rollups (several keys, hours), so that the sync is still sending when the kill comes
    const keys = Array.from({ length: 40 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    for (const org of orgs) await insertUsage(stack.prisma, org.id, 900, { keys, seed: 42 });
    // Stripe answers slowly at first: each of the first requests takes a timeout (it ran, we never heard)
    stack.fake.faults.push({ kind: 'timeout', when: 'after', path: METER_EVENTS, count: 6 });

    const first = startWorker();
    await waitUntil(() => stack.fake.requests.filter((r) => r.path === METER_EVENTS).length >= 40, 60_000, 'meter events to arrive');
    first.kill('SIGKILL');
    await new Promise<void>((r) => (first.exitCode !== null || first.signalCode !== null ? r() : first.once('exit', () => r())));
    const sentAtKill = stack.fake.state.meterEvents.length;
    const usage = await Promise.all(orgs.map((o) => usageTokens(stack.prisma, o.id)));
    const billedAtKill = customers.reduce((s, c) => s + billedTokens(stack.fake, c), 0);
    expect(billedAtKill).toBeLessThan(usage[0] + usage[1]);

    startWorker();
    await waitUntil(
      async () =>
        (await stack.prisma.meterEventOutbox.count({ where: { orgId: { in: orgs.map((o) => o.id) }, status: 'pending' } })) === 0 &&
        (await stack.prisma.usageEvent.count({ where: { orgId: { in: orgs.map((o) => o.id) }, rolledUpAt: null } })) === 0 &&
        customers.every((c, i) => billedTokens(stack.fake, c) >= usage[i]),
      90_000,
      'the restarted worker to finish the sync',
    );
    expect(stack.fake.state.meterEvents.length).toBeGreaterThan(sentAtKill);
    for (const [i, org] of orgs.entries()) {
      expect(billedTokens(stack.fake, customers[i])).toBe(await usageTokens(stack.prisma, org.id));
    }
    // the restarted worker resent what the killed one had in flight: Stripe answered from its idempotency store
    // or its identifier dedup, and nothing was billed twice
    const outbox = await stack.prisma.meterEventOutbox.findMany({ where: { orgId: { in: orgs.map((o) => o.id) } } });
    expect(outbox.every((e) => e.status === 'accepted')).toBe(true);
    const identifiers = stack.fake.state.meterEvents.map((e) => e.identifier);
    expect(new Set(identifiers).size).toBe(identifiers.length);
  }, 180_000);
});

/** The built worker process, one org's subscription canceled beside a healthy org: flagged, logged, scraped. */
describe('worker process: one failing org', () => {
  let stack: BillingTestStack;
  let child: ChildProcess | null = null;

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it)`);
    stack = await startBillingStack();
  });
  afterAll(async () => {
    if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await stack.close();
  });

  it('keeps billing the healthy org, logs the failing one by slug and Stripe code, and reports it on /metrics', async () => {
    const healthy = await createOrg(stack.prisma, 'wok');
    const broken = await createOrg(stack.prisma, 'wbad');
    const ok = await stack.setup.enableOrg(healthy.id);
    const bad = await stack.setup.enableOrg(broken.id);
    await insertUsage(stack.prisma, healthy.id, 50, { seed: 1 });
    await insertUsage(stack.prisma, broken.id, 50, { seed: 2 });
    // the broken org's subscription is canceled, and it needs items added to it
    const { default: Stripe } = await import('stripe');
    const url = new URL(stack.fake.url);
    await new Stripe(stack.fake.apiKey, { host: url.hostname, port: Number(url.port), protocol: 'http' }).subscriptions.cancel(bad.subscriptionId);
    await stack.prisma.billingSubscriptionItem.deleteMany({ where: { orgId: broken.id } });

    const port = await freePort();
    let stderr = '';
    child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, ...stack.env, USAGE_ROLLUP_EVERY_MS: '200', BILLING_SYNC_EVERY_MS: '200', LOG_LEVEL: 'warn', WORKER_METRICS_PORT: String(port), WORKER_METRICS_HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const usage = await usageTokens(stack.prisma, healthy.id);
    await waitUntil(
      async () =>
        billedTokens(stack.fake, ok.customerId) === usage &&
        (await stack.prisma.org.findUniqueOrThrow({ where: { id: broken.id } })).billingSyncFailures > 0,
      60_000,
      'the healthy org billed and the broken one flagged',
    );
    expect(billedTokens(stack.fake, bad.customerId)).toBe(0);
    expect(await stack.prisma.org.findUniqueOrThrow({ where: { id: broken.id } })).toMatchObject({ billingSyncErrorCode: 'subscription_canceled' });
    await waitUntil(() => stderr.includes(`billing sync failing for org ${broken.slug}`), 10_000, 'the log line');
    expect(stderr).toMatch(new RegExp(`billing sync failing for org ${broken.slug} \\(${broken.id}\\): Stripe subscription_canceled`));
    expect(stderr).not.toContain(stack.fake.apiKey);
    // the gauge is read from Postgres at the end of a pass: the pass that flagged the org may still be running
    let metrics = '';
    await waitUntil(
      async () => /^billing_sync_failing_orgs 1$/m.test((metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())),
      10_000,
      'the failing org on /metrics',
    );
    expect(metrics).toMatch(/^billing_sync_failing_orgs 1$/m);
    expect(metrics).toMatch(/^billing_sync_org_failures_total\{code="subscription_canceled"\} 1$/m);
  }, 90_000);
});
