import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { KEY_CHANGED_CHANNEL, KEY_REVOCATION_CHANNEL, type KeyRevocationMessage, ORG_CHANGED_CHANNEL, type OrgChangedMessage } from '@spot/keys';
import { closeRedis, RedisKeys, redisOptions } from '@spot/redis';
import { Redis } from 'ioredis';
import { RateLimiter } from '../limits/rate-limiter';
import { ApiKeyAuthService } from './api-key-auth.service';

/**
 * Listens on Redis pub/sub for revoked keys (refused at once), keys whose settings changed and orgs whose
 * budget or billing standing changed (re-read from Postgres on their next request). If the subscription
 * drops, messages may be lost, so every cached key is forgotten when it comes back.
 */
@Injectable()
export class KeyRevocationSubscriber implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(KeyRevocationSubscriber.name);
  private readonly channel: string;
  private readonly changedChannel: string;
  private readonly orgChannel: string;
  private subscriber: Redis | null = null;
  private connectedOnce = false;

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
    sub.on('ready', () => {
      if (this.connectedOnce) {
        this.logger.warn('Redis subscription restored; forgetting cached keys in case a revocation was missed');
        this.auth.forgetAll();
      }
      this.connectedOnce = true;
    });
    sub.on('error', (err: Error) => this.logger.debug(`revocation subscriber: ${err.message}`));
    // ioredis re-subscribes by itself after a reconnect
    sub
      .subscribe(this.channel, this.changedChannel, this.orgChannel)
      .catch((err: unknown) => this.logger.warn(`cannot subscribe to ${this.channel}: ${String(err)}`));
    this.subscriber = sub;
  }

  async onApplicationShutdown(): Promise<void> {
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) await closeRedis(sub);
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
