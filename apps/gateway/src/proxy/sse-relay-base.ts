import type { RelayWrite, StreamRelay } from './protocol-adapter';
import type { TokenUsage } from './token-usage';

/**
 * What every protocol's stream relay shares: the usage meter's fields and the event cut at the end of a read,
 * joined to the next read (or passed on as it is when the engine's body ends).
 */
export abstract class SseRelayBase implements StreamRelay {
  usage: TokenUsage | null = null;
  sawDone = false;
  errorFrameStatus = 0;
  errorFrames = 0;
  contentEvents = 0;
  /**
   * An engine's 5xx error frame held back from the client, with everything the engine sent after it, while the
   * stream may still be continued on another engine (see {@link holdsErrors}); null when none was held.
   */
  held: Buffer[] | null = null;
  private carry: Buffer | null = null;
  /** Collects what follows a held error frame (copied: the engine's buffers are not ours to keep). */
  protected readonly hold: RelayWrite = (bytes) => this.held!.push(Buffer.from(bytes));

  abstract push(chunk: Buffer, write: RelayWrite): void;

  /** The engine's body ended: an unterminated last event goes out as it is. */
  end(write: RelayWrite): void {
    if (this.carry === null) return;
    if (this.held !== null) this.hold(this.carry);
    else write(this.carry);
    this.carry = null;
  }

  /** The engine's body ended short of its end: an unterminated last event is dropped (a continuation follows). */
  dropRest(): void {
    this.carry = null;
  }

  /** The held error frame and what followed it go to the client after all (the stream is not continued). */
  releaseHeld(write: RelayWrite): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    for (const b of held) write(b);
  }

  /** This read, after what the last one left unfinished. */
  protected joined(chunk: Buffer): Buffer {
    const carry = this.carry;
    if (carry === null) return chunk;
    this.carry = null;
    return Buffer.concat([carry, chunk]);
  }

  /** Keeps `buf` from `from` on (an event not finished yet) for the next read. */
  protected keepRest(buf: Buffer, from: number): void {
    if (from < buf.length) this.carry = buf.subarray(from);
  }
}
