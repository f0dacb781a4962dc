import type { CheckedRequest, OpenAIKind } from './openai-request';
import { upstreamBody } from './openai-request';
import type { RelayWrite, Splice, StreamContinuation, StreamRelay } from './protocol-adapter';
import { eventEnd, rewriteErrorFrame } from './sse-frames';
import { SseRelayBase } from './sse-relay-base';
import { StreamTranscript, TextField } from './stream-transcript';
import { type TokenUsage, usageFromObject } from './token-usage';

/** vLLM's (and OpenAI's) default `max_tokens` of a completion. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
const DONE = 'data: [DONE]\n\n';
const DATA = Buffer.from('data: ');

/** The `id`, `object`, `created` and `model` of a stream's first chunk: what every chunk of the spliced stream carries. */
export interface StreamHead {
  readonly id: unknown;
  readonly object: unknown;
  readonly created: unknown;
  readonly model: unknown;
}

/** The head of the chunk `first` (a `data: {...}` event), or null when it is not one. */
export function streamHead(first: Buffer | null): StreamHead | null {
  if (first === null) return null;
  const at = first.indexOf('{');
  if (at < 0) return null;
  try {
    const v = JSON.parse(first.toString('utf8', at)) as Record<string, unknown>;
    return { id: v.id, object: v.object, created: v.created, model: v.model };
  } catch {
    return null;
  }
}

/**
 * The usage the client of a spliced stream reads: the original prompt once (known from an earlier segment, else
 * this engine's prompt less the delivered text it was re-sent as), and every completion token it received.
 */
export function splicedUsage(engine: TokenUsage, splice: Splice): { prompt: number; completion: number } {
  const prompt = splice.prompt ?? Math.max(0, engine.prompt - splice.priorTokens);
  return { prompt, completion: splice.priorTokens + engine.completion };
}

function usageObject(u: { prompt: number; completion: number }): Record<string, unknown> {
  // vLLM's key order; the cached share of a prompt first served by a lost engine is not known
  return { prompt_tokens: u.prompt, total_tokens: u.prompt + u.completion, completion_tokens: u.completion, prompt_tokens_details: null };
}

