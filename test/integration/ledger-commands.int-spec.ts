import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { AdmitVerdict, LedgerCommands } from '../../apps/gateway/src/limits/ledger-commands';

// The budget ledger's Lua scripts (apps/gateway/src/limits/commands/*.lua) on the real Redis.

const TTL = 60_000;

describe('budget ledger scripts', () => {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const commands = new LedgerCommands(redis);
  const prefix = `test:${randomUUID()}:`;
  const registry = `${prefix}gateways`;
  let ledger: string;

  beforeEach(() => {
    ledger = `${prefix}budget:${randomUUID()}`;
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  /** admit.lua with a budget and no limits. */
  const admit = (gateway: string, budget: number, worst: number, now = Date.now()) =>
    commands.admit({
      rlKey: `${prefix}rl`,
      ledgerKey: ledger,
      registryKey: registry,
      lease: 0,
      requests: 0,
      tokens: 0,
      need: 0,
      rpm: 0,
      tpm: 0,
      budgetNanos: budget,
      worstNanos: worst,
      gateway,
      nowMs: now,
      ledgerTtlMs: TTL,
    });

  it('asks for a seed when the ledger is missing, then reserves and reports the total and the live gateways', async () => {
    expect((await admit('gw-a', 1_000, 100))[0]).toBe(AdmitVerdict.NoLedger);
    await commands.seed(ledger, 300, TTL);
    await commands.seed(ledger, 999, TTL); // first writer wins
    expect(await commands.register(registry, 'gw-a', Date.now())).toBe(1);
    expect(await commands.register(registry, 'gw-b', Date.now())).toBe(2);
    // an entry older than 30 s does not count as live
    await commands.register(registry, 'gw-old', Date.now() - 40_000);
    expect(await admit('gw-a', 1_000, 100)).toEqual([AdmitVerdict.Admitted, 0, 0, 400, 2]);
    expect(await admit('gw-b', 1_000, 200)).toEqual([AdmitVerdict.Admitted, 0, 0, 600, 2]);
    // 600 + 500 would pass 1 000
    expect(await admit('gw-a', 1_000, 500)).toEqual([AdmitVerdict.OverBudget, 600, 0, 600, 2]);
    expect(await redis.hgetall(ledger)).toMatchObject({ spent: '300', 'r:gw-a': '100', 'r:gw-b': '200' });
  });

  it('applies a settle batch once however often it is sent, and writes the reservations as a total', async () => {
    await commands.seed(ledger, 0, TTL);
    await admit('gw-a', 10_000, 700);
    const settle = async (seq: number, spent: number, held: number) => {
      const p = commands.pipeline();
      commands.settleIn(p, ledger, 'gw-a', seq, spent, held, Date.now(), TTL);
      const results = await p.exec();
      expect(results?.[0]?.[0]).toBeNull();
      return results?.[0]?.[1];
    };
    expect(await settle(1, 250, 0)).toBe(1);
    // re-sent after a lost reply: not applied again
    expect(await settle(1, 250, 0)).toBe(1);
    expect(await redis.hgetall(ledger)).toMatchObject({ spent: '250', 'r:gw-a': '0', 'q:gw-a': '1' });
    // no spend (seq 0): only the reservation total
    expect(await settle(0, 0, 900)).toBe(1);
    expect(await settle(2, 50, 0)).toBe(1);
    expect(await redis.hgetall(ledger)).toMatchObject({ spent: '300', 'r:gw-a': '0', 'q:gw-a': '2' });
  });

  it('writes nothing into a missing ledger (it is seeded from usage_events, which hold those requests)', async () => {
    const p = commands.pipeline();
    commands.settleIn(p, ledger, 'gw-a', 1, 250, 0, Date.now(), TTL);
    expect(await p.exec()).toEqual([[null, 0]]);
    expect(await redis.exists(ledger)).toBe(0);
  });

  it("drops the reservations of a gateway unseen for a minute", async () => {
    await commands.seed(ledger, 0, TTL);
    await redis.hset(ledger, { 'r:dead': '900', 't:dead': String(Date.now() - 120_000) });
    expect((await admit('gw-a', 1_000, 500))[0]).toBe(AdmitVerdict.Admitted);
    expect(await redis.hexists(ledger, 'r:dead')).toBe(0);
  });
});
