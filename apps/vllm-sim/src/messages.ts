import { planChat, type ChatPlan } from './chat-completions';
import type { StreamBody } from './generation-runner';
import { invalid, missing, optBool, type Body } from './request-checks';
import { pythonJsonDumps } from './schema-sample';
import { resolveModel, type SimContext } from './sim-context';
import type { SimError } from './sim-errors';
import { chatPromptTokens } from './sim-tokens';

/**
 * Anthropic Messages as vLLM serves them (vllm/entrypoints/anthropic/serving.py, protocol.py, api_router.py):
 * the request is converted to a chat completion (system -> system message, tool_use blocks -> tool calls,
 * tool_result blocks -> tool messages, tools -> function tools with tool_choice auto unless told) and the chat
 * answer is converted back. Where vLLM differs from Anthropic the sim does what vLLM does:
 * - the message id is the chat completion's (`chatcmpl-...`), not Anthropic's `msg_...`;
 * - the stream has no `ping` event, and message_start's message carries only the fields vLLM sets
 *   (`model_dump_json(exclude_unset=True)`: no `type`/`role`);
 * - request validation errors (a missing max_tokens) come from vLLM's global handler in the OpenAI envelope;
 *   errors from the handler (unknown model, context length) in Anthropic's `{"type":"error","error":{...}}`;
 * - usage as vLLM reports it since it reports cache reads (see {@link usage}).
 */
export interface MessagesPlan {
  readonly chat: ChatPlan;
  readonly stream: boolean;
  /** Prefix caching is on: usage carries the cache fields. */
  readonly caching: boolean;
}

type Msg = { role: string; content?: unknown; tool_calls?: unknown[]; tool_call_id?: string };
type Block = { type?: unknown; text?: unknown; id?: unknown; name?: unknown; input?: unknown; tool_use_id?: unknown; content?: unknown };

function requireModel(body: Body): void {
  if (body.model === undefined || body.model === null) throw missing('model');
  if (typeof body.model !== 'string') throw invalid('model', 'Input should be a valid string');
  if (body.model === '') throw invalid('model', 'Value error, Model is required');
}

/** A tool_result's content: a string, or its text blocks one per line. */
function toolResultText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return (content as Block[]).map((x) => (typeof x?.text === 'string' ? x.text : '')).join('\n');
}

