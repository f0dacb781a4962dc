const KEY = Buffer.from('"model":');

/**
 * Puts the model name the client asked for where the engine wrote its own (`upstream:` in the tiers file), so
 * that every answer names the model as the client knows it, whichever tier served it. Works on bytes: finds
 * `"model":` followed (after optional blanks) by the engine's name as a JSON string, and swaps the name. A
 * `"model":` key cannot occur inside a JSON string (its quotes would be escaped), so only the answer's own
 * fields (and an object of the client's echoed back with that exact value) match. Made once per pair of names
 * (see {@link modelRename}), and only when they differ: an answer whose names agree costs nothing.
 */
export class ModelRename {
  private readonly from: Buffer;
  private readonly to: Buffer;
  /** The most bytes a match spans: what a body read must hold back in case it is cut inside one. */
  readonly span: number;

  constructor(engineName: string, clientName: string) {
    this.from = Buffer.from(JSON.stringify(engineName));
    this.to = Buffer.from(JSON.stringify(clientName));
    this.span = KEY.length + 8 + this.from.length;
  }

  /** `buf` with every match renamed (whole SSE events: a match never spans two writes); `buf` itself when none. */
  all(buf: Buffer): Buffer {
    let at = this.find(buf, 0);
    if (at < 0) return buf;
    const parts: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      parts.push(buf.subarray(from, at), this.to);
      from = at + this.from.length;
      at = this.find(buf, from);
    }
    parts.push(buf.subarray(from));
    return Buffer.concat(parts);
  }

  /** Where the engine's name (its opening quote) follows a `"model":` key at or after `from`, or -1. */
  find(buf: Buffer, from: number): number {
    let k = buf.indexOf(KEY, from);
    while (k >= 0) {
      let v = k + KEY.length;
      while (v < buf.length && (buf[v] === 32 || buf[v] === 9 || buf[v] === 10 || buf[v] === 13)) v++;
      if (v + this.from.length <= buf.length && buf.compare(this.from, 0, this.from.length, v, v + this.from.length) === 0) return v;
      k = buf.indexOf(KEY, k + KEY.length);
    }
    return -1;
  }

  /** A renamer of one non-streamed body, read by read: renames the first match, then passes bytes through. */
  body(): BodyRename {
    return new BodyRename(this);
  }

  /** The renamed name's bytes (for {@link BodyRename}). */
  get replacement(): Buffer {
    return this.to;
  }

  /** The engine name's length in bytes, quotes included. */
  get matchLength(): number {
    return this.from.length;
  }
}

/**
 * The first `"model":"<engine name>"` of a body that arrives in reads (a chat completion, an embedding list, a
 * Message: the answer's own model field, the first at its top level), renamed as the reads pass. Up to
 * {@link ModelRename.span} bytes of a read are held back until the next one, in case a match is cut between them.
 */
export class BodyRename {
  private held: Buffer | null = null;
  private done = false;

  constructor(private readonly rename: ModelRename) {}

  /** The bytes of this read that may leave now. */
  push(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    const buf = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
    this.held = null;
    const at = this.rename.find(buf, 0);
    if (at >= 0) {
      this.done = true;
      return Buffer.concat([buf.subarray(0, at), this.rename.replacement, buf.subarray(at + this.rename.matchLength)]);
    }
    const keep = Math.min(buf.length, this.rename.span);
    this.held = buf.subarray(buf.length - keep);
    return buf.subarray(0, buf.length - keep);
  }

  /** The body ended: what was held back. */
  end(): Buffer | null {
    const rest = this.held;
    this.held = null;
    return rest !== null && rest.length > 0 ? rest : null;
  }
}

const renames = new Map<string, ModelRename>();

/** The renamer from the engine's model name to the client's, or null when they are the same (nothing to do). */
export function modelRename(engineName: string, clientName: string): ModelRename | null {
  if (engineName === clientName) return null;
  const key = `${engineName}\n${clientName}`;
  let r = renames.get(key);
  if (r === undefined) {
    // the names come from the tiers file: a bounded set
    r = new ModelRename(engineName, clientName);
    renames.set(key, r);
  }
  return r;
}
