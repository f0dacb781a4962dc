// Checks that `npm start` (scripts/start.mjs) runs before and while it starts the stack, factored out so that
// test/e2e/start.e2e-spec.ts can exercise them. Plain Node ESM; no import.meta here (Jest loads this file
// through its CommonJS transform).
import net from 'node:net';
import pg from 'pg';
import { Redis } from 'ioredis';

export const DEFAULT_DATABASE_URL = 'postgresql://postgres@127.0.0.1:5432/spotinference';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** The URL with any password replaced by `***`, for messages. Unparseable input is returned as is. */
export function redactUrl(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return String(url);
  }
}

/** Rejects with `message` after `ms`, calling `onTimeout` first; clears its timer when `promise` settles. */
function withTimeout(promise, ms, message, onTimeout) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      try {
        onTimeout?.();
      } catch {
        // best effort
      }
      reject(new Error(message));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Why `url` is not a URL with one of `protocols`, or '' when it is one. */
function invalidUrl(url, protocols) {
  try {
    const { protocol } = new URL(url);
    return protocols.includes(protocol) ? '' : `expected a ${protocols.join(' or ')} URL, got ${JSON.stringify(redactUrl(url))}`;
  } catch {
    return `not a URL: ${JSON.stringify(String(url))}`;
  }
}

function describeError(err) {
  if (!err) return 'unknown error';
  if (err instanceof AggregateError && err.errors?.length) return err.errors.map(describeError).join('; ');
  const code = err.code && !String(err.message).includes(err.code) ? `${err.code}: ` : '';
  return `${code}${err.message || String(err)}`;
}

/**
 * Is Postgres at `url` reachable, accepting us, and answering a query within `timeoutMs`?
 * A database that does not exist yet counts as reachable: migrations create it.
 * @returns {Promise<{name: 'postgres', url: string, ok: boolean, error?: string, note?: string, ms: number}>}
 */
export async function checkPostgres(url = DEFAULT_DATABASE_URL, { timeoutMs = 2000 } = {}) {
  const started = Date.now();
  const result = (ok, extra = {}) => ({ name: 'postgres', url: redactUrl(url), ok, ms: Date.now() - started, ...extra });
  const bad = invalidUrl(url, ['postgresql:', 'postgres:']);
  if (bad) return result(false, { error: `invalid DATABASE_URL: ${bad}` });
  let client;
  try {
    client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  } catch (err) {
    return result(false, { error: `invalid DATABASE_URL: ${describeError(err)}` });
  }
  client.on('error', () => {}); // a late socket error must not crash the caller
  try {
    await withTimeout(
      (async () => {
        await client.connect();
        await client.query('SELECT 1');
      })(),
      timeoutMs,
      `no answer within ${timeoutMs} ms`,
      () => client.connection?.stream?.destroy(),
    );
    return result(true);
  } catch (err) {
    if (err?.code === '3D000') {
      // invalid_catalog_name: the server answered; `db:migrate` creates the database.
      return result(true, { note: `${describeError(err)} (migrations will create it)` });
    }
    if (/^timeout expired$/i.test(String(err?.message))) return result(false, { error: `no answer within ${timeoutMs} ms` });
    return result(false, { error: describeError(err) });
  } finally {
    client.end().catch(() => {});
    client.connection?.stream?.destroy();
  }
}

/**
 * Is Redis at `url` reachable and answering PING within `timeoutMs`? Never retries, never queues.
 * @returns {Promise<{name: 'redis', url: string, ok: boolean, error?: string, ms: number}>}
 */
export async function checkRedis(url = DEFAULT_REDIS_URL, { timeoutMs = 2000 } = {}) {
  const started = Date.now();
  const result = (ok, extra = {}) => ({ name: 'redis', url: redactUrl(url), ok, ms: Date.now() - started, ...extra });
  const bad = invalidUrl(url, ['redis:', 'rediss:']);
  if (bad) return result(false, { error: `invalid REDIS_URL: ${bad}` });
  let redis;
  let lastError;
  try {
    redis = new Redis(url, {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      enableReadyCheck: false,
      retryStrategy: () => null,
      reconnectOnError: () => false,
    });
  } catch (err) {
    return result(false, { error: `invalid REDIS_URL: ${describeError(err)}` });
  }
  redis.on('error', (err) => {
    lastError = err;
  });
  try {
    await withTimeout(
      (async () => {
        await redis.connect();
        const pong = await redis.ping();
        if (pong !== 'PONG') throw new Error(`unexpected PING answer ${JSON.stringify(pong)}`);
      })(),
      timeoutMs,
      `no answer within ${timeoutMs} ms`,
    );
    return result(true);
  } catch (err) {
    // ioredis reports "Connection is closed." after the socket error it emitted: report the cause.
    if (/connection is closed/i.test(String(err?.message))) {
      return result(false, { error: lastError ? describeError(lastError) : 'the server closed the connection (is it Redis?)' });
    }
    return result(false, { error: describeError(err) });
  } finally {
    redis.disconnect();
  }
}