/** The chat request vLLM builds from an Anthropic one (`_convert_anthropic_to_openai_request`). */
function toChatBody(body: Body): Body {
  requireModel(body);
  const raw = body.messages;
  if (raw === undefined || raw === null) throw missing('messages');
  if (!Array.isArray(raw)) throw invalid('messages', 'Input should be a valid list');
  const messages: Msg[] = [];
  const system: string[] = [];
  const sys = body.system;
  if (typeof sys === 'string') system.push(sys);
  else if (Array.isArray(sys)) {
    for (const b of sys as Block[]) if (b?.type === 'text' && typeof b.text === 'string') system.push(b.text);
  } else if (sys !== undefined && sys !== null) throw invalid('system', 'Input should be a valid string or a list of blocks');
  for (const m of raw as { role?: unknown; content?: unknown }[]) {
    if (m === null || typeof m !== 'object' || !['user', 'assistant', 'system'].includes(String(m.role))) {
      throw invalid('messages', "Input should be 'user', 'assistant' or 'system'");
    }
    if (typeof m.content !== 'string' && !Array.isArray(m.content)) throw invalid('messages', 'Input should be a valid string or list');
    if (m.role === 'system') {
      if (typeof m.content === 'string') system.push(m.content);
      else for (const b of m.content as Block[]) if (b?.type === 'text' && typeof b.text === 'string') system.push(b.text);
      continue;
    }
    const role = String(m.role);
    if (typeof m.content === 'string') {
      messages.push({ role, content: m.content });
      continue;
    }
    const parts: { type: string; text: string }[] = [];
    const calls: unknown[] = [];
    const results: Msg[] = [];
    for (const b of m.content as Block[]) {
      if (b?.type === 'text' && typeof b.text === 'string' && b.text) parts.push({ type: 'text', text: b.text });
      else if (b?.type === 'tool_use') {
        calls.push({ id: String(b.id ?? ''), type: 'function', function: { name: String(b.name ?? ''), arguments: pythonJsonDumps(b.input ?? {}) } });
      } else if (b?.type === 'tool_result') {
        const text = toolResultText(b.content);
        if (role === 'user') results.push({ role: 'tool', tool_call_id: String(b.tool_use_id ?? ''), content: text });
        else parts.push({ type: 'text', text: `Tool result: ${text}` });
      }
    }
    messages.push(...results);
    const msg: Msg = { role };
    if (calls.length > 0) msg.tool_calls = calls;
    if (parts.length === 1) msg.content = parts[0]!.text;
    else if (parts.length > 1) msg.content = parts;
    // A user turn made only of tool results becomes tool messages alone.
    if (!(role === 'user' && msg.content === undefined)) messages.push(msg);
  }
  if (system.length > 0) messages.unshift({ role: 'system', content: system.join('') });

  const chat: Body = { model: body.model, messages };
  const tools = body.tools;
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw invalid('tools', 'Input should be a valid list');
    chat.tools = (tools as { name?: unknown; description?: unknown; input_schema?: unknown }[]).map((t) => {
      if (typeof t?.name !== 'string') throw missing('tools');
      if (t.input_schema === null || typeof t.input_schema !== 'object') throw invalid('tools', 'Value error, input_schema must be a dictionary');
      return { type: 'function', function: { name: t.name, description: t.description, parameters: t.input_schema } };
    });
  }
  const tc = body.tool_choice as { type?: unknown; name?: unknown } | undefined | null;
  if (tc !== undefined && tc !== null) {
    switch (tc.type) {
      case 'auto':
        chat.tool_choice = 'auto';
        break;
      case 'any':
        chat.tool_choice = 'required';
        break;
      case 'none':
        chat.tool_choice = 'none';
        break;
      case 'tool':
        if (typeof tc.name !== 'string' || tc.name === '') {
          throw invalid('tool_choice', "Value error, tool_choice.name is required when type is 'tool'");
        }
        chat.tool_choice = { type: 'function', function: { name: tc.name } };
        break;
      default:
        throw invalid('tool_choice', "Input should be 'auto', 'any', 'tool' or 'none'");
    }
  } else if (chat.tools !== undefined) chat.tool_choice = 'auto';
  return chat;
}

export function planMessages(ctx: SimContext, body: Body): MessagesPlan {
  const chatBody = toChatBody(body);
  const max = body.max_tokens;
  if (max === undefined || max === null) throw missing('max_tokens');
  if (typeof max !== 'number' || !Number.isInteger(max)) throw invalid('max_tokens', 'Input should be a valid integer');
  if (max <= 0) throw invalid('max_tokens', 'Value error, max_tokens must be positive');
  chatBody.max_tokens = max;
  const stream = optBool(body, 'stream');
  return { chat: planChat(ctx, chatBody), stream, caching: ctx.prefixCache !== undefined };
}

/** POST /v1/messages/count_tokens: the prompt tokens of the converted chat request. */
export function countTokensBody(ctx: SimContext, body: Body): { tokens: number; json: string } {
  const chat = toChatBody(body);
  resolveModel(ctx, chat);
  const tools = Array.isArray(chat.tools) ? chat.tools.length : 0;
  const tokens = chatPromptTokens(chat.messages as unknown[], tools);
  return { tokens, json: JSON.stringify({ input_tokens: tokens, context_management: { original_input_tokens: tokens } }) };
}

const STOP_REASON: Record<string, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use' };

/**
 * vLLM's AnthropicUsage (since vllm-project/vllm#40912, Anthropic's contract): `input_tokens` are the prompt
 * tokens not read from the cache, `cache_read_input_tokens` the cached ones, `cache_creation_input_tokens` 0 (the
 * OpenAI usage vLLM converts has no cache writes); the two cache fields are left out when the engine reports no
 * prompt token details (here: prefix caching off).
 */
