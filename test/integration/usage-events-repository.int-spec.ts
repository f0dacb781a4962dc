import { loadConfig } from '@spot/config';
import { ApiKeysRepository, OrgsRepository, PrismaService, UsageEventsRepository } from '@spot/db';
import { randomBytes, randomUUID } from 'node:crypto';

// The batch insert sends the whole batch as one JSON document: every column must arrive as it was sent.
describe('UsageEventsRepository.insertMany on Postgres', () => {
  const prisma = new PrismaService(loadConfig(process.env));
  const repo = new UsageEventsRepository(prisma);
  let orgId: string;
  let keyId: string;

  beforeAll(async () => {
    const org = await new OrgsRepository(prisma).create(`uer-${randomUUID().slice(0, 12)}`, 'usage events repository');
    orgId = org!.id;
    const key = await new ApiKeysRepository(prisma).create({
      orgId,
      name: 'uer',
      prefix: `sk-spot-${randomBytes(4).toString('hex')}`,
      secretHash: randomBytes(32).toString('hex'),
      allowedModels: [],
      expiresAt: null,
      createdById: null,
    });
    keyId = key.id;
  });
  afterAll(async () => {
    await prisma.$executeRaw`DELETE FROM usage_events WHERE org_id = ${orgId}::uuid`;
    await prisma.$disconnect();
  });

  it('stores every field (nulls, defaults, quotes, a bigint cost), skips request ids already stored and counts only new rows', async () => {
    const run = randomBytes(4).toString('hex');
    const createdAt = new Date(Date.UTC(2031, 4, 6, 7, 8, 9, 123));
    const rows = [
      {
        requestId: `uer-${run}-b "quoted" \\ 'single' é`,
        createdAt,
        orgId,
        keyId,
        model: 'model "with" quotes',
        tier: "spot's",
        promptTokens: 11,
        completionTokens: 22,
        cachedTokens: 3,
        ttftMs: null,
        durationMs: 44,
        status: 499,
        estimated: true,
        costNanos: BigInt('9007199254740993'),
      },
      // optional columns left out: their defaults
      { requestId: `uer-${run}-a`, createdAt: createdAt.toISOString(), orgId, keyId, model: 'm', tier: 't', promptTokens: 0, completionTokens: 0, durationMs: 0, status: 200 },
    ];
    expect(await repo.insertMany(rows)).toBe(2);
    expect(await repo.insertMany([...rows, { ...rows[1], requestId: `uer-${run}-c` }])).toBe(1);

    const stored = await repo.findByRequestIds([rows[0].requestId, rows[1].requestId, `uer-${run}-c`]);
    expect(stored).toHaveLength(3);
    const byId = new Map(stored.map((r) => [r.requestId, r]));
    expect(byId.get(rows[0].requestId)).toMatchObject({
      createdAt,
      orgId,
      keyId,
      model: 'model "with" quotes',
      tier: "spot's",
      promptTokens: 11,
      completionTokens: 22,
      cachedTokens: 3,
      ttftMs: null,
      durationMs: 44,
      status: 499,
      estimated: true,
      costNanos: BigInt('9007199254740993'),
    });
    expect(byId.get(rows[1].requestId)).toMatchObject({ createdAt, cachedTokens: 0, ttftMs: null, estimated: false, costNanos: BigInt(0), status: 200 });
  });
});
