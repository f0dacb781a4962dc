/** What the text of a chat or completions chunk is under. */
export const enum TextField {
  /** Chat: `"delta":{"content":"..."}` (after the role, in a role chunk). */
  Delta,
  /** Completions: `"text":"..."`. */
  Text,
  /** Responses: an `output_text.delta` event's `"delta":"..."` (the event's type says when the text is done). */
  EventDelta,
  /** Anthropic Messages: a `text_delta`'s `"text":"..."` (the message's events say when it is done). */
  EventText,
}

const DELTA_KEY = Buffer.from('"delta":{');
const TEXT_KEY = Buffer.from('"text":"');
const EVENT_DELTA_KEY = Buffer.from('"delta":"');
const ROLE = Buffer.from('"role":"assistant"');
const CONTENT = Buffer.from('"content":"');
const FINISH = Buffer.from('"finish_reason":');

/** A byte loop: for these few bytes cheaper than a call into native code. */
function startsWith(buf: Buffer, at: number, end: number, s: Buffer): boolean {
  if (at + s.length > end) return false;
  for (let i = 0; i < s.length; i++) if (buf[at + i] !== s[i]) return false;
  return true;
}

/**
 * The text a stream delivered to its client (one choice), kept as the relay passes content chunks on, so that the
 * stream can be continued on another engine from there. Cheap by design, with no call into native code per chunk:
 * the text's key sits at the same offset in every chunk of a stream (same id, created, model, index 0), so it is
 * found once and then checked in place; the text is copied as its escaped JSON bytes and decoded only when a
 * continuation needs it. A chunk that carries anything but text (a tool call, reasoning) marks the stream as one
 * that cannot be continued honestly.
 */
export class StreamTranscript {
  /** The key of a chunk's text. */
  readonly key: Buffer;
  /** Where {@link key} is from the start of a chunk (-1: not found yet). */
  private offset = -1;
  /** The delivered text as the engine's JSON string bytes (escapes kept), decoded on demand. */
  private raw: Buffer | null = null;
  private rawLength = 0;
  /** Text added by continuations (decoded strings), after {@link raw}. */
  private readonly parts: string[] = [];
  /** Chunks with text delivered (one generated token each, as engines stream them). */
  tokens = 0;
  /** Only text so far: the stream can be continued from {@link text}. */
  honest = true;
  /** A chunk with a finish_reason was delivered: the generation is complete. */
  finished = false;
  /** The first chunk as it came (its id, created and model are what every continued chunk carries). */
  first: Buffer | null = null;
  /** The final object the gateway wrote when it ended a continued stream itself (stateful protocols), or null. */
  final: Record<string, unknown> | null = null;

  constructor(readonly field: TextField) {
    this.key = field === TextField.Delta ? DELTA_KEY : field === TextField.EventDelta ? EVENT_DELTA_KEY : TEXT_KEY;
  }

  /** The text delivered so far. */
  get text(): string {
    const head = this.raw === null ? '' : (JSON.parse(`"${this.raw.toString('utf8', 0, this.rawLength)}"`) as string);
    return head + this.parts.join('');
  }

  /** Adds text delivered by a continuation (read from its parsed chunks). */
  add(text: string): void {
    if (text === '') return;
    this.parts.push(text);
    this.tokens++;
  }

  /** Reads the content chunk `buf[start, end)`: keeps the first chunk's bytes, the text, whether it finished. */
  take(buf: Buffer, start: number, end: number): void {
    // (a chat or completions chunk: its head is what continued chunks carry; events of the other protocols keep theirs)
    if (this.first === null && (this.field === TextField.Delta || this.field === TextField.Text)) this.first = Buffer.from(buf.subarray(start, end));
    let at = this.offset >= 0 ? start + this.offset : -1;
    if (at < 0 || !startsWith(buf, at, end, this.key)) {
      at = buf.indexOf(this.key, start); // the first chunk, or one shaped otherwise
      if (at < 0 || at >= end) {
        // an event of text with no text where it belongs: what it carries is not known
        if (this.field === TextField.EventDelta || this.field === TextField.EventText) this.honest = false;
        return;
      }
      this.offset = at - start;
    }
    let p = at + this.key.length;
    if (this.field === TextField.Delta) {
      if (buf[p] === 125 /* } */) return this.finish(buf, p, end);
      if (startsWith(buf, p, end, ROLE)) {
        p += ROLE.length;
        if (buf[p] === 44 /* , */) p++;
        else if (buf[p] === 125) return this.finish(buf, p, end);
      }
      if (!startsWith(buf, p, end, CONTENT)) {
        this.honest = false; // tool_calls, reasoning, a null content...
        return;
      }
      p += CONTENT.length;
    }
    // the string's closing quote (an escaped quote is skipped with its backslash)
    let to = -1;
    for (let i = p; i < end; i++) {
      const c = buf[i];
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) {
        to = i;
        break;
      }
    }
    if (to < 0) {
      this.honest = false;
      return;
    }
    if (this.field === TextField.Delta && buf[to + 1] !== 125) this.honest = false; // more than text in the delta
    if (to > p) {
      this.append(buf, p, to);
      this.tokens++;
    }
    if (this.field === TextField.Delta || this.field === TextField.Text) this.finish(buf, to, end);
  }

  /** Copies the escaped text `buf[from, to)` (a few bytes: a loop, not a native copy). */
  private append(buf: Buffer, from: number, to: number): void {
    const n = to - from;
    let raw = this.raw;
    if (raw === null || this.rawLength + n > raw.length) {
      const grown = Buffer.allocUnsafe(Math.max(256, 2 * (this.rawLength + n)));
      if (raw !== null) raw.copy(grown, 0, 0, this.rawLength);
      this.raw = raw = grown;
    }
    let at = this.rawLength;
    for (let i = from; i < to; i++) raw[at++] = buf[i];
    this.rawLength = at;
  }

  /** Whether the chunk's finish_reason (after `from`) is set. */
  private finish(buf: Buffer, from: number, end: number): void {
    for (let i = from; i < end; i++) {
      if (buf[i] === 102 /* f */ && buf[i - 1] === 34 && startsWith(buf, i - 1, end, FINISH)) {
        if (buf[i - 1 + FINISH.length] === 34) this.finished = true;
        return;
      }
    }
  }
}
