import { redactUrl } from '@spot/config';
import type { PrismaService } from '@spot/db';
import type { Redis } from 'ioredis';

/** What a process probes at boot: Postgres and Redis, with their URLs for the message. */
export interface ProbeTargets {
  prisma: PrismaService;
  databaseUrl: string;
  redis: Redis;
  redisUrl: string;
  /** The last connection error the Redis client emitted: more telling than a failed command's. */
  lastRedisError: () => Error | null;
}

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The telling part of a driver error: Prisma wraps it in several lines ending with "Message: `...`". */
export function errorReason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const lines = err.message.split('\n').filter((l) => l.trim() !== '');
  const last = lines.at(-1)?.trim() ?? '';
  const wrapped = /Message: `(.*)`$/.exec(last)?.[1];
  return wrapped ?? (last || (err.cause instanceof Error ? errorReason(err.cause) : err.name));
}

/** The outcome of {@link probeServices}: one line per service that did not answer, and the first error. */
export interface ProbeResult {
  problems: string[];
  cause: unknown;
}

/**
 * Asks Postgres and Redis for one trivial answer each, in parallel, so that a process fails in seconds
 * with the name and URL (password masked) of what is down instead of hanging on it.
 */
export async function probeServices(t: ProbeTargets, timeoutMs = 5_000): Promise<ProbeResult> {
  const [pg, redis] = await Promise.allSettled([within(t.prisma.ping(), timeoutMs), within(t.redis.ping(), timeoutMs)]);
  const problems: string[] = [];
  let cause: unknown;
  if (pg.status === 'rejected') {
    problems.push(`Postgres (${redactUrl(t.databaseUrl)}) is not available: ${errorReason(pg.reason)}`);
    cause = pg.reason;
  }
  if (redis.status === 'rejected') {
    problems.push(`Redis (${redactUrl(t.redisUrl)}) is not available: ${errorReason(t.lastRedisError() ?? redis.reason)}`);
    cause ??= redis.reason;
  }
  return { problems, cause };
}
