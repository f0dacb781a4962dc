import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { RedisHealth } from './redis-health';

/** Just what RedisHealth uses of a client: its status, its events, and a ping (never answered here: the test answers). */
class FakeRedis extends EventEmitter {
  status = 'ready';
  ping(): Promise<string> {
    return new Promise(() => undefined);
  }
}

const started: RedisHealth[] = [];

function setup(): { health: RedisHealth; redis: FakeRedis; recovered: jest.Mock } {
  const redis = new FakeRedis();
  const health = new RedisHealth(redis as unknown as Redis, new GatewayMetrics());
  health.onModuleInit();
  started.push(health);
  const recovered = jest.fn();
  health.onRecovered(recovered);
  return { health, redis, recovered };
}

afterEach(() => {
  for (const h of started.splice(0)) h.onApplicationShutdown();
});

const timeout = new Error('Command timed out');

describe('RedisHealth', () => {
  it('is usable before the first answer (commands are tried) but answering only after one', () => {
    const { health } = setup();
    expect(health.usable).toBe(true);
    expect(health.answering).toBe(false);
    health.answered();
    expect(health.answering).toBe(true);
  });

  it('goes down after three failures in a row, not after two with an answer between', () => {
    const { health } = setup();
    health.answered();
    health.failed(timeout);
    health.failed(timeout);
    health.answered();
    health.failed(timeout);
    health.failed(timeout);
    expect(health.usable).toBe(true);
    health.failed(timeout);
    expect(health.usable).toBe(false);
    expect(health.answering).toBe(false);
  });

  it('counts an error reply as an answer: Redis is there', () => {
    const { health } = setup();
    health.answered();
    const reply = Object.assign(new Error('WRONGTYPE'), { name: 'ReplyError' });
    for (let i = 0; i < 5; i++) health.failed(reply);
    expect(health.usable).toBe(true);
  });

  it('goes down at once when a connection that answered closes, and comes back after two answers, telling its listeners once', () => {
    const { health, redis, recovered } = setup();
    health.answered();
    redis.status = 'reconnecting';
    redis.emit('close');
    expect(health.usable).toBe(false);
    redis.status = 'ready';
    health.answered();
    expect(health.usable).toBe(false);
    expect(recovered).not.toHaveBeenCalled();
    health.answered();
    expect(health.usable).toBe(true);
    health.answered();
    expect(recovered).toHaveBeenCalledTimes(1);
  });
});
