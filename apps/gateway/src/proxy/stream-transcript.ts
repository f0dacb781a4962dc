/** What the text of a chat or completions chunk is under. */
export const enum TextField {
  /** Chat: `"delta":{"content":"..."}` (after the role, in a role chunk). */
  Delta,
  /** Completions: `"text":"..."`. */
  Text,
}

const DELTA_KEY = Buffer.from('"delta":{');
const TEXT_KEY = Buffer.from('"text":"');
const ROLE = Buffer.from('"role":"assistant"');
const CONTENT = Buffer.from('"content":"');
const FINISH = Buffer.from('"finish_reason":');

function startsWith(buf: Buffer, at: number, end: number, s: Buffer): boolean {
  return at + s.length <= end && buf.compare(s, 0, s.length, at, at + s.length) === 0;
}

/**
 * The text a stream delivered to its client (one choice), kept as the relay passes content chunks on, so that the
 * stream can be continued on another engine from there. Cheap by design: the relay finds one key per read (as it
 * finds `"usage"`), and a chunk's text is cut out of the bytes without parsing the chunk; a chunk that carries
 * anything but text (a tool call, reasoning) marks the stream as one that cannot be continued honestly.
 */
export class StreamTranscript {
  /** The key searched for once per read. */
  readonly key: Buffer;
  private readonly parts: string[] = [];
  /** Chunks with text delivered (one generated token each, as engines stream them). */
  tokens = 0;
  /** Only text so far: the stream can be continued from {@link text}. */
  honest = true;
  /** A chunk with a finish_reason was delivered: the generation is complete. */
  finished = false;
  /** The first chunk as it came (its id, created and model are what every continued chunk carries). */
  first: Buffer | null = null;

  constructor(readonly field: TextField) {
    this.key = field === TextField.Delta ? DELTA_KEY : TEXT_KEY;
  }

  /** The text delivered so far. */
  get text(): string {
    if (this.parts.length > 1) this.parts.splice(0, this.parts.length, this.parts.join(''));
    return this.parts[0] ?? '';
  }

  /** Adds text delivered by a continuation (read from its parsed chunks). */
  add(text: string): void {
    if (text === '') return;
    this.parts.push(text);
    this.tokens++;
  }

  /**
   * Reads the content chunk `buf[start, end)` whose {@link key} is at `at` (-1: the chunk has none). Keeps the
   * first chunk's bytes, the chunk's text, and whether it finished or carried something else than text.
   */
  take(buf: Buffer, start: number, end: number, at: number): void {
    if (this.first === null) this.first = Buffer.from(buf.subarray(start, end));
    if (at < start || at >= end) return;
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
    let escaped = false;
    for (let i = p; i < end; i++) {
      const c = buf[i];
      if (c === 92 /* \ */) {
        escaped = true;
        i++;
      } else if (c === 34 /* " */) {
        to = i;
        break;
      }
    }
    if (to < 0) {
      this.honest = false;
      return;
    }
    if (this.field === TextField.Delta && buf[to + 1] !== 125) this.honest = false; // more than text in the delta
    this.add(escaped ? (JSON.parse(buf.toString('utf8', p - 1, to + 1)) as string) : buf.toString('utf8', p, to));
    this.finish(buf, to, end);
  }

  /** Whether the chunk's finish_reason (after `from`) is set. */
  private finish(buf: Buffer, from: number, end: number): void {
    const f = buf.indexOf(FINISH, from);
    if (f >= 0 && f < end && buf[f + FINISH.length] === 34 /* " */) this.finished = true;
  }
}
