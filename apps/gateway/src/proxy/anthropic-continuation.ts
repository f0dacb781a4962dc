import { normalizeUpstreamAnthropicError } from '@spot/contract';
import { statusOfType } from './anthropic-sse-relay';
import { MessagesTranscript } from './anthropic-transcript';
import { splicedUsage } from './openai-continuation';
import type { CheckedRequest } from './openai-request';
import type { RelayWrite, Splice, StreamContinuation, StreamRelay } from './protocol-adapter';
import { eventEnd } from './sse-frames';
import { SseRelayBase } from './sse-relay-base';
import { usageFromObject } from './token-usage';

type Json = Record<string, unknown>;

/** Python's `json.dumps` with its defaults (`, ` and `: ` separators, non-ASCII escaped): how vLLM writes tool inputs. */
export function pythonJsonDumps(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (typeof v === 'number') return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map(pythonJsonDumps).join(', ')}]`;
  return `{${Object.entries(v as Json)
    .map(([k, x]) => `${pythonJsonDumps(k)}: ${pythonJsonDumps(x)}`)
    .join(', ')}}`;
}

type Block = { type?: unknown; text?: unknown; source?: unknown; id?: unknown; name?: unknown; input?: unknown; tool_use_id?: unknown; content?: unknown; thinking?: unknown };

function imageUrl(source: unknown): string {
  const s = (source ?? {}) as { type?: unknown; url?: unknown; media_type?: unknown; data?: unknown };
  if (s.type === 'url') return typeof s.url === 'string' ? s.url : '';
  return `data:${typeof s.media_type === 'string' ? s.media_type : 'image/jpeg'};base64,${typeof s.data === 'string' ? s.data : ''}`;
}

/** A user's tool_result as vLLM converts it: a tool message (text blocks joined by lines), its images after it. */
function toolResult(b: Block, out: Json[]): void {
  let text = '';
  const images: string[] = [];
  if (typeof b.content === 'string') text = b.content;
  else if (Array.isArray(b.content)) {
    const parts: string[] = [];
    for (const item of b.content as Json[]) {
      if (item === null || typeof item !== 'object') continue;
      if (item.type === 'text') parts.push(typeof item.text === 'string' ? item.text : '');
      else if (item.type === 'image') images.push(imageUrl(item.source));
    }
    text = parts.join('\n');
  }
  out.push({ role: 'tool', tool_call_id: typeof b.tool_use_id === 'string' ? b.tool_use_id : '', content: text });
  if (images.length > 0) out.push({ role: 'user', content: images.map((url) => ({ type: 'image_url', image_url: { url } })) });
}

/** The system prompt vLLM builds: the top-level `system` and every system message, their texts joined. */
function systemText(body: Json): string {
  const parts: string[] = [];
  const add = (content: unknown) => {
    if (typeof content === 'string') parts.push(content);
    else if (Array.isArray(content)) {
      for (const b of content as Block[]) {
        // Claude Code's attribution header carries a per-request hash (vLLM drops it for the prefix cache)
        if (b?.type === 'text' && typeof b.text === 'string' && b.text !== '' && !b.text.startsWith('x-anthropic-billing-header')) parts.push(b.text);
      }
    }
  };
  add(body.system);
  for (const m of body.messages as Json[]) if (m?.role === 'system') add(m.content);
  return parts.join('');
}

/**
 * The chat completion request vLLM's Messages endpoint makes of an Anthropic request (its
 * `_convert_anthropic_to_openai_request`), so that a continuation on the engine's chat endpoint sees the prompt
 * the first engine saw: system texts first, text / image / thinking / tool_use blocks as one message's content,
 * reasoning and tool calls (inputs as Python's json.dumps writes them), a user's tool results as tool messages,
 * tools as functions, Anthropic's tool_choice, stop sequences and sampling fields under OpenAI's names.
 */
export function messagesToChat(body: Json): Json {
  const messages: Json[] = [];
  const system = systemText(body);
  if (system !== '') messages.push({ role: 'system', content: system });
  for (const m of body.messages as Array<{ role?: unknown; content?: unknown }>) {
    if (m.role === 'system') continue;
    const msg: Json = { role: m.role };
    if (typeof m.content === 'string') msg.content = m.content;
    else if (Array.isArray(m.content)) {
      const parts: Json[] = [];
      const calls: Json[] = [];
      const reasoning: string[] = [];
      for (const b of m.content as Block[]) {
        if (b?.type === 'text' && typeof b.text === 'string' && b.text !== '') parts.push({ type: 'text', text: b.text });
        else if (b?.type === 'image' && b.source !== undefined && b.source !== null) parts.push({ type: 'image_url', image_url: { url: imageUrl(b.source) } });
        else if (b?.type === 'thinking' && typeof b.thinking === 'string') reasoning.push(b.thinking);
        else if (b?.type === 'tool_use') {
          calls.push({ id: typeof b.id === 'string' && b.id !== '' ? b.id : `call_${Math.floor(Date.now() / 1000)}`, type: 'function', function: { name: typeof b.name === 'string' ? b.name : '', arguments: pythonJsonDumps(b.input ?? {}) } });
        } else if (b?.type === 'tool_result') {
          if (m.role === 'user') toolResult(b, messages);
          else parts.push({ type: 'text', text: `Tool result: ${typeof b.content === 'string' ? b.content : b.content ? JSON.stringify(b.content) : ''}` });
        }
      }
      if (reasoning.length > 0) msg.reasoning = reasoning.join('');
      if (calls.length > 0) msg.tool_calls = calls;
      if (parts.length === 1 && parts[0].type === 'text') msg.content = parts[0].text;
      else if (parts.length > 0) msg.content = parts;
    }
    if (!(m.role === 'user' && msg.content === undefined)) messages.push(msg);
  }
  const chat: Json = { model: body.model, messages };
  const copy = (from: string, to: string) => {
    if (body[from] !== undefined && body[from] !== null) chat[to] = body[from];
  };
  copy('stop_sequences', 'stop');
  copy('temperature', 'temperature');
  copy('top_p', 'top_p');
  copy('top_k', 'top_k');
  copy('kv_transfer_params', 'kv_transfer_params');
  copy('chat_template_kwargs', 'chat_template_kwargs');
  const output = body.output_config as { format?: { type?: unknown; schema?: unknown }; effort?: unknown } | null | undefined;
  if (output?.format?.schema !== undefined && output.format.schema !== null) chat.response_format = { type: output.format.type ?? 'json_schema', json_schema: { schema: output.format.schema, name: output.format.type ?? 'json_schema' } };
  if (output?.effort !== undefined && output.effort !== null) chat.reasoning_effort = output.effort;
  const tc = body.tool_choice as { type?: unknown; name?: unknown } | null | undefined;
  if (tc !== undefined && tc !== null) {
    if (tc.type === 'auto') chat.tool_choice = 'auto';
    else if (tc.type === 'any') chat.tool_choice = 'required';
    else if (tc.type === 'none') chat.tool_choice = 'none';
    else if (tc.type === 'tool') chat.tool_choice = { type: 'function', function: { name: tc.name } };
  }
  if (Array.isArray(body.tools)) {
    chat.tools = (body.tools as Array<{ name?: unknown; description?: unknown; input_schema?: unknown; defer_loading?: unknown }>).map((t) => {
      const schema = t.input_schema !== null && typeof t.input_schema === 'object' ? (t.input_schema as Json) : {};
      const fn: Json = { name: t.name, description: t.description ?? null, parameters: 'type' in schema ? schema : { ...schema, type: 'object' } };
      if (t.defer_loading !== undefined && t.defer_loading !== null) fn.defer_loading = t.defer_loading;
      return { type: 'function', function: fn };
    });
    chat.tool_choice ??= 'auto';
  }
  return chat;
}

const STOP_REASON: Readonly<Record<string, string>> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use' };

function event(type: string, payload: unknown): Buffer {
  return Buffer.from(`event: ${type}\ndata: ${JSON.stringify(payload)}\n\n`);
}

/** The usage of the client's message_delta: the prompt once, every output token (cache fields 0 where it had them). */
function messageUsage(t: MessagesTranscript, u: { prompt: number; completion: number }): Json {
  const usage: Json = { input_tokens: u.prompt, output_tokens: u.completion };
  const started = (t.message?.usage ?? null) as Json | null;
  // the cached share of a prompt first served by a lost engine is not known (nor billed as cached)
  if (started !== null && started.cache_creation_input_tokens !== undefined) usage.cache_creation_input_tokens = 0;
  if (started !== null && started.cache_read_input_tokens !== undefined) usage.cache_read_input_tokens = 0;
  return usage;
}

type BlockType = 'text' | 'thinking' | 'tool_use';

/**
 * The relay of a continuation's stream, asked of the engine's chat completions endpoint, spliced into the client's
 * Messages stream as vLLM's own converter would have written it (its `message_stream_converter`): no second
 * `message_start` (the client has one) and no second `content_block_start` for the text block under way; each
 * content delta a `text_delta` of that block (added to the transcript, so a further continuation starts after it);
 * a tool call or reasoning after it, blocks of their own (relayed, the stream then never continued again); the usage
 * chunk a `content_block_stop` and one `message_delta` whose usage counts the original prompt once and every output
 * token; `[DONE]` the `message_stop`. An engine's error frame becomes Anthropic's `error` event.
 */
export class AnthropicContinuationRelay extends SseRelayBase {
  /** The block open in the client's stream (its type and index), or null. */
  private open: { type: BlockType; index: number } | null;
  private nextIndex: number;
  private finish: string | null = null;
  /** An error event was written (or held): vLLM's converter ends the stream there. */
  private ended = false;
  private toolId: string | null = null;

  constructor(
    private readonly t: MessagesTranscript,
    private readonly splice: Splice,
  ) {
    super();
    this.open = t.blockIndex >= 0 && !t.blockStopped ? { type: 'text', index: t.blockIndex } : null;
    this.nextIndex = t.blockIndex + 1;
  }

  push(chunk: Buffer, out: RelayWrite): void {
    const buf = this.joined(chunk);
    let start = 0;
    let sep: number;
    while ((sep = eventEnd(buf, start)) !== -1) {
      this.event(buf.toString('utf8', start, sep), this.held === null ? out : this.hold);
      start = sep + 2;
    }
    this.keepRest(buf, start);
  }

  private event(text: string, write: RelayWrite): void {
    if (this.ended || !text.startsWith('data:')) return;
    const data = text.slice(text.charCodeAt(5) === 32 ? 6 : 5);
    if (data === '[DONE]') {
      this.stopBlock(write);
      this.sawDone = true;
      write(event('message_stop', { type: 'message_stop' }));
      return;
    }
    let payload: Json | null = null;
    try {
      const v: unknown = JSON.parse(data);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) payload = v as Json;
    } catch {
      // vLLM's converter fails on what it cannot parse: an error event
    }
    if (payload === null || payload.error !== undefined || payload.object === 'error') {
      this.error(payload, data, write);
      return;
    }
    const choices = Array.isArray(payload.choices) ? (payload.choices as Json[]) : [];
    if (choices.length === 0) {
      const u = usageFromObject(payload.usage);
      if (u === null) return;
      this.usage = u;
      this.stopBlock(write);
      this.t.messageDelta = this.t.finished = true;
      write(event('message_delta', { type: 'message_delta', delta: { stop_reason: STOP_REASON[this.finish ?? 'stop'] ?? 'end_turn' }, usage: messageUsage(this.t, splicedUsage(u, this.splice)) }));
      return;
    }
    const choice = choices[0];
    if (typeof choice.finish_reason === 'string') this.finish = choice.finish_reason;
    const delta = (choice.delta ?? {}) as Json;
    const reasoning = typeof delta.reasoning === 'string' ? delta.reasoning : typeof delta.reasoning_content === 'string' ? delta.reasoning_content : '';
    if (reasoning !== '') {
      this.t.honest = false;
      const index = this.block('thinking', { type: 'thinking', thinking: '' }, write);
      this.contentEvents++;
      write(event('content_block_delta', { type: 'content_block_delta', delta: { type: 'thinking_delta', thinking: reasoning }, index }));
    }
    if (typeof delta.content === 'string' && delta.content !== '') {
      const index = this.block('text', { type: 'text', text: '' }, write);
      this.contentEvents++;
      this.t.add(delta.content);
      write(event('content_block_delta', { type: 'content_block_delta', delta: { type: 'text_delta', text: delta.content }, index }));
    }
    if (Array.isArray(delta.tool_calls)) for (const call of delta.tool_calls as Json[]) this.toolCall(call, write);
  }

  /** The index of an open block of `type`, started (and the open one of another type stopped) if need be. */
  private block(type: BlockType, start: Json, write: RelayWrite): number {
    if (this.open !== null && this.open.type === type && type !== 'tool_use') return this.open.index;
    this.stopBlock(write);
    const index = this.nextIndex++;
    if (type === 'text') {
      if (this.t.blockIndex < 0) this.t.blockIndex = index;
      else this.t.honest = false; // a second text block: relayed, never continued
    }
    this.open = { type, index };
    write(event('content_block_start', { type: 'content_block_start', content_block: start, index }));
    return index;
  }

  private stopBlock(write: RelayWrite): void {
    const open = this.open;
    if (open === null) return;
    this.open = null;
    if (open.index === this.t.blockIndex) this.t.blockEnded(open.index);
    write(event('content_block_stop', { type: 'content_block_stop', index: open.index }));
  }

  /** A tool call's delta: its own tool_use block, its arguments as input_json deltas. */
  private toolCall(call: Json, write: RelayWrite): void {
    this.t.honest = false;
    const fn = (call.function ?? {}) as { name?: unknown; arguments?: unknown };
    if (typeof call.id === 'string' && call.id !== this.toolId && typeof fn.name === 'string') {
      this.toolId = call.id;
      this.block('tool_use', { type: 'tool_use', id: call.id, name: fn.name, input: {} }, write);
    }
    if (this.open?.type !== 'tool_use' || typeof fn.arguments !== 'string' || fn.arguments === '') return;
    this.contentEvents++;
    write(event('content_block_delta', { type: 'content_block_delta', delta: { type: 'input_json_delta', partial_json: fn.arguments }, index: this.open.index }));
  }

  private error(payload: Json | null, raw: string, write: RelayWrite): void {
    const inner = (payload?.error !== null && typeof payload?.error === 'object' ? payload.error : payload) as Json | null;
    const code = inner?.code;
    const status = typeof code === 'number' && code >= 400 && code < 600 ? code : 500;
    const body = normalizeUpstreamAnthropicError(status, raw);
    this.errorFrameStatus = statusOfType(body.error.type);
    this.errorFrames++;
    this.sawDone = true;
    this.ended = true;
    const frame = event('error', body);
    if (this.t.honest && this.errorFrameStatus >= 500 && this.held === null) {
      // the stream may go on on yet another engine: held for the exchange's decision
      this.held = [];
      this.hold(frame);
    } else write(frame);
  }
}

function positiveInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * Anthropic Messages streams continued on another engine. vLLM's Messages endpoint does not continue a final
 * assistant message (Anthropic's prefill): it converts the request to a chat completion whose
 * `add_generation_prompt` stays on and `continue_final_message` off (its `chat_template_kwargs` cannot override
 * them), so the engine would open a new turn. The continuation therefore goes to the engine's chat completions
 * endpoint, with the request converted as vLLM converts it ({@link messagesToChat}), the delivered text as a
 * final assistant message, `continue_final_message: true, add_generation_prompt: false` and `max_tokens` reduced,
 * and its chunks are written as the client's Messages events ({@link AnthropicContinuationRelay}). Only a stream
 * of one text block is continued (see {@link MessagesTranscript}).
 */
export class MessagesStreamContinuation implements StreamContinuation {
  readonly upstreamPath = '/v1/chat/completions';

  transcript(req: CheckedRequest): MessagesTranscript | null {
    return Array.isArray(req.body.messages) ? new MessagesTranscript() : null;
  }

  body(req: CheckedRequest, upstreamModel: string, t: MessagesTranscript): string | null {
    const max = positiveInt(req.body.max_tokens);
    if (max === null || max - t.tokens <= 0) return null;
    const chat = messagesToChat(req.body);
    chat.model = upstreamModel;
    chat.max_tokens = max - t.tokens;
    chat.stream = true;
    chat.stream_options = { include_usage: true };
    const text = t.text;
    if (text !== '') {
      chat.messages = [...(chat.messages as Json[]), { role: 'assistant', content: text }];
      chat.continue_final_message = true;
      chat.add_generation_prompt = false;
    }
    return JSON.stringify(chat);
  }

  relay(_req: CheckedRequest, t: MessagesTranscript, splice: Splice): StreamRelay | null {
    return t.message === null ? null : new AnthropicContinuationRelay(t, splice);
  }

  closing(req: CheckedRequest, t: MessagesTranscript, usage: { prompt: number; completion: number }): Buffer | null {
    if (t.message === null) return null;
    const out: Buffer[] = [];
    if (t.blockIndex >= 0 && !t.blockStopped) out.push(event('content_block_stop', { type: 'content_block_stop', index: t.blockIndex }));
    if (!t.messageDelta) {
      const max = positiveInt(req.body.max_tokens);
      const stop = max !== null && t.tokens >= max ? 'max_tokens' : 'end_turn';
      out.push(event('message_delta', { type: 'message_delta', delta: { stop_reason: stop }, usage: messageUsage(t, usage) }));
    }
    out.push(event('message_stop', { type: 'message_stop' }));
    return Buffer.concat(out);
  }
}
