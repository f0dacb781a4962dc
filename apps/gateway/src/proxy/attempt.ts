import type { Dispatcher } from 'undici';
import type { Candidate } from '../routing/upstream-pool';
import type { StreamRelay } from './protocol-adapter';

/** Where an attempt stands. */
export const enum AttemptPhase {
  /** Sent; no response head yet. */
  Waiting,
  /** A 2xx head arrived: its body is relayed. */
  Relaying,
  /** An error status arrived: its body is collected for the client's error. */
  ErrorBody,
  /** Its response ended or failed. */
  Over,
}

/** What an attempt reports to the request it serves (the exchange). */
export interface AttemptOwner {
  attemptStarted(attempt: Attempt): void;
  attemptHead(attempt: Attempt, status: number, headers: Record<string, string | string[] | undefined>): void;
  attemptData(attempt: Attempt, chunk: Buffer): void;
  attemptEnd(attempt: Attempt): void;
  attemptError(attempt: Attempt, err: Error): void;
}

const ERROR_BODY_MAX = 64 * 1024;

/**
 * One try of a request against one engine replica: the undici dispatch handler of that try, and everything that
 * belongs to it alone (the engine's status, the stream relay, an error body, a response held for the rate
 * limiter). Thrown away when the request moves on, so nothing is reset by hand; events of an attempt the request
 * has left are ignored by the owner.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null;
  phase = AttemptPhase.Waiting;
  status = 0;
  /** The stream relay (streams only). */
  readonly relay: StreamRelay | null;
  /** The last bytes of a non-streamed body, where its usage is. */
  tail: Buffer | null = null;
  /** Its first bytes, for the APIs that put usage first (see ProtocolAdapter.usageInHead). */
  head: Buffer | null = null;
  /** The whole non-streamed body, for a response to keep (see ResponseKeeper); null when not collected or over its bound. */
  body: Buffer[] | null = null;
  bodyBytes = 0;
  /** An error status's body, up to 64 KiB. */
  errorChunks: Buffer[] = [];
  errorBytes = 0;
  /** When the engine's bytes that release the client's head arrived. */
  upstreamAt = 0;
  /** When its first and its latest body bytes arrived (a stream's stall is measured from the latest). */
  firstDataAt = 0;
  lastDataAt = 0;
  /** A head (or error) that arrived while the rate limiter's verdict was pending. */
  heldHeaders: Record<string, string | string[] | undefined> | null = null;
  heldError: Error | null = null;

  constructor(
    private readonly owner: AttemptOwner,
    readonly candidate: Candidate,
    relay: StreamRelay | null,
  ) {
    this.relay = relay;
  }

  /** Aborts the engine request, if it is still running. */
  abort(err: Error): void {
    const c = this.controller;
    if (c !== null && !c.aborted) c.abort(err);
  }

  collectError(chunk: Buffer): void {
    if (this.errorBytes >= ERROR_BODY_MAX) return;
    this.errorChunks.push(chunk);
    this.errorBytes += chunk.length;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.owner.attemptStarted(this);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx informational
    this.status = statusCode;
    this.upstreamAt = performance.now();
    this.owner.attemptHead(this, statusCode, headers);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.owner.attemptData(this, chunk);
  }

  onResponseEnd(): void {
    this.candidate.endpoint.released();
    this.owner.attemptEnd(this);
    this.phase = AttemptPhase.Over;
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.candidate.endpoint.released();
    this.owner.attemptError(this, err);
    this.phase = AttemptPhase.Over;
  }
}
