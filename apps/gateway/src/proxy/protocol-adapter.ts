import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { ApiError } from '@spot/contract';
import type { ModelApi } from '@spot/tiers';
import type { AuthedKey } from '../auth/authed-key';
import type { CheckedRequest, ProxyKind } from './openai-request';
import type { StreamTranscript } from './stream-transcript';
import type { TokenUsage } from './token-usage';

/** The most bytes of a non-streamed body held to be completed (see {@link ProtocolAdapter.completeBody}). */
export const MAX_COMPLETED_BODY = 8 * 1024 * 1024;

/** Where a relay's bytes go: the client's socket, through the exchange (which corks and sends the head). */
export type RelayWrite = (bytes: Buffer) => void;

/**
 * The relay of one attempt's streamed response, in one protocol's framing: passes the engine's bytes on, takes
 * out what the client must not see, rewrites error frames into the protocol's envelope, and meters the usage
 * (the engine's report, else the content events relayed). Pure bytes in, bytes out; one per attempt.
 */
export interface StreamRelay {
  /** The usage the engine reported, or null so far. */
  readonly usage: TokenUsage | null;
  /** The engine ended the stream cleanly (its terminating event arrived). */
  readonly sawDone: boolean;
  /** The status of the last error frame (0: none). */
  readonly errorFrameStatus: number;
  /** Error frames seen (for metrics). */
  readonly errorFrames: number;
  /** Content events relayed: what a cut stream is billed from. */
  readonly contentEvents: number;
  /** Relays one read of the engine's body; an event cut at the end waits for the next read. */
  push(chunk: Buffer, write: RelayWrite): void;
  /** The engine's body ended: an unterminated last event goes out as it is. */
  end(write: RelayWrite): void;
  /** An engine's 5xx error frame held back (a stream that may be continued), and what followed it; null: none. */
  readonly held: readonly Buffer[] | null;
  /** The body ended short of its end and the stream is continued: an unterminated last event is dropped. */
  dropRest(): void;
  /** The stream is not continued after all: the held error frame and what followed go to the client. */
  releaseHeld(write: RelayWrite): void;
  /** A stateful protocol's final object as the client received it (the Responses API's Response), or null. */
  readonly final?: Record<string, unknown> | null;
}

/**
 * What differs per API between the client and the engine: reading the request (model, stream flag, token
 * estimate), the engine's path and body (usage always asked for), relaying its stream, reading the usage of a
 * whole body, and the protocol's error envelope. The request path (auth, limits, routing, attempts, failover,
 * usage events) is the same for all.
 */
