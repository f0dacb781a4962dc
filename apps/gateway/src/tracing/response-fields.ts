/** What a finished response says about itself, for its span (gen_ai.response.*). */
export interface ResponseFieldValues {
  readonly id: string | null;
  readonly model: string | null;
  readonly finishReasons: readonly string[];
}

const ID = Buffer.from('"id":"');
const MODEL = Buffer.from('"model":"');
/**
 * Where a protocol names why generation stopped: OpenAI's choices (vLLM adds a `stop_reason` beside it, the
 * matched stop string or token: not a finish reason), Anthropic's message_delta. A `null` (every chunk but the
 * last) has no quote: never matched.
 */
export const FINISH_REASON = Buffer.from('"finish_reason":"');
export const STOP_REASON = Buffer.from('"stop_reason":"');
/** Bytes of the last read searched again with the next one: a key (and short value) cut between two reads. */
const CARRY = 96;
/** The id and model are near the start: past this many bytes they are no longer looked for. */
const HEAD_BYTES = 64 * 1024;
const REASONS_MAX = 128;

/**
 * Picks the response's id, model and finish reasons out of an engine's body as it streams by (the first `"id"` and
 * `"model"` of the body, every finish key with a value), without parsing it: a few
 * memmem searches a read. Only made while tracing is on. A key cut between two reads is found through a
 * short carry of the previous read; a value longer than that carry, cut the same way, is missed.
 */
export class ResponseFields implements ResponseFieldValues {
  id: string | null = null;
  model: string | null = null;
  readonly finishReasons: string[] = [];
  private seen = 0;
  private carry: Buffer | null = null;

  /** `finishKey`: {@link FINISH_REASON} or {@link STOP_REASON}. */
  constructor(private readonly finishKey: Buffer = FINISH_REASON) {}

  push(chunk: Buffer): void {
    const carry = this.carry;
    if (carry !== null) {
      // matches that begin in the carry: searched in the carry and the start of this read only
      const edge = Buffer.concat([carry, chunk.subarray(0, CARRY)]);
      this.scan(edge, carry.length);
    }
    this.scan(chunk, 0);
    this.seen += chunk.length;
    this.carry = chunk.length >= CARRY ? chunk.subarray(chunk.length - CARRY) : Buffer.concat(carry === null ? [chunk] : [carry, chunk]).subarray(-CARRY);
  }

  /**
   * Searches `buf`; with `before > 0` (the carry joined to the start of a read), only matches that start
   * before `before` and were not complete in it: those found whole in the previous read were taken then.
   */
  private scan(buf: Buffer, before: number): void {
    const edge = before > 0;
    if (this.seen < HEAD_BYTES) {
      if (this.id === null) this.id = first(buf, ID, edge, before);
      if (this.model === null) this.model = first(buf, MODEL, edge, before);
    }
    const key = this.finishKey;
    let at = buf.indexOf(key);
    while (at >= 0 && this.finishReasons.length < REASONS_MAX) {
      if (edge && at >= before) break;
      const value = valueAt(buf, at + key.length);
      if (value !== null && (!edge || value.end >= before)) this.finishReasons.push(value.text);
      at = buf.indexOf(key, at + key.length);
    }
  }
}

function first(buf: Buffer, key: Buffer, edge: boolean, before: number): string | null {
  const at = buf.indexOf(key);
  if (at < 0 || (edge && at >= before)) return null;
  const value = valueAt(buf, at + key.length);
  if (value === null || (edge && value.end < before)) return null;
  return value.text;
}

/** The JSON string value starting at `from` (after its opening quote) up to its closing quote, or null when cut. */
function valueAt(buf: Buffer, from: number): { text: string; end: number } | null {
  let i = from;
  for (;;) {
    i = buf.indexOf(34 /* " */, i);
    if (i < 0) return null;
    if (buf[i - 1] !== 92 /* \ */) break;
    i++;
  }
  if (i - from > 256) return null; // not an id, model or reason
  return { text: buf.toString('utf8', from, i), end: i };
}
