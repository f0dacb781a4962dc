import type { UsageEvent } from '@spot/usage';
import type { Dispatcher } from 'undici';
import type { Candidate } from '../routing/upstream-pool';
import type { StreamRelay } from '../proxy/protocol-adapter';

/** An engine request's dispatch handler (an Attempt): its relay tells whether a stream ended cleanly. */
export type AttemptHandler = Dispatcher.DispatchHandler & { readonly relay: StreamRelay | null };

/** What an engine request is, for its span: a first try or retry, or the continuation of a stream cut mid-way. */
export type AttemptRole = 'attempt' | 'continuation';

/**
 * The hooks a {@link ProxyExchange} calls on its request's trace (which exists only while tracing is on: the
 * exchange holds null otherwise, and pays one null check a hook).
 */
export interface ExchangeTrace {
  /**
   * An engine request is about to be dispatched: opens its span (a child of the request's model-call span) and
   * writes its W3C `traceparent` into `headers`. Returns the handler to dispatch with: `handler` wrapped, so that
   * the span sees the response's status, the fields of its body and its end.
   */
  attempt(handler: AttemptHandler, candidate: Candidate, headers: Record<string, string>, role?: AttemptRole): Dispatcher.DispatchHandler;
  /** The request waits for a sleeping tier to wake: a span until `waking` settles. Returns `waking`. */
  wake<T>(waking: Promise<T>): Promise<T>;
  /** The request's usage event (tokens, tier) as recorded. */
  usage(event: UsageEvent): void;
  /** The exchange ended with `status` (what the client got, 499 when it left). */
  finished(status: number): void;
}
