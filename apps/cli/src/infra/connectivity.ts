import type { PrismaService } from '@spot/db';
import { redactUrl } from '@spot/config';
import type { Redis } from 'ioredis';
import { ServiceUnreachableError } from '../cli.errors';

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The telling part of a driver error: Prisma wraps it in several lines ending with "Message: `...`". */
function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const lines = err.message.split('\n').filter((l) => l.trim() !== '');
  const last = lines.at(-1)?.trim() ?? '';
  const wrapped = /Message: `(.*)`$/.exec(last)?.[1];
  return wrapped ?? (last || (err.cause instanceof Error ? reason(err.cause) : err.name));
}

export interface Endpoints {
  prisma: PrismaService;
  databaseUrl: string;
  redis: Redis;
  redisUrl: string;
  /** The last connection error the Redis client emitted: more telling than a failed command's. */
  lastRedisError: () => Error | null;
}

/**
 * Asks Postgres and Redis for one trivial answer each, in parallel, so that a command fails in seconds
 * with the name and URL of what is down instead of hanging on it.
 * @throws ServiceUnreachableError naming each unreachable service.
 */
export async function assertReachable(e: Endpoints, timeoutMs = 5_000): Promise<void> {
  const [pg, redis] = await Promise.allSettled([
    within(e.prisma.ping(), timeoutMs),
    within(e.redis.ping(), timeoutMs),
  ]);
  const problems: string[] = [];
  let cause: unknown;
  if (pg.status === 'rejected') {
    problems.push(`Postgres (${redactUrl(e.databaseUrl)}) is not available: ${reason(pg.reason)}`);
    cause = pg.reason;
  }
  if (redis.status === 'rejected') {
    problems.push(`Redis (${redactUrl(e.redisUrl)}) is not available: ${reason(e.lastRedisError() ?? redis.reason)}`);
    cause ??= redis.reason;
  }
  if (problems.length > 0) throw new ServiceUnreachableError(problems.join('; '), { cause });
}
