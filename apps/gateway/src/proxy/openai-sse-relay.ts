import { classifyFrame, ERROR_KEY, eventEnd, FrameKind, parseFrame, rewriteErrorFrame, USAGE_KEY, USAGE_NULL_KEY, usageNullSpan } from './sse-frames';
import type { RelayWrite } from './protocol-adapter';
import { SseRelayBase } from './sse-relay-base';
import type { StreamTranscript } from './stream-transcript';
import { usageFromObject } from './token-usage';

/**
 * The relay of one engine attempt's OpenAI SSE stream (chat and completions): splits the engine's bytes into
 * events and passes them on untouched, except what the client must not see: the usage chunk when it did not
 * ask for usage (read, then dropped), `"usage":null` members then, and error frames (rewritten into OpenAI's
 * envelope). Pure bytes in, bytes out: one per attempt, thrown away when the attempt is.
 */
export class OpenAISseRelay extends SseRelayBase {
  // usage: the engine's usage chunk; sawDone: `data: [DONE]`; contentEvents: role chunks and usage chunks with
  // choices included
  constructor(
    private readonly clientWantsUsage: boolean,
    /** Keeps the delivered text of a stream that may be continued (null: one that never is). */
    private readonly transcript: StreamTranscript | null = null,
  ) {
    super();
  }

  /** Relays one read of the engine's body; an event cut at the end waits for the next read. */
  push(chunk: Buffer, out: RelayWrite): void {
    const buf = this.joined(chunk);
    // after a held error frame, nothing more reaches the client unless it is released
    let write = this.held === null ? out : this.hold;
    const t = this.transcript;
    let flushFrom = 0;
    let eventStart = 0;
    // each key is searched once per read, not once per event (most reads have neither)
    let usageAt = buf.indexOf(USAGE_KEY);
    let errorAt = buf.indexOf(ERROR_KEY);
    // one memmem per read, only for clients that did not ask for usage (their chunks must carry no usage key)
    let nullAt = this.clientWantsUsage ? -1 : buf.indexOf(USAGE_NULL_KEY);
    let sep: number;
    while ((sep = eventEnd(buf, eventStart)) !== -1) {
      const next = sep + 2;
      const kind = classifyFrame(buf, eventStart, sep, usageAt, errorAt);
      if (kind === FrameKind.Content) {
        this.contentEvents++;
        if (t !== null && this.held === null) t.take(buf, eventStart, sep);
        while (nullAt >= eventStart && nullAt < sep) {
          const span = usageNullSpan(buf, eventStart, sep, nullAt);
          if (span !== null) {
            if (span.from > flushFrom) write(buf.subarray(flushFrom, span.from));
            flushFrom = span.to;
          }
          nullAt = buf.indexOf(USAGE_NULL_KEY, nullAt + USAGE_NULL_KEY.length);
        }
      } else if (kind === FrameKind.Done) {
        this.sawDone = true;
      } else if (kind === FrameKind.Usage) {
        const payload = parseFrame(buf, eventStart, sep);
        const usage = usageFromObject(payload?.usage);
        if (usage !== null) this.usage = usage;
        const hasChoices = Array.isArray(payload?.choices) && (payload.choices as unknown[]).length > 0;
        if (hasChoices) this.contentEvents++;
        if (!this.clientWantsUsage && !hasChoices) {
          if (eventStart > flushFrom) write(buf.subarray(flushFrom, eventStart));
          flushFrom = next;
        }
      } else if (kind === FrameKind.Error) {
        const { frame, status } = rewriteErrorFrame(buf, eventStart, sep);
        this.errorFrameStatus = status;
        this.errorFrames++;
        if (eventStart > flushFrom) write(buf.subarray(flushFrom, eventStart));
        if (t !== null && t.honest && status >= 500 && this.held === null) {
          // the stream may go on on another engine: the frame and what follows wait for the exchange's decision
          this.held = [];
          write = this.hold;
        }
        write(frame);
        flushFrom = next;
      }
      if (usageAt >= 0 && usageAt < next) usageAt = buf.indexOf(USAGE_KEY, next);
      if (errorAt >= 0 && errorAt < next) errorAt = buf.indexOf(ERROR_KEY, next);
      if (nullAt >= 0 && nullAt < next) nullAt = buf.indexOf(USAGE_NULL_KEY, next);
      eventStart = next;
    }
    if (eventStart > flushFrom) write(buf.subarray(flushFrom, eventStart));
    this.keepRest(buf, eventStart);
  }
}
