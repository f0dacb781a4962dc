import { parseArgs } from 'node:util';
import { ConsoleLogger, type INestApplicationContext, type LoggerService, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BillingDisabledError, BillingError } from '@spot/billing';
import { APP_CONFIG, ConfigError, loadConfig, type AppConfig } from '@spot/config';
import { PrismaService } from '@spot/db';
import { KeysError } from '@spot/keys';
import { REDIS } from '@spot/redis';
import { TiersFileError } from '@spot/tiers';
import type { Redis } from 'ioredis';
import { batchCancelCommand } from './batches/batch-cancel.command';
import { batchListCommand } from './batches/batch-list.command';
import { BatchNotCancellableError, BatchNotFoundError } from './batches/batches.errors';
import { ServiceUnreachableError, UsageError } from './cli.errors';
import { CliModule } from './cli.module';
import type { CliCommand, CliIo, CommandArgs, CommandRun } from './command';
import { assertReachable } from './infra/connectivity';
import { keyCreateCommand } from './keys/key-create.command';
import { keyRevokeCommand } from './keys/key-revoke.command';
import { orgCreateCommand } from './orgs/org-create.command';
import { usageRollupCommand } from './usage/usage-rollup.command';
import { billingEnableCommand } from './billing/billing-enable.command';
import { billingSyncCommand } from './billing/billing-sync.command';
import { OrgNotFoundError, OrgSlugTakenError } from './orgs/orgs.errors';
import { tierPreemptCommand } from './tiers/tier-preempt.command';
import { tierResumeCommand } from './tiers/tier-resume.command';
import { TierNotFoundError } from './tiers/tiers.errors';

export type { CliIo, CliOutput } from './command';

/** Exit statuses: 0 done, 1 the command failed, 2 the command line was wrong (usage or invalid argument). */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const PROGRAM = 'npm run cli --';
const COMMANDS: readonly CliCommand[] = [
  orgCreateCommand,
  keyCreateCommand,
  keyRevokeCommand,
  usageRollupCommand,
  billingEnableCommand,
  billingSyncCommand,
  tierPreemptCommand,
  tierResumeCommand,
  batchListCommand,
  batchCancelCommand,
];
const CLOSE_TIMEOUT_MS = 3_000;

function usage(commands: readonly CliCommand[] = COMMANDS): string {
  const lines = [`Usage: ${PROGRAM} <command> [options]`, '', 'Commands:'];
  for (const c of commands) lines.push(`  ${c.synopsis}`, `      ${c.summary}`);
  lines.push('', 'Configuration comes from the environment (DATABASE_URL, REDIS_URL, REDIS_PREFIX, LOG_LEVEL).');
  return `${lines.join('\n')}\n`;
}

function findCommand(argv: readonly string[]): { command: CliCommand; rest: string[] } | UsageError {
  const [group, action] = argv;
  const inGroup = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  if (inGroup.length === 0) return new UsageError(`unknown command ${JSON.stringify(group)}`);
  const command = inGroup.find((c) => c.name === `${group} ${action}`);
  if (!command) {
    const actions = inGroup.map((c) => c.name.split(' ')[1]).join(', ');
    const what = action === undefined || action.startsWith('-') ? 'missing' : `unknown: ${JSON.stringify(action)}`;
    return new UsageError(`${group}: expected one of ${actions} (${what})`, group);
  }
  return { command, rest: argv.slice(2) };
}

