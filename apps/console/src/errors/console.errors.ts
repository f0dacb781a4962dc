/** An error the console answers with a stable `code` and HTTP status; the message is safe to show. */
export class ConsoleError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export const notSignedIn = () => new ConsoleError(401, 'unauthenticated', 'Sign in first.');
export const notFound = (what = 'Not found.') => new ConsoleError(404, 'not_found', what);
export const forbidden = (message: string) => new ConsoleError(403, 'forbidden', message);
export const invalid = (param: string, problem: string) => new ConsoleError(400, 'invalid_request', `${param}: ${problem}`, param);
export const conflict = (message: string, code = 'conflict') => new ConsoleError(409, code, message);
