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
