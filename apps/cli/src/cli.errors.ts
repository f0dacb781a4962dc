/** The command line was wrong (unknown command or option, missing argument): usage goes to stderr, exit 2. */
export class UsageError extends Error {
  readonly code = 'usage';

  constructor(
    message: string,
    /** The command whose usage to print; null prints every command. */
    readonly command: string | null = null,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Postgres or Redis did not answer in time at startup; the message names which and where. */
export class ServiceUnreachableError extends Error {
  readonly code = 'service_unreachable';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ServiceUnreachableError';
  }
}
