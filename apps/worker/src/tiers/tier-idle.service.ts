import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { REDIS, RedisKeys } from '@spot/redis';
import { loadTiersFile, ModelCatalog, type TierGatewayReport, tierKeys, type TierView, wakeDriver } from '@spot/tiers';
import { Redis } from 'ioredis';

/** What one pass did to each sleepy tier. */
export interface IdlePass {
  slept: string[];
  /** Tiers left awake because a gateway had requests in flight or waiting there (found before or during the drain). */
  busy: string[];
  idleFor: Record<string, number>;
}

/** What the gateways report about a tier, summed. */
interface Activity {
  inflight: number;
  waiters: number;
  lastUsedAt: number;
  gateways: number;
  acked: number;
}

const SLEEP_TIMEOUT_MS = 30_000;
/** Longer than a gateway report's lifetime (5 s): a gateway that died stops counting before the drain gives up. */
const ACK_TIMEOUT_MS = 6_000;
const ACK_POLL_MS = 25;
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Scale-to-zero: puts a tier with `idle_sleep_s` to sleep (through its wake driver: vLLM /sleep, the webhook, or
 * scale to 0) once no gateway has had a request on it for that long.
 *
 * Gateways report once a second, so a report can be a second old: the sleep is a two-step drain. Holding the
 * tier's lock (the one wakes take, so a wake and a sleep never race), the worker announces `draining` with an
 * epoch; from then on each gateway sends the tier nothing new (its requests wait for the lock or fall back) and
 * acknowledges the epoch in a fresh report of what it still has in flight or waiting. Only when every live
 * gateway has acknowledged with nothing there, and the tier is still idle, is it put to sleep; otherwise the drain
 * is called off (`awake`) and nothing changed.
 */
@Injectable()
export class TierIdleService {
  private readonly logger = new Logger('TierIdle');
  private readonly tiers: TierView[];
  private readonly id = `worker-${randomBytes(4).toString('hex')}`;
  private readonly channel: string;

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
    this.channel = keys.key(tierKeys.stateChannel);
  }

  /** One look at every tier with `idle_sleep_s`: the idle ones are put to sleep. */
  async runPass(now = Date.now()): Promise<IdlePass> {
    const pass: IdlePass = { slept: [], busy: [], idleFor: {} };
    for (const tier of this.tiers) {
      const activity = await this.activity(tier, null);
      const lastUsedAt = await this.lastUsed(tier, activity, now);
      pass.idleFor[tier.name] = now - lastUsedAt;
      if (activity.inflight + activity.waiters > 0) {
        pass.busy.push(tier.name);
        continue;
      }
      if (now - lastUsedAt < tier.idleSleepS! * 1000) continue;
      const outcome = await this.sleep(tier);
      if (outcome === 'slept') pass.slept.push(tier.name);
      else if (outcome === 'busy') pass.busy.push(tier.name);
    }
    return pass;
  }

  /** The gateways' latest reports on a tier; `epoch`: how many of them acknowledged that drain. */
  private async activity(tier: TierView, epoch: string | null): Promise<Activity> {
    const pattern = this.keys.key(tierKeys.gatewayPattern(tier.name));
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    const a: Activity = { inflight: 0, waiters: 0, lastUsedAt: 0, gateways: 0, acked: 0 };
    if (found.length === 0) return a;
    for (const raw of await this.redis.mget(found)) {
      if (raw === null) continue; // expired between SCAN and MGET: that gateway is gone
      const r = JSON.parse(raw) as Partial<TierGatewayReport>;
      a.gateways++;
      a.inflight += Number(r.inflight ?? 0);
      a.waiters += Number(r.waiters ?? 0);
      a.lastUsedAt = Math.max(a.lastUsedAt, Number(r.lastUsedAt ?? 0));
      if (epoch !== null && r.ack === epoch) a.acked++;
    }
    return a;
  }

  /** When any gateway last used the tier; a tier nobody has used yet counts as used when the worker first sees it. */
  private async lastUsed(tier: TierView, activity: Activity, now: number): Promise<number> {
    const key = this.keys.key(tierKeys.lastUsed(tier.name));
    await this.redis.set(key, String(now), 'NX');
    return Math.max(Number((await this.redis.get(key)) ?? now), activity.lastUsedAt);
  }

  private async sleep(tier: TierView): Promise<'slept' | 'busy' | 'skipped'> {
    const lock = this.keys.key(tierKeys.lock(tier.name));
    if ((await this.redis.set(lock, this.id, 'PX', SLEEP_TIMEOUT_MS, 'NX')) !== 'OK') return 'skipped'; // a wake runs
    const draining = this.keys.key(tierKeys.draining(tier.name));
    let drained = false;
    let outcome: 'slept' | 'busy' | 'skipped' = 'skipped';
    try {
      const driver = wakeDriver(tier);
      const signal = AbortSignal.timeout(SLEEP_TIMEOUT_MS);
      if (await driver.isAsleep(signal)) return 'skipped';
      const epoch = randomBytes(6).toString('hex');
      // the marker first, then the announcement: a gateway starting meanwhile either reads one or hears the other
      await this.redis.set(draining, epoch, 'PX', SLEEP_TIMEOUT_MS);
      drained = true;
      await this.announce(tier.name, 'draining', epoch);
      const activity = await this.acknowledged(tier, epoch);
      if (activity === null) {
        this.logger.warn(`tier ${tier.name} stays awake: not every gateway acknowledged the drain within ${ACK_TIMEOUT_MS} ms`);
        outcome = 'busy';
        return outcome;
      }
      const now = Date.now();
      if (activity.inflight + activity.waiters > 0 || now - (await this.lastUsed(tier, activity, now)) < tier.idleSleepS! * 1000) {
        outcome = 'busy';
        return outcome;
      }
      await driver.sleep(signal);
      const entry = JSON.stringify({ at: new Date().toISOString(), state: 'asleep', reason: `idle for ${tier.idleSleepS} s`, by: this.id });
      const history = this.keys.key(tierKeys.history(tier.name));
      await this.redis.multi().lpush(history, entry).ltrim(history, 0, 199).exec();
      this.logger.log(`tier ${tier.name} put to sleep after ${tier.idleSleepS} s without requests`);
      outcome = 'slept';
      return outcome;
    } catch (err) {
      this.logger.warn(`could not put tier ${tier.name} to sleep: ${String(err)}`);
      return outcome;
    } finally {
      if (drained) await this.redis.del(draining);
      // the lock goes before the announcement: a gateway that hears `asleep` may take it at once to wake the tier
      await this.redis.eval(RELEASE, 1, lock, this.id);
      // a drain that did not end in sleep is called off: the gateways use the tier again
      if (drained) await this.announce(tier.name, outcome === 'slept' ? 'asleep' : 'awake');
    }
  }

  /** Waits until every live gateway has acknowledged the drain; null when some did not in time. */
  private async acknowledged(tier: TierView, epoch: string): Promise<Activity | null> {
    const deadline = Date.now() + ACK_TIMEOUT_MS;
    for (;;) {
      const a = await this.activity(tier, epoch);
      if (a.acked === a.gateways) return a;
      if (a.inflight + a.waiters > 0) return a; // busy whatever the others say
      if (Date.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, ACK_POLL_MS));
    }
  }

  private async announce(tier: string, state: 'draining' | 'asleep' | 'awake', epoch?: string): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify({ tier, state, gateway: this.id, epoch }));
  }
}
