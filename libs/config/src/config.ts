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

/** The one configuration schema of every app. Read once at boot by {@link loadConfig}. */
export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: url(['postgresql:', 'postgres:']).default('postgresql://postgres@127.0.0.1:5432/spotinference'),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  /** Prefix of every Redis key and pub/sub channel, so several stacks (or test files) can share one Redis. */
  REDIS_PREFIX: z.string().min(1).default('spot:'),
  GATEWAY_HOST: z.string().min(1).default('0.0.0.0'),
  GATEWAY_PORT: port.default(8080),
  CONSOLE_HOST: z.string().min(1).default('0.0.0.0'),
  CONSOLE_PORT: port.default(8081),
  TIERS_FILE: z.string().min(1).default('tiers.yaml'),
  /** Largest request body the gateway accepts, in bytes; bigger ones get 413. */
  GATEWAY_BODY_LIMIT: positiveInt.default(8 * 1024 * 1024),
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
  SIM_PORT: port.default(8090),
});

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
      return `  ${name}=${JSON.stringify(env[name] ?? '')}: ${i.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return Object.freeze(parsed.data);
}
