import type { INestApplicationContext } from '@nestjs/common';

/** Where the CLI writes: process.stdout/stderr in main.ts, buffers in tests. */
export interface CliOutput {
  write(chunk: string): unknown;
}

export interface CliIo {
  stdout: CliOutput;
  stderr: CliOutput;
}

/** What node:util parseArgs gave back for one command. */
export interface CommandArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** What a command may use once its arguments are valid and Postgres and Redis answered. */
export interface CommandContext {
  app: INestApplicationContext;
  /** Writes one line to stdout. */
  print(line: string): void;
}

/** The work of a command whose arguments were checked. */
export type CommandRun = (ctx: CommandContext) => Promise<void>;

/**
 * One `<group> <action>` command. `prepare` validates the arguments before anything connects anywhere
 * (bad input fails fast and offline) and returns the work to do.
 */
export interface CliCommand {
  /** `org create`, `key revoke`... */
  readonly name: string;
  /** One-line usage, after the program name. */
  readonly synopsis: string;
  readonly summary: string;
  readonly options: Readonly<Record<string, { type: 'string' }>>;
  /** Names of the positional arguments, all required. */
  readonly positionals: readonly string[];
  prepare(args: CommandArgs): CommandRun;
}

/** A string option's value, or undefined when absent. */
export function stringOption(args: CommandArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}
