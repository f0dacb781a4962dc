/** The endpoints a fault can target. */
export type FakeGitHubEndpoint = 'authorize' | 'token' | 'user' | 'emails';

/**
 * A one-shot fault: the first request to a matching endpoint takes it off the queue.
 * - `error`: answer with `status` (500 by default) instead of the real answer.
 * - `slow`: hold the request `delayMs` before answering it normally.
 * - `drop`: destroy the connection without answering.
 */
export type FakeGitHubFault =
  | { kind: 'error'; endpoint: FakeGitHubEndpoint; status?: number }
  | { kind: 'slow'; endpoint: FakeGitHubEndpoint | 'any'; delayMs: number }
  | { kind: 'drop'; endpoint: FakeGitHubEndpoint };

/** Faults queued for the next requests, in order. */
export interface FakeGitHubFaults {
  /** Queues faults; each is used once, by the first request it matches. */
  enqueue(...faults: FakeGitHubFault[]): void;
  /** The next POST /login/oauth/access_token answers `status` (500). */
  tokenError(status?: number): void;
  /** The next GET /user answers `status` (500). */
  userError(status?: number): void;
  /** The next request to `endpoint` (any endpoint by default) is held `delayMs` first. */
  slow(delayMs: number, endpoint?: FakeGitHubEndpoint | 'any'): void;
  /** Faults not used yet. */
  readonly pending: readonly FakeGitHubFault[];
  clear(): void;
}

export class FaultQueue implements FakeGitHubFaults {
  private readonly queue: FakeGitHubFault[] = [];

  get pending(): readonly FakeGitHubFault[] {
    return [...this.queue];
  }

  enqueue(...faults: FakeGitHubFault[]): void {
    this.queue.push(...faults);
  }

  tokenError(status = 500): void {
    this.enqueue({ kind: 'error', endpoint: 'token', status });
  }

  userError(status = 500): void {
    this.enqueue({ kind: 'error', endpoint: 'user', status });
  }

  slow(delayMs: number, endpoint: FakeGitHubEndpoint | 'any' = 'any'): void {
    this.enqueue({ kind: 'slow', endpoint, delayMs });
  }

  clear(): void {
    this.queue.length = 0;
  }

  /** Takes the first fault aimed at this endpoint off the queue. */
  take(endpoint: FakeGitHubEndpoint): FakeGitHubFault | undefined {
    const i = this.queue.findIndex((f) => f.endpoint === endpoint || f.endpoint === 'any');
    if (i < 0) return undefined;
    return this.queue.splice(i, 1)[0];
  }
}
