import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const url = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `expected a ${protocols.join(' or ')} URL`);

/**
 * OpenTelemetry's `key1=value1,key2=value2` lists (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES): values
 * percent-decoded, keys trimmed.
 */
const keyValueList = z.string().transform((v, ctx) => {
  const out: Record<string, string> = {};
  for (const item of v.split(',')) {
    if (item.trim() === '') continue;
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq).trim() : '';
    if (key === '') {
      ctx.addIssue({ code: 'custom', message: 'expected key=value pairs separated by commas' });
      return z.NEVER;
    }
    try {
      out[key] = decodeURIComponent(item.slice(eq + 1).trim());
    } catch {
      ctx.addIssue({ code: 'custom', message: `the value of ${key} is not valid percent-encoding` });
      return z.NEVER;
    }
  }
  return out;
});
/** OTLP over HTTP only: the SDK's gRPC exporter would load a gRPC stack for what one HTTP POST does. */
const otlpProtocol = z.enum(['http/protobuf', 'http/json'], {
  error: (issue) => (issue.input === 'grpc' ? 'grpc is not supported: use http/protobuf (the OTLP/HTTP port, 4318) or http/json' : 'expected http/protobuf or http/json'),
});
const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** The one configuration schema of every app. Read once at boot by {@link loadConfig}. */
export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: url(['postgresql:', 'postgres:']).default('postgresql://postgres@127.0.0.1:5432/spotinference'),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  /**
   * Deadline of every command of the gateway's Redis client, in ms: a command past it fails (the request
   * follows the outage policy: limits fail open, budgets are enforced from the gateway's own view) and counts
   * against readiness. A Redis that stops answering must not hang requests.
   */
  REDIS_COMMAND_TIMEOUT_MS: positiveInt.default(100),
  /** Prefix of every Redis key and pub/sub channel, so several stacks (or test files) can share one Redis. */
  REDIS_PREFIX: z.string().min(1).default('spot:'),
  GATEWAY_HOST: z.string().min(1).default('0.0.0.0'),
  GATEWAY_PORT: port.default(8080),
  CONSOLE_HOST: z.string().min(1).default('0.0.0.0'),
  CONSOLE_PORT: port.default(8081),
  TIERS_FILE: z.string().min(1).default('tiers.yaml'),
  /** Largest request body the gateway accepts, in bytes; bigger ones get 413. */
  GATEWAY_BODY_LIMIT: positiveInt.default(8 * 1024 * 1024),
  /**
   * Largest upload to /v1/audio/transcriptions and /v1/audio/translations (multipart/form-data), in bytes; bigger
   * ones get 413 (OpenAI's limit, 25 MB, by default). The file is never held in memory: past its first 256 KiB it is
   * spooled to an unlinked temp file in GATEWAY_AUDIO_SPOOL_DIR while it streams to the engine.
   */
  GATEWAY_AUDIO_BODY_LIMIT: positiveInt.default(25 * 1024 * 1024),
  /** Where audio uploads are spooled (unlinked at once: nothing is left behind, even by a crash). Default: the OS temp dir. */
  GATEWAY_AUDIO_SPOOL_DIR: z.string().min(1).optional(),
  /**
   * A request whose body has not fully arrived this long after it began gets 408 and its connection closed.
   * Also bounds the time a refused request's body is read and dropped (so that the client, still uploading,
   * receives the answer rather than a reset), as twice GATEWAY_BODY_LIMIT bounds its bytes.
   */
  GATEWAY_BODY_TIMEOUT_MS: positiveInt.default(30_000),
  /** A connection that has not sent a request's complete headers this long after it began is answered 408 and closed. */
  GATEWAY_HEADERS_TIMEOUT_MS: positiveInt.default(10_000),
  /** How long an idle kept-alive client connection stays open (above a load balancer's idle timeout, 60 s on AWS). */
  GATEWAY_KEEP_ALIVE_TIMEOUT_MS: positiveInt.default(65_000),
  /**
   * Bytes of request bodies held in memory at once, over all requests being received: a request that would
   * go past it gets 503 server_overloaded with retry-after (a declared content-length is reserved up front).
   */
  GATEWAY_MAX_BODY_BYTES_IN_FLIGHT: positiveInt.default(256 * 1024 * 1024),
  /**
   * Gateway worker processes sharing GATEWAY_PORT (node:cluster): 1 runs the gateway in this process; `auto` (or 0)
   * runs one per core. Each worker has its own usage recorder over the shared USAGE_SPOOL_DIR; limits, revocations
   * and wake locks are in Redis already.
   */
  GATEWAY_PROCESSES: z
    .string()
    .regex(/^(?:auto|\d+)$/, 'expected a number of processes, or auto (or 0) for one per core')
    .default('1')
    .transform((v) => (v === 'auto' ? 0 : Number(v))),
  /** On SIGTERM, how long in-flight requests (streams included) may take before they are cut. */
  SHUTDOWN_GRACE_MS: positiveInt.default(25_000),
  /** After this long a verified key is re-checked in Postgres, behind the request; revocation is pushed, this is a safety net. */
  KEY_CACHE_TTL_MS: positiveInt.default(60_000),
  /** How long an unknown key is remembered as unknown (saves Postgres from floods of bad keys). */
  KEY_NEGATIVE_TTL_MS: positiveInt.default(2_000),
  KEY_CACHE_MAX: positiveInt.default(100_000),
  /** Upstream: connect and first-byte deadlines, in ms. */
  UPSTREAM_CONNECT_TIMEOUT_MS: positiveInt.default(5_000),
  UPSTREAM_HEADERS_TIMEOUT_MS: positiveInt.default(300_000),
  UPSTREAM_CONNECTIONS: positiveInt.default(256),
  /** Usage recorder: flush period, batch size, events held in memory before spilling to disk. */
  USAGE_FLUSH_MS: positiveInt.default(200),
  USAGE_BATCH_SIZE: positiveInt.default(500),
  USAGE_MEMORY_MAX: positiveInt.default(20_000),
  USAGE_SPOOL_DIR: z.string().min(1).default('.spool/usage'),
  /** Write-ahead journal of usage events (crash safety); `false` only where the spool dir cannot take a write per request. */
  USAGE_JOURNAL: z.enum(['true', 'false', '1', '0']).default('true').transform((v) => v === 'true' || v === '1'),
  /** A spool file or usage journal untouched this long belongs to a dead process and is replayed by another. */
  USAGE_SPOOL_STALE_MS: positiveInt.default(60_000),
  SIM_PORT: port.default(8090),

  // --- console: GitHub sign-in and sessions (issue 3) ---
  /** Without GITHUB_CLIENT_ID `npm start` runs the labelled local demo identity provider instead of GitHub. */
  GITHUB_CLIENT_ID: z.string().min(1).optional(),
  GITHUB_CLIENT_SECRET: z.string().min(1).optional(),
  GITHUB_AUTHORIZE_URL: url(['http:', 'https:']).default('https://github.com/login/oauth/authorize'),
  GITHUB_TOKEN_URL: url(['http:', 'https:']).default('https://github.com/login/oauth/access_token'),
  GITHUB_API_URL: url(['http:', 'https:']).default('https://api.github.com'),
  /** The console's URL as browsers see it: OAuth callback base, and https here turns on Secure cookies. */
  CONSOLE_PUBLIC_URL: url(['http:', 'https:']).default('http://localhost:8081'),
  /** The gateway's URL as SDKs see it (shown on the console's pages). */
  GATEWAY_PUBLIC_URL: url(['http:', 'https:']).default('http://localhost:8080'),
  SESSION_TTL_HOURS: positiveInt.default(24 * 7),
  /** Port of the demo identity provider `npm start` runs when no GitHub credentials are set. */
  DEMO_IDP_PORT: port.default(8082),

  // --- usage rollups, Stripe billing (issue 4) ---
  /** Without it billing sync is off (usage and bills still work). */
  STRIPE_SECRET_KEY: z.string().min(1).optional(),
  STRIPE_WEBHOOK_SECRET: z.string().min(1).optional(),
  /** Points the stripe SDK at another host (tests, stripe-mock), e.g. http://127.0.0.1:12111. */
  STRIPE_API_BASE: url(['http:', 'https:']).optional(),
  /** Deadline of one Stripe API call; a call past it is retried (same identifier and Idempotency-Key). */
  STRIPE_TIMEOUT_MS: positiveInt.default(10_000),
  /** An org past due for longer than this gets 402-style insufficient_quota at the gateway. */
  BILLING_PAST_DUE_GRACE_HOURS: z.coerce.number().nonnegative().default(72),
  /** HTTP status of the gateway's insufficient_quota answer to an org blocked for billing (402, or 429 as OpenAI does). */
  BILLING_BLOCK_STATUS: z.enum(['402', '429']).default('402').transform(Number),
  /**
   * Raw usage_events older than this (and rolled up) are deleted; rollups are kept. At least 32: the
   * gateway reads the month-to-date spend of a budgeted org from the events. usage_events is partitioned by UTC
   * day: a day's partition is dropped once the whole day is past this (so raw events live up to one day longer).
   */
  USAGE_RETENTION_DAYS: z.coerce.number().int().min(32).default(35),
  /**
   * The worker keeps usage_events partitions for today and this many days ahead (checked hourly). Rows of a day
   * without a partition land in the default partition and are moved into their day's when it is created.
   */
  USAGE_PARTITION_DAYS_AHEAD: z.coerce.number().int().min(1).max(90).default(7),
  USAGE_ROLLUP_EVERY_MS: positiveInt.default(60_000),
  /** Stored Responses (`store: true`, POST /v1/responses) are kept this many days, then 404 and deleted. */
  RESPONSES_RETENTION_DAYS: positiveInt.default(30),
  BILLING_SYNC_EVERY_MS: positiveInt.default(60_000),
  /** Port of the worker's Prometheus endpoint (`GET /metrics`: billing sync's failing orgs...); unset = none. */
  WORKER_METRICS_PORT: port.optional(),
  WORKER_METRICS_HOST: z.string().min(1).default('0.0.0.0'),

  // --- tiers: health, failover, wake (issue 5) ---
  /** Bearer token for the gateway's /admin routes; unset = those routes answer 404. */
  ADMIN_TOKEN: z.string().min(16).optional(),
  /** Bearer token the gateway's /metrics asks for; unset = /metrics is open (keep it off the public network). */
  METRICS_TOKEN: z.string().min(16).optional(),
  HEALTH_CHECK_INTERVAL_MS: positiveInt.default(5_000),
  /** Consecutive failures that open an endpoint's circuit, and how long before a half-open probe. */
  BREAKER_FAILURES: positiveInt.default(3),
  BREAKER_COOLDOWN_MS: positiveInt.default(5_000),
  /** Total time a request may spend on retries and waiting for a tier before the client gets an error. */
  ROUTE_DEADLINE_MS: positiveInt.default(60_000),
  /** A request body that failed two engines after being sent to them is refused (502) for this long, in seconds. */
  POISON_TTL_S: positiveInt.default(300),
  /**
   * Continuations of a stream whose engine failed after bytes reached the client (the stream goes on on another
   * replica or tier, the delivered text re-sent as the assistant prefix), at most this many per request; 0 = never
   * (such a stream ends with an error frame).
   */
  STREAM_CONTINUATIONS: z.coerce.number().int().min(0).max(10).default(2),
  /**
   * A stream under way whose engine sent no byte for this long is taken for a lost engine and continued elsewhere
   * (only streams that can be continued; the others wait for UPSTREAM_HEADERS_TIMEOUT_MS as before).
   */
  STREAM_STALL_MS: positiveInt.default(10_000),
  /** Requests held per tier while it wakes; more get 503 at once. */
  WAKE_QUEUE_MAX: positiveInt.default(1_000),
  TIER_IDLE_CHECK_MS: positiveInt.default(10_000),

  // --- traces: OpenTelemetry's own variables (issue 14). Tracing is off, and its SDK never loaded, unless an
  // OTLP endpoint is set; see libs/telemetry ---
  /** The collector's OTLP/HTTP base URL (traces go to `<it>/v1/traces`), e.g. http://otel-collector:4318. */
  OTEL_EXPORTER_OTLP_ENDPOINT: url(['http:', 'https:']).optional(),
  /** The traces URL itself (used as it is, wins over OTEL_EXPORTER_OTLP_ENDPOINT). */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: url(['http:', 'https:']).optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.default('http/protobuf'),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.optional(),
  /** Headers of every export request (`authorization=Bearer%20xyz,...`): a secret, never printed. */
  OTEL_EXPORTER_OTLP_HEADERS: keyValueList.optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValueList.optional(),
  /** Deadline of one export request, in ms. */
  OTEL_EXPORTER_OTLP_TIMEOUT: positiveInt.default(10_000),
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: positiveInt.optional(),
  /** `true` turns tracing off whatever the endpoint. */
  OTEL_SDK_DISABLED: flag.default(false),
  /** `none` turns tracing off; `otlp` (the default) is the one exporter. */
  OTEL_TRACES_EXPORTER: z.enum(['otlp', 'none']).default('otlp'),
  /** Defaults to spotinference-gateway / spotinference-worker. */
  OTEL_SERVICE_NAME: z.string().min(1).optional(),
  /** More resource attributes, `deployment.environment.name=prod,k8s.pod.name=...`. */
  OTEL_RESOURCE_ATTRIBUTES: keyValueList.optional(),
  OTEL_TRACES_SAMPLER: z
    .enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'])
    .default('parentbased_always_on'),
  /** The ratio of the traceidratio samplers, 0 to 1 (default 1). */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).optional(),
  /** Batch span processor: export period (ms), spans queued at most (more are dropped), spans per export request. */
  OTEL_BSP_SCHEDULE_DELAY: positiveInt.default(5_000),
  OTEL_BSP_MAX_QUEUE_SIZE: positiveInt.default(2_048),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: positiveInt.default(512),
  // --- Files and Batch API (issue 13) ---
  /** Largest file POST /v1/files takes, in bytes (streamed to Postgres; never held whole in memory). */
  FILES_MAX_BYTES: positiveInt.default(512 * 1024 * 1024),
  /**
   * An upload still `uploading` after this many seconds is one whose process died: the worker deletes it and its
   * chunks (a live upload of FILES_MAX_BYTES takes minutes, not hours).
   */
  FILES_STALE_UPLOAD_S: positiveInt.default(6 * 3_600),
  /** How often the worker deletes stale uploads. */
  FILES_CLEANUP_EVERY_MS: positiveInt.default(600_000),
  /** A batch whose input file is larger fails validation (OpenAI's 200 MB). */
  BATCH_MAX_INPUT_BYTES: positiveInt.default(200 * 1024 * 1024),
  /** A batch with more lines fails validation (OpenAI's 50,000). */
  BATCH_MAX_REQUESTS: positiveInt.default(50_000),
  /**
   * The gateway as the worker reaches it: each batch line is sent to its internal route (ADMIN_TOKEN), so that it
   * is routed, woken and failed over by the gateway's own code. Batches need ADMIN_TOKEN set on both.
   */
  GATEWAY_INTERNAL_URL: url(['http:', 'https:']).default('http://127.0.0.1:8080'),
  /** Batch lines one worker process has in flight at most. */
  BATCH_CONCURRENCY: positiveInt.default(16),
  /**
   * Batch work leaves interactive traffic room: no new line starts while every engine of the batch tiers reports
   * at least this many requests waiting (`vllm:num_requests_waiting`).
   */
  BATCH_MAX_WAITING: positiveInt.default(2),
  /** How often the worker reads the batch tiers' engine metrics. */
  BATCH_METRICS_EVERY_MS: positiveInt.default(500),
  /** Lines per chunk job on the batches queue. */
  BATCH_CHUNK_LINES: positiveInt.default(100),
  /** How often the worker looks for batches to validate, expire, cancel or finalize. */
  BATCH_SWEEP_MS: positiveInt.default(1_000),
  /** A chunk job whose worker died is taken up by another after this (BullMQ's lock). */
  BATCH_LOCK_MS: positiveInt.default(30_000),
  /** Test only: the length of a batch's completion window in seconds, in place of its `24h`. */
  BATCH_WINDOW_S: positiveInt.optional(),
});

/** Variables whose value a configuration error must not print. */
const SECRET_VARIABLES: ReadonlySet<string> = new Set(['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS']);

export type AppConfig = Readonly<z.infer<typeof configSchema>>;

/** Thrown when the environment does not fit {@link configSchema}; the message names every bad variable. */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
}

/**
 * Validates the environment once. Empty strings count as unset, so `FOO=` falls back to the default.
 * @throws ConfigError naming each offending variable and what it expected.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const input: Record<string, string> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? '?');
      const shown = SECRET_VARIABLES.has(name) ? '(value hidden)' : JSON.stringify(env[name] ?? '');
      return `  ${name}=${shown}: ${i.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return Object.freeze(parsed.data);
}
