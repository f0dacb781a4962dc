import { Inject, Injectable } from '@nestjs/common';
import { REDIS, RedisKeys } from '@spot/redis';
import { Redis } from 'ioredis';
import { ORG_CHANGED_CHANNEL, type OrgChangedMessage } from './revocation';

/**
 * Tells every gateway that an org's budget or billing status changed, so that the next request of each of
 * its keys sees the new value (within a second) instead of waiting for the key cache's TTL.
 */
@Injectable()
export class OrgChangePublisher {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** Resolves with the number of gateways that received the message. */
  async published(orgId: string): Promise<number> {
    const message: OrgChangedMessage = { orgId };
    return this.redis.publish(this.keys.key(ORG_CHANGED_CHANNEL), JSON.stringify(message));
  }
}
