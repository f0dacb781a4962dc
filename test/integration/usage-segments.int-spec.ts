import { randomBytes, randomUUID } from 'node:crypto';
import { UsageRollupService } from '@spot/billing';
import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService, UsageEventsRepository, UsageRollupsRepository } from '@spot/db';
import type { UsageEvent } from '@spot/usage';

/**
 * A stream continued on another tier is one request with one usage row per segment: the prompt on segment 0 at the
 * first tier's price, each segment's completion tokens at its own tier's. Replays never count a segment twice, and
 * rollups, the usage report and the bill count the request once while summing its tokens per tier.
 */
describe('usage_events segments: rows per (request, segment), counted once everywhere', () => {
  const config = loadConfig(process.env);
  const prisma = new PrismaService(config);
  const events = new UsageEventsRepository(prisma);
  const rollups = new UsageRollupsRepository(prisma);
  let orgId: string;
  let keyId: string;

  beforeAll(async () => {
    orgId = (await new OrgsRepository(prisma).create(`seg-${randomUUID().slice(0, 12)}`, 'segments'))!.id;
    keyId = (
      await new ApiKeysRepository(prisma).create({
        orgId,
        name: 'seg',
        prefix: `sk-spot-${randomBytes(4).toString('hex')}`,
        secretHash: randomBytes(32).toString('hex'),
        allowedModels: [],
        expiresAt: null,
        createdById: null,
      })
    ).id;
  });
  afterAll(async () => {
    await prisma.$executeRaw`DELETE FROM usage_events WHERE org_id = ${orgId}::uuid`;
    await prisma.$executeRaw`DELETE FROM usage_rollups WHERE org_id = ${orgId}::uuid`;
    await prisma.$disconnect();
  });

  it('stores each segment once across replays; rollups, usage and bill lines count one request, tokens per tier', async () => {
    const createdAt = new Date(Date.UTC(2031, 0, 2, 3, 15));
    const base = { createdAt, orgId, keyId, model: 'm', cachedTokens: 0, ttftMs: 5, durationMs: 90, status: 200 };
    const continued = `seg-${randomUUID()}`;
    const plain = `seg-${randomUUID()}`;
    const rows: UsageEvent[] = [
      { ...base, requestId: continued, segment: 0, tier: 'spot', promptTokens: 11, completionTokens: 7, estimated: true, costNanos: 11 * 50 + 7 * 100 },
      { ...base, requestId: continued, segment: 1, tier: 'od', promptTokens: 0, completionTokens: 33, estimated: false, costNanos: 33 * 400 },
      { ...base, requestId: plain, tier: 'spot', promptTokens: 5, completionTokens: 2, estimated: false, costNanos: 5 * 50 + 2 * 100 },
    ];
    expect(await events.insertMany(rows)).toBe(3);
    // a replay (spool, journal) of the same segments: nothing new
    expect(await events.insertMany([rows[1], rows[0], { ...rows[0], completionTokens: 6 }])).toBe(0);
    expect((await events.findSegments(continued)).map((r) => [r.segment, r.tier, r.promptTokens, r.completionTokens])).toEqual([
      [0, 'spot', 11, 7],
      [1, 'od', 0, 33],
    ]);
    expect((await events.findByRequestId(plain))!.segment).toBe(0);

    const from = new Date(Date.UTC(2031, 0, 2));
    const to = new Date(Date.UTC(2031, 0, 3));
    // before the rollup (events read raw) and after it: the same answer
    const before = await rollups.usage(orgId, from, to, 'tier');
    const billBefore = await rollups.billLines(orgId, from, to);
    const roll = new UsageRollupService(rollups);
    for (let i = 0; i < 20; i++) {
      await roll.runPass();
      const left = await prisma.$queryRaw<Array<{ n: bigint }>>`SELECT count(*) AS n FROM usage_events WHERE org_id = ${orgId}::uuid AND rolled_up_at IS NULL`;
      if (Number(left[0].n) === 0) break;
    }
    const after = await rollups.usage(orgId, from, to, 'tier');
    for (const u of [before, after]) {
      expect(u.map((r) => [r.group, r.requests, r.promptTokens, r.completionTokens, r.costNanos])).toEqual([
        ['od', 0, 0, 33, 33 * 400],
        ['spot', 2, 16, 9, 16 * 50 + 9 * 100],
      ]);
    }
    expect(await rollups.billLines(orgId, from, to)).toEqual(billBefore);
    // by model, the rows come per tier (the console prices caching savings per tier) and sum to one request
    const byModel = await rollups.usage(orgId, from, to, 'model');
    expect(new Set(byModel.map((r) => r.group)).size).toBe(1);
    expect([byModel.reduce((n, r) => n + r.requests, 0), byModel.reduce((n, r) => n + r.completionTokens, 0)]).toEqual([2, 42]);
  });
});
