import { StripeClient } from '@spot/billing';
import { PrismaService } from '@spot/db';
import { loadConfig } from '@spot/config';
import { runCli } from '../../apps/cli/src/cli';
import { billedTokens, type BillingTestStack, createOrg, insertUsage, startBillingStack, usageTokens } from '../fakes/stripe/billing-test-stack';

interface CliResult {
  code: number;
  lines: string[];
  stderr: string;
}

/** Runs the CLI in-process with the stack's environment (the CLI reads its config from the environment). */
async function cli(env: Record<string, string>, ...argv: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    const code = await runCli(argv, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
    return { code, lines: stdout.split('\n').filter((l) => l !== ''), stderr };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('cli: billing enable, usage rollup, billing sync', () => {
  let stack: BillingTestStack;
  let prisma: PrismaService;

  beforeAll(async () => {
    stack = await startBillingStack();
    prisma = new PrismaService(loadConfig(process.env));
  });
  afterAll(async () => {
    await prisma.$disconnect();
    await stack.close();
  });

  it('enables billing for an org, then rolls up and syncs with one-line summaries; every token billed once', async () => {
    const org = await createOrg(prisma, 'cli-bill');
    const enable = await cli(stack.env, 'billing', 'enable', '--org', org.slug);
    expect(enable.code).toBe(0);
    expect(enable.lines).toHaveLength(1);
    expect(enable.lines[0]).toMatch(new RegExp(`^billing enabled for ${org.slug}: customer cus_\\w+, subscription sub_\\w+ \\(active\\)$`));
    const again = await cli(stack.env, 'billing', 'enable', '--org', org.slug);
    expect(again.lines[0]).toMatch(/^billing already enabled for /);
    expect(stack.fake.state.customers.size).toBe(1);

    await insertUsage(prisma, org.id, 50, { seed: 50 });
    const rollup = await cli(stack.env, 'usage', 'rollup');
    expect(rollup.code).toBe(0);
    expect(rollup.lines).toEqual([expect.stringMatching(/^rolled up \d+ events into \d+ rollup rows in \d+\.\d\ds$/)]);
    const sync = await cli(stack.env, 'billing', 'sync');
    expect(sync.code).toBe(0);
    expect(sync.lines).toEqual([
      expect.stringMatching(/^synced \d+ rollups: \d+ meter events queued, \d+ accepted, 0 already billed, 0 refused, 0 pending in \d+\.\d\ds$/),
    ]);
    const customer = (await prisma.org.findUniqueOrThrow({ where: { id: org.id } })).stripeCustomerId as string;
    expect(billedTokens(stack.fake, customer)).toBe(await usageTokens(prisma, org.id));
    const idle = await cli(stack.env, 'billing', 'sync');
    expect(idle.lines[0]).toMatch(/^synced 0 rollups: 0 meter events queued, 0 accepted/);
  });

  it('billing sync with one org whose subscription is canceled: the others are billed, the failing one is named, exit 0; billing enable fixes it', async () => {
    const healthy = await createOrg(prisma, 'cli-ok');
    const broken = await createOrg(prisma, 'cli-cncl');
    for (const org of [healthy, broken]) expect((await cli(stack.env, 'billing', 'enable', '--org', org.slug)).code).toBe(0);
    await insertUsage(prisma, healthy.id, 40, { seed: 8 });
    await insertUsage(prisma, broken.id, 40, { seed: 9 });
    const brokenRow = await prisma.org.findUniqueOrThrow({ where: { id: broken.id } });
    await stack.app.get(StripeClient).require().api.subscriptions.cancel(brokenRow.stripeSubscriptionId!);
    await prisma.billingSubscriptionItem.deleteMany({ where: { orgId: broken.id } });

    expect((await cli(stack.env, 'usage', 'rollup')).code).toBe(0);
    const sync = await cli(stack.env, 'billing', 'sync');
    expect({ code: sync.code, stderr: sync.stderr }).toEqual({ code: 0, stderr: expect.not.stringContaining('Error') });
    expect(sync.lines).toEqual(
      expect.arrayContaining([expect.stringMatching(new RegExp(`^failing org ${broken.slug}: Stripe subscription_canceled, 1 failure\\(s\\) in a row, usage held, next try after \\d{4}-`))]),
    );
    expect(billedTokens(stack.fake, (await prisma.org.findUniqueOrThrow({ where: { id: healthy.id } })).stripeCustomerId!)).toBe(await usageTokens(prisma, healthy.id));
    expect(billedTokens(stack.fake, brokenRow.stripeCustomerId!)).toBe(0);

    const fixed = await cli(stack.env, 'billing', 'enable', '--org', broken.slug);
    expect(fixed.lines[0]).toMatch(new RegExp(`^billing enabled for ${broken.slug}: customer ${brokenRow.stripeCustomerId}, subscription sub_\\w+ \\(active\\)$`));
    const after = await cli(stack.env, 'billing', 'sync');
    expect(after.lines.filter((l) => l.startsWith('failing org'))).toEqual([]);
    expect(billedTokens(stack.fake, brokenRow.stripeCustomerId!)).toBe(await usageTokens(prisma, broken.id));
  });

  it('fails cleanly: unknown org (1), missing --org (2), Stripe off (enable 1, sync says it is off)', async () => {
    const unknown = await cli(stack.env, 'billing', 'enable', '--org', 'no-such-org-here');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no org with slug no-such-org-here');
    const missing = await cli(stack.env, 'billing', 'enable');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing --org');

    const off = { ...stack.env, STRIPE_SECRET_KEY: '' };
    const org = await createOrg(prisma, 'cli-off');
    const enable = await cli(off, 'billing', 'enable', '--org', org.slug);
    expect(enable.code).toBe(1);
    expect(enable.stderr).toContain('Stripe billing is off');
    const sync = await cli(off, 'billing', 'sync');
    expect(sync.code).toBe(0);
    expect(sync.lines).toEqual(['billing sync is off: STRIPE_SECRET_KEY is not set (usage and bills still work)']);
  });
});
