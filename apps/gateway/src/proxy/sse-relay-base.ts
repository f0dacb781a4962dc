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
  private carry: Buffer | null = null;

  abstract push(chunk: Buffer, write: RelayWrite): void;

  /** The engine's body ended: an unterminated last event goes out as it is. */
  end(write: RelayWrite): void {
    if (this.carry === null) return;
    write(this.carry);
    this.carry = null;
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
