import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { KEY_CHANGED_CHANNEL, KEY_REVOCATION_CHANNEL, type KeyRevocationMessage, ORG_CHANGED_CHANNEL, type OrgChangedMessage } from '@spot/keys';
import { closeRedis, RedisKeys, redisOptions } from '@spot/redis';
import { Redis } from 'ioredis';
import { RateLimiter } from '../limits/rate-limiter';
import { ApiKeyAuthService } from './api-key-auth.service';

/** How often the subscription is pinged: a connection that is open but silent delivers nothing either. */
const PING_MS = 250;
/** The subscription is known to work when it answered a ping this recently. */
const ALIVE_MS = 750;
/** While it is not known to work, every warm key is re-read from Postgres this often. */
const REVALIDATE_MS = 1_000;

/**
 * Listens on Redis pub/sub for revoked keys (refused at once), keys whose settings changed and orgs whose
 * budget or billing standing changed (re-read from Postgres on their next request).
 *
 * While the subscription is not known to work (disconnected, or its pings unanswered: a Redis that stopped
 * answering), messages are lost, so every second all the keys held in memory are re-read from Postgres in
 * one query ({@link ApiKeyAuthService.revalidate}): a revocation takes effect within about a second all the
 * same. Once it works again, one more re-read covers what was published while it came back. With Postgres
 * down too, the keys are kept as they are.
 */
@Injectable()
export class KeyRevocationSubscriber implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(KeyRevocationSubscriber.name);
  private readonly channel: string;
  private readonly changedChannel: string;
  private readonly orgChannel: string;
  private subscriber: Redis | null = null;
  /** When the connection last became ready (ioredis subscribes then), and when a ping sent since was answered. */
  private readyAt = 0;
  private lastPongAt = 0;
  private pinging = false;
  /** Messages may have been missed since the last re-read: re-read even once the subscription works. */
  private missed = false;
  private revalidating = false;
  private pinger: NodeJS.Timeout | null = null;
  private revalidator: NodeJS.Timeout | null = null;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    keys: RedisKeys,
    private readonly auth: ApiKeyAuthService,
    private readonly limiter: RateLimiter,
  ) {
    this.channel = keys.key(KEY_REVOCATION_CHANNEL);
    this.changedChannel = keys.key(KEY_CHANGED_CHANNEL);
    this.orgChannel = keys.key(ORG_CHANGED_CHANNEL);
  }

  onModuleInit(): void {
    const sub = new Redis(this.config.REDIS_URL, redisOptions({ maxRetriesPerRequest: null, lazyConnect: false }));
    sub.on('message', (channel: string, payload: string) => this.onMessage(channel, payload));
    sub.on('close', () => {
      if (this.lastPongAt > 0) this.logger.warn('Redis subscription lost: warm keys are re-checked in Postgres every second');
      this.lastPongAt = 0;
      this.missed = true;
    });
    // ioredis re-subscribes as it becomes ready again: a ping sent after that is answered after the subscription
    sub.on('ready', () => {
      this.readyAt = Date.now();
    });
    sub.on('error', (err: Error) => this.logger.debug(`revocation subscriber: ${err.message}`));
    sub
      .subscribe(this.channel, this.changedChannel, this.orgChannel)
      .catch((err: unknown) => this.logger.warn(`cannot subscribe to ${this.channel}: ${String(err)}`));
    this.subscriber = sub;
    this.pinger = setInterval(() => this.ping(), PING_MS);
    this.pinger.unref();
    this.revalidator = setInterval(() => this.revalidateIfBlind(), REVALIDATE_MS);
    this.revalidator.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.pinger !== null) clearInterval(this.pinger);
    if (this.revalidator !== null) clearInterval(this.revalidator);
    this.pinger = null;
    this.revalidator = null;
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) await closeRedis(sub);
  }

  /** The subscription delivers messages now, as far as we can tell. */
  get listening(): boolean {
    return this.lastPongAt > 0 && this.subscriber?.status === 'ready' && Date.now() - this.lastPongAt <= ALIVE_MS;
  }

  private ping(): void {
    const sub = this.subscriber;
    if (sub === null || this.pinging || sub.status !== 'ready') return;
    this.pinging = true;
    const sentAt = Date.now();
    sub
      .ping()
      .then(
        () => {
          if (sentAt >= this.readyAt) this.lastPongAt = Date.now();
        },
        (err: unknown) => this.logger.debug(`revocation subscriber ping: ${String(err)}`),
      )
      .finally(() => {
        this.pinging = false;
      });
  }

  private revalidateIfBlind(): void {
    if (this.revalidating) return;
    const listening = this.listening;
    if (listening && !this.missed) return;
    if (!listening) this.missed = true;
    this.revalidating = true;
    this.auth
      .revalidate()
      .then(
        (gone) => {
          if (gone > 0) this.logger.warn(`${gone} key(s) revoked or deleted while the Redis subscription was down: refused from now on`);
          // what was published before the subscription worked again is covered by this read
          if (listening) this.missed = false;
        },
        (err: unknown) => this.logger.warn(`cannot re-check keys in Postgres while the Redis subscription is down; keeping them: ${String(err)}`),
      )
      .finally(() => {
        this.revalidating = false;
      });
  }

  private onMessage(channel: string, payload: string): void {
    let msg: Partial<KeyRevocationMessage & OrgChangedMessage>;
    try {
      msg = JSON.parse(payload) as Partial<KeyRevocationMessage & OrgChangedMessage>;
    } catch {
      this.logger.warn(`ignored a malformed message on ${channel}`);
      return;
    }
    if (channel === this.orgChannel) {
      if (typeof msg.orgId === 'string') {
        this.auth.forgetOrg(msg.orgId);
        this.limiter.forgetOrg(msg.orgId);
      }
      return;
    }
    if (typeof msg.secretHash !== 'string' || !/^[0-9a-f]{64}$/.test(msg.secretHash)) return;
    if (channel === this.channel) this.auth.revoke(msg.secretHash);
    else this.auth.forget(msg.secretHash);
  }
}