function parseCommandArgs(command: CliCommand, rest: string[]): CommandArgs | 'help' {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(describeParseError(err), command.name);
  }
  if (parsed.values.help === true) return 'help';
  const { positionals } = parsed;
  if (positionals.length < command.positionals.length) {
    throw new UsageError(`missing <${command.positionals[positionals.length]}>`, command.name);
  }
  if (positionals.length > command.positionals.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[command.positionals.length])}`, command.name);
  }
  // No option is declared `multiple`, so no value is an array.
  return { values: parsed.values as CommandArgs['values'], positionals };
}

/** node:util's messages are long and mention `--` tricks; keep the part that names the option. */
function describeParseError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option ?? message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return option ? `${option} expects a value` : message;
    default:
      return message.split('\n')[0];
  }
}

/** Nest's console logger, on stderr: stdout belongs to the command's output. */
class StderrLogger extends ConsoleLogger {
  protected override printMessages(
    messages: unknown[],
    context?: string,
    logLevel?: LogLevel,
    _writeStreamType?: 'stdout' | 'stderr',
    errorStack?: unknown,
    params?: Record<string, unknown>,
  ): void {
    super.printMessages(messages, context, logLevel, 'stderr', errorStack, params);
  }
}

function isDebug(config: AppConfig | null): boolean {
  return config?.LOG_LEVEL === 'debug' || config?.LOG_LEVEL === 'trace';
}

function loggerFor(config: AppConfig): LoggerService | false {
  return isDebug(config) ? new StderrLogger({ logLevels: ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'] }) : false;
}

/** The exit status of an error, and whether it is one we expected (then its message is enough). */
function classify(err: unknown): { status: number; expected: boolean } {
  if (err instanceof UsageError) return { status: EXIT_USAGE, expected: true };
  if (err instanceof KeysError) return { status: err.code === 'invalid_argument' ? EXIT_USAGE : EXIT_FAILURE, expected: true };
  if (
    err instanceof ConfigError ||
    err instanceof OrgSlugTakenError ||
    err instanceof OrgNotFoundError ||
    err instanceof ServiceUnreachableError ||
    err instanceof BillingError ||
    err instanceof BillingDisabledError ||
    err instanceof TierNotFoundError ||
    err instanceof BatchNotFoundError ||
    err instanceof BatchNotCancellableError ||
    err instanceof TiersFileError
  ) {
    return { status: EXIT_FAILURE, expected: true };
  }
  return { status: EXIT_FAILURE, expected: false };
}

async function closeQuietly(app: INestApplicationContext, redis: Redis | null): Promise<void> {
  // A client still trying to connect would wait for Redis to come back before QUIT; drop it instead.
  if (redis && redis.status !== 'ready') redis.disconnect();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    app.close(),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Runs one CLI command. Never throws: errors become one line on stderr and an exit status
 * ({@link EXIT_FAILURE}, or {@link EXIT_USAGE} for a wrong command line; stacks only with LOG_LEVEL=debug).
 * Opens a Nest application context (config, Postgres, Redis) only for a valid command line, and closes it.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const err = (line: string) => io.stderr.write(`${line}\n`);
  let config: AppConfig | null = null;
  let app: INestApplicationContext | null = null;
  let redis: Redis | null = null;
  try {
    if (argv.length === 0 || ['--help', '-h', 'help'].includes(argv[0])) {
      io.stderr.write(usage());
      return EXIT_USAGE;
    }
    const found = findCommand(argv);
    if (found instanceof UsageError) throw found;
    const { command, rest } = found;
    const args = parseCommandArgs(command, rest);
    if (args === 'help') {
      io.stderr.write(usage([command]));
      return EXIT_USAGE;
    }
    const run: CommandRun = command.prepare(args);

    config = loadConfig();
    app = await NestFactory.createApplicationContext(CliModule, { logger: loggerFor(config), abortOnError: false });
    let lastRedisError: Error | null = null;
    const client = app.get<Redis>(REDIS);
    redis = client;
    client.on('error', (e: Error) => {
      lastRedisError = e;
    });
    const appConfig = app.get<AppConfig>(APP_CONFIG);
    await assertReachable({
      prisma: app.get(PrismaService),
      databaseUrl: appConfig.DATABASE_URL,
      redis: client,
      redisUrl: appConfig.REDIS_URL,
      lastRedisError: () => lastRedisError,
    });

    await run({ app, print: (line) => io.stdout.write(`${line}\n`) });
    return EXIT_OK;
  } catch (e) {
    const { status, expected } = classify(e);
    const message = e instanceof Error ? e.message : String(e);
    err(`error: ${message}`);
    if (e instanceof UsageError) {
      if (e.command === null) io.stderr.write(`\n${usage()}`);
      else for (const c of COMMANDS.filter((c) => c.name.startsWith(e.command ?? ''))) err(`usage: ${PROGRAM} ${c.synopsis}`);
    }
    if (isDebug(config) && e instanceof Error && e.stack) err(e.stack);
    else if (!expected) err('(set LOG_LEVEL=debug for details)');
    return status;
  } finally {
    if (app) await closeQuietly(app, redis);
  }
}