function frame(payload: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(payload)}\n\n`);
}

/**
 * The relay of a continuation's stream (chat or completions), spliced into the client's stream: every chunk is
 * parsed and written again with the first segment's `id`, `created` and `model`; the continuation's role chunk is
 * dropped (the client had one), its text is added to the transcript (a further continuation starts after it), and
 * its usage chunk, when the client asked for usage, counts the original prompt once and every delivered
 * completion token. Continuations are rare: parsing each chunk here costs the hot path nothing.
 */
export class OpenAIContinuationRelay extends SseRelayBase {
  constructor(
    private readonly kind: 'chat' | 'completions',
    private readonly clientWantsUsage: boolean,
    private readonly transcript: StreamTranscript,
    private readonly head: StreamHead,
    private readonly splice: Splice,
  ) {
    super();
  }

  push(chunk: Buffer, out: RelayWrite): void {
    const buf = this.joined(chunk);
    let start = 0;
    let sep: number;
    while ((sep = eventEnd(buf, start)) !== -1) {
      const next = sep + 2;
      const write = this.held === null ? out : this.hold;
      this.event(buf, start, sep, write);
      start = next;
    }
    this.keepRest(buf, start);
  }

  private event(buf: Buffer, start: number, end: number, write: RelayWrite): void {
    if (buf.compare(DATA, 0, DATA.length, start, start + DATA.length) !== 0) {
      write(buf.subarray(start, end + 2));
      return;
    }
    const text = buf.toString('utf8', start + DATA.length, end);
    if (text === '[DONE]') {
      this.sawDone = true;
      write(buf.subarray(start, end + 2));
      return;
    }
    let payload: Record<string, unknown> | null = null;
    try {
      const v: unknown = JSON.parse(text);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) payload = v as Record<string, unknown>;
    } catch {
      // passed on as it came
    }
    if (payload === null) {
      write(buf.subarray(start, end + 2));
      return;
    }
    if (payload.error !== undefined || payload.object === 'error') {
      const { frame: f, status } = rewriteErrorFrame(buf, start, end);
      this.errorFrameStatus = status;
      this.errorFrames++;
      if (this.held === null && this.transcript.honest && status >= 500) {
        this.held = [];
        this.hold(f);
      } else write(f);
      return;
    }
    const choices = Array.isArray(payload.choices) ? (payload.choices as Record<string, unknown>[]) : [];
    const usage = payload.usage;
    if (usage !== null && typeof usage === 'object' && choices.length === 0) {
      const u = usageFromObject(usage);
      if (u !== null) this.usage = u;
      if (!this.clientWantsUsage || u === null) return;
      this.stamp(payload);
      payload.usage = usageObject(splicedUsage(u, this.splice));
      write(frame(payload));
      return;
    }
    if (this.held !== null) return; // a chunk after a held error frame delivers nothing
    if (usage === null && !this.clientWantsUsage) delete payload.usage;
    const choice = choices[0];
    if (choice !== undefined && !this.content(choice)) return;
    this.stamp(payload);
    this.contentEvents++;
    write(frame(payload));
  }

  /** Reads one choice of a content chunk; false when the chunk is the continuation's role chunk (dropped). */
  private content(choice: Record<string, unknown>): boolean {
    const t = this.transcript;
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) t.finished = true;
    if (this.kind === 'completions') {
      if (typeof choice.text === 'string') t.add(choice.text);
      return true;
    }
    const delta = choice.delta as Record<string, unknown> | undefined;
    if (delta === undefined || delta === null) return true;
    let role = false;
    for (const k of Object.keys(delta)) {
      if (k === 'role') role = true;
      else if (k !== 'content') t.honest = false;
    }
    if (role) delete delta.role;
    const content = delta.content;
    if (typeof content === 'string') t.add(content);
    else if (content !== undefined) t.honest = false;
    // the role chunk: nothing but the role (and empty content), no finish
    return !(role && (content === '' || content === undefined) && !t.finished && Object.keys(delta).length <= 1);
  }

  private stamp(payload: Record<string, unknown>): void {
    payload.id = this.head.id;
    payload.created = this.head.created;
    payload.model = this.head.model;
  }
}

/**
 * The end of a client's stream written by the gateway, when its engine was lost with nothing left to generate (it
 * had delivered its finish, or max_tokens): the finish chunk unless delivered, the usage chunk if asked, `[DONE]`.
 */
function closingFrames(kind: 'chat' | 'completions', head: StreamHead, t: StreamTranscript, usage: { prompt: number; completion: number } | null): Buffer {
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  let s = '';
  if (!t.finished) {
    const choice =
      kind === 'chat'
        ? { index: 0, delta: {}, logprobs: null, finish_reason: 'length' }
        : { index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null };
    s += `data: ${JSON.stringify({ id: head.id, object, created: head.created, model: head.model, choices: [choice] })}\n\n`;
  }
  if (usage !== null) s += `data: ${JSON.stringify({ id: head.id, object, created: head.created, model: head.model, choices: [], usage: usageObject(usage) })}\n\n`;
  return Buffer.from(s + DONE);
}

function positiveInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * Chat and completions streams continued on another engine. Chat: the original messages, the delivered text as a
 * final assistant message, `continue_final_message: true, add_generation_prompt: false` (vLLM's parameters for
 * continuing a message); completions: the prompt followed by the delivered text. Both with the token cap reduced
 * by what was delivered. Only streams of text are continued: n > 1, logprobs, echo, a prompt of token ids or of
 * several prompts are not (nor a stream that started a tool call or reasoning, see {@link StreamTranscript}).
 */
export class OpenAIStreamContinuation implements StreamContinuation {
  constructor(private readonly kind: 'chat' | 'completions') {}

  transcript(req: CheckedRequest): StreamTranscript | null {
    const b = req.body;
    if (req.choices !== 1 || (b.best_of !== undefined && b.best_of !== null && b.best_of !== 1)) return null;
    if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== false) return null;
    if (b.top_logprobs !== undefined && b.top_logprobs !== null && b.top_logprobs !== 0) return null;
    if (b.prompt_logprobs !== undefined && b.prompt_logprobs !== null) return null;
    if (this.kind === 'completions') {
      if (typeof b.prompt !== 'string' || b.echo === true) return null;
      return new StreamTranscript(TextField.Text);
    }
    return Array.isArray(b.messages) ? new StreamTranscript(TextField.Delta) : null;
  }

  body(req: CheckedRequest, upstreamModel: string, t: StreamTranscript): string | null {
    const b = req.body;
    const text = t.text;
    const out: Record<string, unknown> = { ...b };
    if (this.kind === 'completions') {
      const cap = positiveInt(b.max_tokens) ?? COMPLETIONS_DEFAULT_MAX_TOKENS;
      if (cap - t.tokens <= 0) return null;
      out.prompt = (b.prompt as string) + text;
      out.max_tokens = cap - t.tokens;
    } else {
      const field = positiveInt(b.max_completion_tokens) !== null ? 'max_completion_tokens' : positiveInt(b.max_tokens) !== null ? 'max_tokens' : null;
      if (field !== null) {
        const left = (b[field] as number) - t.tokens;
        if (left <= 0) return null;
        out[field] = left;
      }
      if (text !== '') {
        const messages = b.messages as unknown[];
        const last = messages.at(-1) as { role?: unknown; content?: unknown } | undefined;
        if (b.continue_final_message === true && last?.role === 'assistant' && typeof last.content === 'string') {
          // the client itself continued a message: the delivered text extends it
          out.messages = [...messages.slice(0, -1), { ...last, content: last.content + text }];
        } else out.messages = [...messages, { role: 'assistant', content: text }];
        out.continue_final_message = true;
        out.add_generation_prompt = false;
      }
    }
    return upstreamBody({ ...req, body: out }, upstreamModel);
  }

  relay(req: CheckedRequest, t: StreamTranscript, splice: Splice): StreamRelay | null {
    const head = streamHead(t.first);
    return head === null ? null : new OpenAIContinuationRelay(this.kind, req.clientWantsUsage, t, head, splice);
  }

  closing(req: CheckedRequest, t: StreamTranscript, usage: { prompt: number; completion: number }): Buffer | null {
    const head = streamHead(t.first);
    return head === null ? null : closingFrames(this.kind, head, t, req.clientWantsUsage ? usage : null);
  }
}

/** The continuation of each OpenAI operation that streams text. */
export const OPENAI_CONTINUATIONS: Readonly<Partial<Record<OpenAIKind, StreamContinuation>>> = {
  chat: new OpenAIStreamContinuation('chat'),
  completions: new OpenAIStreamContinuation('completions'),
};
