import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { KEY_REVOCATION_CHANNEL, type KeyRevocationMessage } from '@spot/keys';
import { closeRedis, RedisKeys, redisOptions } from '@spot/redis';
import { Redis } from 'ioredis';
import { ApiKeyAuthService } from './api-key-auth.service';

/**
 * Listens for revoked keys on Redis pub/sub and evicts them at once. If the subscription drops, messages
 * may be lost, so every cached key is forgotten when it comes back (the next request re-reads Postgres).
 */
@Injectable()
export class KeyRevocationSubscriber implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(KeyRevocationSubscriber.name);
  private readonly channel: string;
  private subscriber: Redis | null = null;
  private connectedOnce = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    keys: RedisKeys,
    private readonly auth: ApiKeyAuthService,
  ) {
    this.channel = keys.key(KEY_REVOCATION_CHANNEL);
  }

  onModuleInit(): void {
    const sub = new Redis(this.config.REDIS_URL, redisOptions({ maxRetriesPerRequest: null, lazyConnect: false }));
    sub.on('message', (_channel: string, payload: string) => this.onMessage(payload));
    sub.on('ready', () => {
      if (this.connectedOnce) {
        this.logger.warn('Redis subscription restored; forgetting cached keys in case a revocation was missed');
        this.auth.forgetAll();
      }
      this.connectedOnce = true;
    });
    sub.on('error', (err: Error) => this.logger.debug(`revocation subscriber: ${err.message}`));
    // ioredis re-subscribes by itself after a reconnect
    sub.subscribe(this.channel).catch((err: unknown) => this.logger.warn(`cannot subscribe to ${this.channel}: ${String(err)}`));
    this.subscriber = sub;
  }

  async onApplicationShutdown(): Promise<void> {
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) await closeRedis(sub);
  }

  private onMessage(payload: string): void {
    let msg: Partial<KeyRevocationMessage>;
    try {
      msg = JSON.parse(payload) as Partial<KeyRevocationMessage>;
    } catch {
      this.logger.warn('ignored a malformed revocation message');
      return;
    }
    if (typeof msg.secretHash === 'string' && /^[0-9a-f]{64}$/.test(msg.secretHash)) {
      this.auth.revoke(msg.secretHash);
    }
  }
}