/** Checks Postgres and Redis in parallel. */
export async function checkServices({ databaseUrl = DEFAULT_DATABASE_URL, redisUrl = DEFAULT_REDIS_URL, timeoutMs = 2000 } = {}) {
  return Promise.all([checkPostgres(databaseUrl, { timeoutMs }), checkRedis(redisUrl, { timeoutMs })]);
}

/** How to start a service that is down, for the failure message. */
export function startHint(name) {
  if (name === 'postgres') {
    return [
      'Debian/Ubuntu:  pg_ctlcluster 15 main start   (or: sudo systemctl start postgresql)',
      'docker:         docker compose up -d postgres redis',
      'or point DATABASE_URL at a running Postgres 15+.',
    ];
  }
  if (name === 'redis') {
    return [
      'Debian/Ubuntu:  redis-server --daemonize yes   (or: sudo systemctl start redis-server)',
      'docker:         docker compose up -d postgres redis',
      'or point REDIS_URL at a running Redis 7+.',
    ];
  }
  return [];
}

/** A human message for the failed checks of {@link checkServices}, or '' when all passed. */
export function formatServiceFailures(results) {
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return '';
  const envName = { postgres: 'DATABASE_URL', redis: 'REDIS_URL' };
  const lines = [];
  for (const r of failed) {
    lines.push(`${r.name === 'postgres' ? 'Postgres' : 'Redis'} is unreachable at ${r.url} (${envName[r.name]}): ${r.error}`);
    for (const hint of startHint(r.name)) lines.push(`  ${hint}`);
  }
  return lines.join('\n');
}

/** The host to probe for a server bound to `host` (a wildcard bind is reached on loopback). */
export function probeHost(host) {
  return !host || host === '0.0.0.0' || host === '::' || host === '[::]' ? '127.0.0.1' : host;
}

/** Does something accept TCP connections on host:port (within `timeoutMs`)? */
export function isPortInUse(port, host = '127.0.0.1', { timeoutMs = 500 } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host });
    const done = (inUse) => {
      socket.destroy();
      resolve(inUse);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Polls GET `url` until it answers 2xx, for at most `timeoutMs`.
 * `shouldStop()` (optional) ends the wait early, e.g. when the process being waited for has exited.
 * @returns {Promise<{ok: boolean, url: string, status?: number, error?: string, ms: number}>}
 */
export async function waitForHttp(url, { timeoutMs = 30_000, intervalMs = 250, requestTimeoutMs = 2_000, shouldStop } = {}) {
  const started = Date.now();
  let last = {};
  for (;;) {
    if (shouldStop?.()) return { ok: false, url, ...last, error: last.error ?? 'stopped', ms: Date.now() - started };
    const remaining = timeoutMs - (Date.now() - started);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, Math.min(requestTimeoutMs, remaining))) });
      await res.arrayBuffer().catch(() => {});
      if (res.ok) return { ok: true, url, status: res.status, ms: Date.now() - started };
      last = { status: res.status, error: `HTTP ${res.status}` };
    } catch (err) {
      last = { error: describeError(err.cause ?? err) };
    }
    if (Date.now() - started + intervalMs > timeoutMs) return { ok: false, url, ...last, ms: Date.now() - started };
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The port of a loopback http endpoint (127.0.0.1, localhost, [::1]), or null. */
function loopbackPort(endpoint) {
  try {
    const u = new URL(endpoint);
    if (u.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) return null;
    return Number(u.port || '80');
  } catch {
    return null;
  }
}

/** How many ports from SIM_PORT on `npm start` runs a simulator on, when a tier points there. */
export const DEMO_SIM_PORTS = 10;

/**
 * The simulators `npm start` runs: one vllm-sim per loopback port from `simPort` to `simPort + span - 1` that an
 * endpoint of some tier points at, serving the `upstream` names (or ids) of the models of every tier on that port.
 * `asleep` when such a tier sleeps with vLLM sleep mode (`wake.driver: vllm-sleep`): the demo starts it asleep,
 * so that its first request shows a wake.
 * @param tiersDoc the parsed tiers file (`{ tiers: [...] }`)
 * @returns {{ port: number, models: string[], tiers: string[], ids: string[], asleep: boolean }[]} by port
 */
export function demoSims(tiersDoc, simPort = 8090, span = DEMO_SIM_PORTS) {
  const byPort = new Map();
  for (const tier of tiersDoc?.tiers ?? []) {
    for (const endpoint of tier?.endpoints ?? []) {
      const port = loopbackPort(endpoint);
      if (port === null || port < simPort || port >= simPort + span) continue;
      const sim = byPort.get(port) ?? { port, models: [], tiers: [], ids: [], asleep: false };
      byPort.set(port, sim);
      if (!sim.tiers.includes(tier.name)) sim.tiers.push(tier.name);
      if (tier?.wake?.driver === 'vllm-sleep') sim.asleep = true;
      for (const m of tier.models ?? []) {
        const served = m?.upstream ?? m?.id;
        if (served && !sim.models.includes(served)) sim.models.push(served);
        if (m?.id && !sim.ids.includes(m.id)) sim.ids.push(m.id);
      }
    }
  }
  return [...byPort.values()].sort((a, b) => a.port - b.port);
}
