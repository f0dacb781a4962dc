import { Controller, Get, Header, HttpCode, Inject, Res } from '@nestjs/common';
import { REDIS } from '@spot/redis';
import type { FastifyReply } from 'fastify';
import type { Redis } from 'ioredis';
import { ShutdownCoordinator } from '../lifecycle/shutdown-coordinator';
import { RedisHealth } from './redis-health';

/**
 * Liveness and readiness. Readiness needs the config (loaded at boot, or we would not be here) and a Redis
 * that answers (limits, budgets, revocations): connected, and its commands answered within their deadline
 * ({@link RedisHealth}: a silent Redis is as down as a disconnected one). Not Postgres: warm keys keep working
 * through a Postgres outage, so a blip must not pull every replica out of rotation.
 */
@Controller()
export class HealthController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly redisHealth: RedisHealth,
    private readonly shutdown: ShutdownCoordinator,
  ) {}

  @Get('healthz')
  @HttpCode(200)
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('readyz')
  @Header('cache-control', 'no-store')
  readyz(@Res({ passthrough: true }) reply: FastifyReply): { status: string; redis: string } {
    const answers = this.redisHealth.answering;
    const redis = answers ? 'ready' : this.redis.status === 'ready' ? 'not_answering' : this.redis.status;
    const ready = answers && !this.shutdown.closing;
    void reply.code(ready ? 200 : 503);
    return { status: this.shutdown.closing ? 'shutting_down' : ready ? 'ready' : 'not_ready', redis };
  }
}
