import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { REDIS, RedisKeys } from '@spot/redis';
import { loadTiersFile, ModelCatalog, tierKeys, type TierView, wakeDriver } from '@spot/tiers';
import { Redis } from 'ioredis';

/** What one pass did to each sleepy tier. */
export interface IdlePass {
  slept: string[];
  busy: string[];
  idleFor: Record<string, number>;
}

const SLEEP_TIMEOUT_MS = 30_000;

/**
 * Scale-to-zero: puts a tier with `idle_sleep_s` to sleep (through its wake driver: vLLM /sleep, the webhook,
 * or scale to 0) once no gateway has reported a request in flight on it for that long. It holds the tier's lock
 * (the one gateways take to wake it) while it does, so a wake and a sleep never race; a tier with any request
 * in flight, by any gateway's latest report, is left awake.
 */
@Injectable()
export class TierIdleService {
  private readonly logger = new Logger('TierIdle');
  private readonly tiers: TierView[];
  private readonly id = `worker ${randomBytes(4).toString('hex')}`;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    let tiers: TierView[] = [];
    try {
      tiers = new ModelCatalog(loadTiersFile(config.TIERS_FILE)).tiers().filter((t) => t.wake !== null && t.idleSleepS !== null);
    } catch (err) {
      this.logger.warn(`no tiers to put to sleep: ${String(err)}`);
    }
    this.tiers = tiers;
  }

  async runPass(now = Date.now()): Promise<IdlePass> {
    const pass: IdlePass = { slept: [], busy: [], idleFor: {} };
    for (const tier of this.tiers) {
      const { inflight, lastUsedAt } = await this.activity(tier, now);
      pass.idleFor[tier.name] = now - lastUsedAt;
      if (inflight > 0) {
        pass.busy.push(tier.name);
        continue;
      }
      if (now - lastUsedAt < tier.idleSleepS! * 1000) continue;
      if (await this.sleep(tier)) pass.slept.push(tier.name);
    }
    return pass;
  }

  private async activity(tier: TierView, now: number): Promise<{ inflight: number; lastUsedAt: number }> {
    const pattern = this.keys.key(tierKeys.gatewayPattern(tier.name));
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    let inflight = 0;
    if (found.length > 0) {
      for (const raw of await this.redis.mget(found)) {
        if (raw !== null) inflight += Number((JSON.parse(raw) as { inflight?: number }).inflight ?? 0);
      }
    }
    // a tier nobody has used yet counts as used when the worker first sees it
    const lastKey = this.keys.key(tierKeys.lastUsed(tier.name));
    await this.redis.set(lastKey, String(now), 'NX');
    const lastUsedAt = Number((await this.redis.get(lastKey)) ?? now);
    return { inflight, lastUsedAt };
  }

  private async sleep(tier: TierView): Promise<boolean> {
    const lock = this.keys.key(tierKeys.lock(tier.name));
    if ((await this.redis.set(lock, this.id, 'PX', SLEEP_TIMEOUT_MS, 'NX')) !== 'OK') return false; // a wake is running
    try {
      const driver = wakeDriver(tier);
      const signal = AbortSignal.timeout(SLEEP_TIMEOUT_MS);
      if (await driver.isAsleep(signal)) return false;
      await driver.sleep(signal);
      const entry = JSON.stringify({ at: new Date().toISOString(), state: 'asleep', reason: `idle for ${tier.idleSleepS} s`, by: this.id });
      const history = this.keys.key(tierKeys.history(tier.name));
      await this.redis.multi().lpush(history, entry).ltrim(history, 0, 199).exec();
      await this.redis.publish(this.keys.key(tierKeys.stateChannel), JSON.stringify({ tier: tier.name, state: 'asleep', gateway: this.id }));
      this.logger.log(`tier ${tier.name} put to sleep after ${tier.idleSleepS} s without requests`);
      return true;
    } catch (err) {
      this.logger.warn(`could not put tier ${tier.name} to sleep: ${String(err)}`);
      return false;
    } finally {
      await this.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, lock, this.id);
    }
  }
}