export interface ProtocolAdapter {
  readonly kind: ProxyKind;
  /** The API a model must serve (its `apis:` in the tiers file) to be asked this. */
  readonly api: ModelApi;
  /** The API key the request presents, from its headers alone; throws the 401. */
  credential(headers: IncomingHttpHeaders): string;
  /** The engine's path for this API. */
  readonly upstreamPath: string;
  /** Checks the client's body (throws the 4xx to answer); nothing is serialised. */
  check(body: unknown, bodyBytes: number): CheckedRequest;
  /** The body sent to the engine, serialised once: the engine's model name, usage always asked for. */
  upstreamBody(req: CheckedRequest, upstreamModel: string): string;
  /** A fresh relay for one attempt's stream (`transcript`: keeps the delivered text of a stream that may be continued). */
  streamRelay(req: CheckedRequest, transcript: StreamTranscript | null): StreamRelay;
  /** How a stream of this protocol is continued on another engine (absent: it never is). */
  readonly continuation?: StreamContinuation;
  /** Whether a non-streamed body's usage may be at its start (then its first 16 KiB are kept too). */
  readonly usageInHead: boolean;
  /**
   * The usage of a non-streamed body from its last bytes (and its first, with {@link usageInHead}), or null. `req`
   * for a protocol whose engine may report none (audio translations: estimated from the upload).
   */
  usageFromBody(tail: string, head?: string | null, req?: CheckedRequest): TokenUsage | null;
  /**
   * A header of the protocol's own that carries our request id beside `x-request-id` on every answer, errors
   * included (Anthropic's `request-id`, which its SDKs expose as `_request_id`); absent: none.
   */
  readonly requestIdHeader?: string;
  /** An error of ours in the protocol's envelope. */
  errorBody(status: number, message: string, code: string | null): string;
  /** An error of ours (an {@link ApiError} thrown before or around the exchange) in the protocol's envelope. */
  renderError(err: ApiError): string;
  /** An engine's error body in the protocol's envelope, for the status the client gets. */
  engineError(status: number, raw: string): string;
  /** The event that ends a stream broken after bytes reached the client (never mistaken for a clean end). */
  midstreamErrorFrame(message: string, relay?: StreamRelay | null): Buffer;
  /**
   * Only for a protocol with state of ours (Responses): completes the checked request before any engine sees it
   * (previous turns read from Postgres); throws the 4xx to answer. Absent for the stateless protocols.
   */
  prepare?(req: CheckedRequest, key: AuthedKey): Promise<CheckedRequest>;
  /**
   * Only for a body that is not JSON (audio's multipart upload): the engine's content type and a fresh body for one
   * attempt, streamed (a retry replays it). Absent: {@link upstreamBody}'s JSON.
   */
  upload?(req: CheckedRequest, upstreamModel: string): { contentType: string; body: Readable };
  /**
   * Only for a protocol that completes the engine's answer (Responses: fields the engine leaves out): the whole
   * non-streamed 2xx body in, the client's out (renamed to the client's model too). The exchange then holds
   * the body until it ends, up to {@link MAX_COMPLETED_BODY} bytes (past them it goes out as the engine sent it).
   * Absent: the body is relayed as it arrives (only the model renamed, see `ModelRename`).
   */
  completeBody?(req: CheckedRequest, body: Buffer): Buffer;
  /** Only for a protocol with state of ours: what keeps this request's finished response, or null (absent: none). */
  keeper?(req: CheckedRequest, key: AuthedKey): ResponseKeeper | null;
}

/** What a continuation's relay needs to splice its stream into the client's. */
export interface Splice {
  /** Completion tokens the client received before this segment (each billed to the tier that generated it). */
  readonly priorTokens: number;
  /** The original prompt's tokens when an earlier segment's engine reported them; null: derived from this one's. */
  readonly prompt: number | null;
}

/**
 * A protocol's continuation of a stream whose engine failed after bytes reached the client: the request that
 * resumes it from the delivered text on another engine, and the relay that splices that engine's stream into the
 * client's, so that the client sees one stream.
 */
export interface StreamContinuation {
  /** The engine's path a continuation is sent to, when not the protocol's own (Messages: chat completions). */
  readonly upstreamPath?: string;
  /** A transcript for a stream that may be continued, or null when it never may (n > 1, logprobs...). */
  transcript(req: CheckedRequest): StreamTranscript | null;
  /** The engine body that resumes the stream after `transcript`; null when nothing is left to generate. */
  body(req: CheckedRequest, upstreamModel: string, transcript: StreamTranscript): string | null;
  /** The relay of the continuation's stream (null: the delivered stream gave nothing to splice onto). */
  relay(req: CheckedRequest, transcript: StreamTranscript, splice: Splice): StreamRelay | null;
  /**
   * The gateway's own end of the client's stream when nothing is left to generate (null: cannot be written). A
   * stateful protocol leaves the final object it wrote in the transcript's `final` (kept like a relay's).
   */
  closing(req: CheckedRequest, transcript: StreamTranscript, usage: { prompt: number; completion: number }): Buffer | null;
}

/** What holds the final object of a stream that ended cleanly (see {@link ResponseKeeper.keep}). */
export interface KeptStream {
  readonly final?: Record<string, unknown> | null;
}

/**
 * Keeps a response that ended cleanly (the Responses API's stored state). Called after the client's last byte
 * left; it must not block or throw: a failure is its own to log and count.
 */
export interface ResponseKeeper {
  /** Bytes of a non-streamed body collected at most; a larger body is not kept ({@link tooLarge}). */
  readonly maxBodyBytes: number;
  /**
   * The response ended cleanly: the whole non-streamed body, or what holds a stream's final object (its relay, or
   * the transcript of a continued stream the gateway ended itself).
   */
  keep(requestId: string, body: Buffer | KeptStream): void;
  /** The non-streamed body went past {@link maxBodyBytes}: it is not kept. */
  tooLarge(requestId: string): void;
}
