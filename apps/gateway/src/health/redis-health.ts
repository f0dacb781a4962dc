import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { REDIS } from '@spot/redis';
import type { Redis } from 'ioredis';
import { GatewayMetrics } from '../metrics/gateway-metrics';

/** How often Redis is pinged when nothing else tells us how it is. */
const PROBE_MS = 500;
/** Consecutive failed commands (timeouts, connection errors) that make Redis down. */
const DOWN_AFTER = 3;
/** Consecutive answered commands that make it up again. */
const UP_AFTER = 2;

/**
 * Whether the gateway's Redis answers, from the outcomes of its commands (the request path's and a ping every
 * {@link PROBE_MS}): a connection that is open but silent (every command past REDIS_COMMAND_TIMEOUT_MS) is as
 * down as a closed one. Down after {@link DOWN_AFTER} failures in a row or at once when the connection closes;
 * up after {@link UP_AFTER} answers in a row on a ready connection. An error reply (Redis answered) is an answer.
 *
 * Readiness follows it, and while it is down the request path decides without Redis (no request waits for a
 * command that will time out); the ping finds out when it is back.
 */
@Injectable()
export class RedisHealth implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('RedisHealth');
  /** Redis failed us and has not answered enough since (at start: not known down, so commands are tried). */
  private isDown = false;
  /** Epoch ms of the last answer (0: none yet). */
  lastAnswerAt = 0;
  private failures = 0;
  private answers = 0;
  private probing = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly recovered = new Set<() => void>();

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly metrics: GatewayMetrics,
  ) {}

  onModuleInit(): void {
    this.redis.on('close', () => {
      if (this.lastAnswerAt > 0) this.markDown('connection closed');
    });
    this.redis.on('ready', () => this.probe());
    this.timer = setInterval(() => this.probe(), PROBE_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Commands may be sent (they may still time out): connected, and not known down. */
  get usable(): boolean {
    return !this.isDown && this.redis.status === 'ready';
  }

  /** Redis answers: connected, not known down, and it answered since the start. */
  get answering(): boolean {
    return this.usable && this.lastAnswerAt > 0;
  }

  /** Calls `listener` each time Redis comes back (after being down). */
  onRecovered(listener: () => void): void {
    this.recovered.add(listener);
  }

  /** A command was answered. */
  answered(): void {
    this.failures = 0;
    if (this.lastAnswerAt === 0) this.metrics.redisUp.set(1);
    this.lastAnswerAt = Date.now();
    if (!this.isDown) return;
    if (++this.answers < UP_AFTER || this.redis.status !== 'ready') return;
    this.isDown = false;
    this.answers = 0;
    this.metrics.redisUp.set(1);
    this.logger.log('Redis answers again');
    for (const listener of this.recovered) listener();
  }

  /** A command failed: a reply error counts as an answer, anything else (deadline, connection) as a failure. */
  failed(err: unknown): void {
    if ((err as { name?: unknown } | null)?.name === 'ReplyError') {
      this.answered();
      return;
    }
    this.answers = 0;
    if (++this.failures >= DOWN_AFTER) this.markDown(String(err));
  }

  private markDown(why: string): void {
    this.answers = 0;
    if (this.isDown) return;
    this.isDown = true;
    this.metrics.redisUp.set(0);
    this.logger.warn(`Redis is down (${why}): budgets are enforced from this gateway's own view, limits fail open`);
  }

  private probe(): void {
    if (this.probing) return;
    if (this.redis.status !== 'ready') {
      // before the first connection there is nothing to lose: commands wait for it (usable is false)
      if (this.lastAnswerAt > 0) this.markDown(`connection ${this.redis.status}`);
      return;
    }
    this.probing = true;
    this.redis
      .ping()
      .then(
        () => this.answered(),
        (err: unknown) => this.failed(err),
      )
      .finally(() => {
        this.probing = false;
      });
  }
}