function usage(plan: MessagesPlan, output: number): Record<string, number> {
  const cached = plan.chat.cachedTokens;
  if (!plan.caching) return { input_tokens: plan.chat.promptTokens, output_tokens: output };
  return { input_tokens: plan.chat.promptTokens - cached, output_tokens: output, cache_creation_input_tokens: 0, cache_read_input_tokens: cached };
}

/** vLLM's `messages_full_converter`, dumped with exclude_none. */
export function messagesUnaryBody(plan: MessagesPlan, id: string): string {
  const o = plan.chat.outputs[0]!;
  const content: unknown[] = [];
  if (o.toolCall) content.push({ type: 'tool_use', id: o.toolCall.id, name: o.toolCall.name, input: JSON.parse(o.text() || '{}') as unknown });
  else if (o.text()) content.push({ type: 'text', text: o.text() });
  return JSON.stringify({
    id,
    type: 'message',
    role: 'assistant',
    content,
    model: plan.chat.model,
    stop_reason: STOP_REASON[o.finishReason],
    usage: usage(plan, o.count),
  });
}

/** The Anthropic error envelope vLLM's router translates handler errors into. */
export function anthropicErrorJson(err: SimError): string {
  return JSON.stringify({ type: 'error', error: { type: err.type, message: err.message } });
}

function event(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

/**
 * vLLM's `message_stream_converter` over the chat stream (which it asks for with continuous usage):
 * message_start, content_block_start at the first token, one content_block_delta per token (text_delta, or
 * input_json_delta for a tool call), content_block_stop, message_delta with stop_reason and usage, message_stop.
 */
export class MessagesStream implements StreamBody {
  readonly steps: number;
  readonly finishReason: string;

  constructor(
    private readonly plan: MessagesPlan,
    private readonly id: string,
  ) {
    this.steps = plan.chat.steps;
    this.finishReason = plan.chat.outputs[0]?.finishReason ?? 'stop';
  }

  head(): string {
    const message = { id: this.id, content: [], model: this.plan.chat.model, stop_reason: null, stop_sequence: null, usage: usage(this.plan, 0) };
    return event('message_start', JSON.stringify({ type: 'message_start', message }));
  }

  step(k: number): string {
    const o = this.plan.chat.outputs[0]!;
    if (k >= o.count) return '';
    const call = o.toolCall;
    if (call) {
      if (k === 0) {
        return event(
          'content_block_start',
          JSON.stringify({ type: 'content_block_start', content_block: { type: 'tool_use', id: call.id, name: call.name, input: {} }, index: 0 }),
        );
      }
      return event(
        'content_block_delta',
        `{"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":${o.tokenJson(k)}},"index":0}`,
      );
    }
    const delta = event('content_block_delta', `{"type":"content_block_delta","delta":{"type":"text_delta","text":${o.tokenJson(k)}},"index":0}`);
    if (k > 0) return delta;
    return event('content_block_start', '{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}') + delta;
  }

  tokensIn(k: number): number {
    return k < (this.plan.chat.outputs[0]?.count ?? 0) ? 1 : 0;
  }

  tail(): string {
    const o = this.plan.chat.outputs[0]!;
    const stop = o.count > 0 ? event('content_block_stop', '{"type":"content_block_stop","index":0}') : '';
    const delta = { type: 'message_delta', delta: { stop_reason: STOP_REASON[o.finishReason] }, usage: usage(this.plan, o.count) };
    return stop + event('message_delta', JSON.stringify(delta)) + event('message_stop', '{"type":"message_stop"}');
  }

  /**
   * vLLM's converter cannot parse the chat error frame, so it sends an `error` event (type internal_error)
   * and ends the stream.
   */
  errorFrame(err: SimError): string {
    return event('error', JSON.stringify({ type: 'error', error: { type: 'internal_error', message: err.message } }));
  }
}
