import { Body, Controller, Delete, Get, Header, Headers, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError } from '@spot/contract';
import { ModelCatalog, tierKeys } from '@spot/tiers';
import { REDIS, RedisKeys } from '@spot/redis';
import type { Redis } from 'ioredis';
import { StaticBearerToken } from '../auth/static-bearer-token';
import { PreemptionNotices } from '../routing/preemption-notices';
import { TierWaker } from '../routing/tier-waker';
import { parsePreemptBody } from './preempt.dto';
import { UpstreamPool } from '../routing/upstream-pool';

/**
 * Operator views of the gateway, behind `Authorization: Bearer ADMIN_TOKEN`. Without ADMIN_TOKEN they do
 * not exist (404), so nothing is exposed by default.
 */
@Controller('admin')
export class AdminController {
  private readonly token: StaticBearerToken | null;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly pool: UpstreamPool,
    private readonly waker: TierWaker,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly notices: PreemptionNotices,
  ) {
    this.token = config.ADMIN_TOKEN ? new StaticBearerToken(config.ADMIN_TOKEN) : null;
  }

  /**
   * Every tier with its state (awake, waking, asleep, or unhealthy when every endpoint is ejected), its endpoints
   * as this gateway sees them (circuit state, load, failures, ejections, the preemption notice it holds on each:
   * deadline, who took it, gone once past the deadline) and, for tiers that sleep, the shared history of wakes and
   * sleeps, newest first.
   */
  @Get('tiers')
  @Header('cache-control', 'no-store')
  async tiers(@Headers('authorization') authorization: string | undefined) {
    this.authorize(authorization);
    const now = Date.now();
    const histories = await Promise.all(
      this.catalog.tiers().map((t) =>
        t.wake === null
          ? Promise.resolve([] as string[])
          : this.redis.lrange(this.keys.key(tierKeys.history(t.name)), 0, 49).catch(() => [] as string[]),
      ),
    );
    return {
      tiers: this.catalog.tiers().map((t, i) => {
        const endpoints = t.endpoints.map((origin) => {
          const e = this.pool.endpoint(origin, t.name);
          e.available(now);
          return {
            url: origin,
            state: e.state,
            inflight: e.inflight,
            waiting: e.waiting,
            consecutiveFailures: e.failures,
            ejections: e.ejections,
            openedAt: e.openedAt > 0 ? new Date(e.openedAt).toISOString() : null,
            lastError: e.lastError,
            notice: this.notices.noticeOf(t.name, origin, now),
          };
        });
        const healthy = endpoints.some((e) => e.state !== 'open');
        const sleepy = this.waker.stateOf(t.name);
        const state = sleepy !== undefined && sleepy.state !== 'awake' ? sleepy.state : healthy ? 'awake' : 'unhealthy';
        return {
          name: t.name,
          kind: t.kind,
          models: t.models,
          state,
          since: sleepy ? new Date(sleepy.since).toISOString() : null,
          reason: sleepy?.reason ?? null,
          waiting: sleepy?.waiters ?? 0,
          lastUsedAt: sleepy && sleepy.lastUsedAt > 0 ? new Date(sleepy.lastUsedAt).toISOString() : null,
          wake: t.wake === null ? null : { driver: t.wake.driver, deadlineS: t.wake.deadline_s, idleSleepS: t.idleSleepS },
          endpoints,
          history: histories[i].map((h) => JSON.parse(h) as unknown),
        };
      }),
    };
  }

  /**
   * A preemption notice: `endpoint` of the tier (every replica when omitted) goes away in `deadline_s` seconds.
   * Every gateway stops sending it new requests; a sleeping fallback is woken if the tier loses all its replicas.
   */
  @Post('tiers/:tier/preempt')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  async preempt(@Headers('authorization') authorization: string | undefined, @Param('tier') tier: string, @Body() body: unknown) {
    this.authorize(authorization);
    const { endpoint, deadline_s } = parsePreemptBody(body);
    const notices = await this.notices.take(tier, endpoint, deadline_s, 'admin');
    return {
      tier,
      notices: notices.map((n) => ({ endpoint: n.endpoint, deadlineAt: new Date(n.deadlineAt).toISOString(), source: n.source, by: n.by })),
    };
  }

  /** Clears the notice on `?endpoint=` of the tier (every replica when omitted): back in rotation at once. */
  @Delete('tiers/:tier/preempt')
  @Header('cache-control', 'no-store')
  async unpreempt(@Headers('authorization') authorization: string | undefined, @Param('tier') tier: string, @Query('endpoint') endpoint: string | undefined) {
    this.authorize(authorization);
    return { tier, cleared: await this.notices.clear(tier, endpoint === '' ? undefined : endpoint) };
  }

  private authorize(authorization: string | undefined): void {
    if (this.token === null) throw new ApiError(404, 'invalid_request_error', 'Not found.', 'not_found');
    if (!this.token.matches(authorization)) {
      throw new ApiError(401, 'invalid_request_error', 'A valid admin token is required (Authorization: Bearer ADMIN_TOKEN).', 'invalid_admin_token');
    }
  }
}
