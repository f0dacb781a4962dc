import { planChat, type ChatPlan } from './chat-completions';
import type { StreamBody } from './generation-runner';
import { invalid, missing, optBool, optInt, type Body } from './request-checks';
import { randomHex, resolveModel, type SimContext } from './sim-context';
import { SimError, validationError } from './sim-errors';
import { chatPromptTokens } from './sim-tokens';

/**
 * POST /v1/responses as vLLM serves it (vllm/entrypoints/openai/serving_responses.py, protocol.py
 * ResponsesRequest / ResponsesResponse): the input becomes a chat conversation (instructions as the system
 * message, function_call items as assistant tool calls, function_call_output items as tool messages) and is
 * generated like a chat completion, so tokens, usage and the tool-call decision are the chat ones.
 */
export interface ResponsesPlan {
  readonly chat: ChatPlan;
  readonly stream: boolean;
  readonly instructions: string | null;
  readonly tools: readonly unknown[];
  readonly toolChoice: unknown;
  readonly maxOutputTokens: number | null;
  readonly metadata: unknown;
  readonly text: unknown;
  /**
   * The output item's ids in a full response (`msg_`/`fc_` + uuid, the call id from vLLM's make_tool_call_id)
   * and in the stream's item events (a bare uuid, `call_` + uuid): vLLM's streaming processor makes its own,
   * so the items of response.completed do not carry the ids the stream's events did.
   */
  readonly itemId: string;
  readonly streamItemId: string;
  readonly streamCallId: string;
}

type Msg = { role: string; content?: unknown; tool_calls?: unknown[]; tool_call_id?: string };

export function planResponses(ctx: SimContext, body: Body): ResponsesPlan {
  const input = body.input;
  if (input === undefined || input === null) throw missing('input');
  const stream = optBool(body, 'stream');
  // ResponsesRequest.store defaults to true.
  const store = body.store === undefined || body.store === null ? true : optBool(body, 'store');
  if (optBool(body, 'background') && !store) {
    throw validationError(
      '1 validation error for ResponsesRequest\n  Value error, background can only be used when `store` is true [type=value_error]',
    );
  }
  if (body.prompt !== undefined && body.prompt !== null) {
    throw validationError('1 validation error for ResponsesRequest\n  Value error, prompt template is not supported [type=value_error]');
  }
  const maxOutputTokens = optInt(body, 'max_output_tokens', 1);
  const instructions = body.instructions;
  if (instructions !== undefined && instructions !== null && typeof instructions !== 'string') {
    throw invalid('instructions', 'Input should be a valid string');
  }
  resolveModel(ctx, body);
  if (store && optBool(body, 'background')) {
    throw new SimError(
      400,
      'This vLLM engine does not support `store=True` and therefore does not support the background mode. To enable ' +
        'these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server.',
      'invalid_request_error',
      'background',
    );
  }
  // vLLM keeps responses only with VLLM_ENABLE_RESPONSES_API_STORE (the sim never does; `store` is ignored like
  // vLLM ignores it by default): any previous_response_id is unknown.
  const prev = body.previous_response_id;
  if (typeof prev === 'string') {
    throw new SimError(404, `Response with id '${prev}' not found.`, 'invalid_request_error', 'response_id');
  }

  const messages: Msg[] = [];
  if (typeof instructions === 'string') messages.push({ role: 'system', content: instructions });
  if (typeof input === 'string') messages.push({ role: 'user', content: input });
  else if (Array.isArray(input)) for (const item of input) messages.push(...inputItem(item));
  else throw invalid('input', 'Input should be a valid string or a valid list');

  const rawTools = body.tools;
  if (rawTools !== undefined && rawTools !== null && !Array.isArray(rawTools)) throw invalid('tools', 'Input should be a valid list');
  const tools = (rawTools ?? []) as unknown[];
  const fnTools = tools
    .filter((t): t is { type: string; name: string; parameters?: unknown; description?: unknown } => {
      const tt = t as { type?: unknown; name?: unknown } | null;
      return tt !== null && typeof tt === 'object' && tt.type === 'function' && typeof tt.name === 'string';
    })
    .map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));
  const choice = body.tool_choice;
  let chatChoice: unknown = choice;
  if (choice !== null && typeof choice === 'object') {
    const name = (choice as { name?: unknown }).name;
    chatChoice = { type: 'function', function: { name } };
  }
  const chatBody: Body = { model: body.model, messages };
  // vLLM's `should_continue_final_message` (vllm-project/vllm#32100): a last input item that is a message (or
  // reasoning) whose status is in_progress or incomplete is a partial answer, continued like chat's
  // `continue_final_message` (its chat template renders it open, with no generation prompt after it)
  if (Array.isArray(input) && partialLast(input)) {
    chatBody.continue_final_message = true;
    chatBody.add_generation_prompt = false;
  }
  if (fnTools.length > 0) chatBody.tools = fnTools;
  if (fnTools.length > 0 && chatChoice !== undefined && chatChoice !== null) chatBody.tool_choice = chatChoice;
  if (maxOutputTokens !== undefined) chatBody.max_tokens = maxOutputTokens;
  const format = (body.text as { format?: { type?: unknown; schema?: unknown } } | null | undefined)?.format;
  if (format?.type === 'json_schema') chatBody.response_format = { type: 'json_schema', json_schema: { schema: format.schema } };
  else if (format?.type === 'json_object') chatBody.response_format = { type: 'json_object' };
  // vLLM's Responses handler checks the prompt length with its own words (`_validate_generator_input`).
  const promptTokens = chatPromptTokens(messages, fnTools.length);
  if (promptTokens >= ctx.maxModelLen) {
    throw new SimError(
      400,
      `The engine prompt length ${promptTokens} exceeds the max_model_len ${ctx.maxModelLen}. Please reduce prompt.`,
      'invalid_request_error',
      'input',
    );
  }
  const chat = planChat(ctx, chatBody);
  return {
    chat,
    stream,
    instructions: typeof instructions === 'string' ? instructions : null,
    tools,
    toolChoice: choice ?? 'auto',
    maxOutputTokens: maxOutputTokens ?? null,
    metadata: body.metadata ?? null,
    text: body.text ?? null,
    itemId: chat.outputs[0]?.toolCall ? `fc_${randomHex()}` : `msg_${randomHex()}`,
    streamItemId: randomHex(),
    streamCallId: `call_${randomHex()}`,
  };
}

/** Whether the last input item is a partial message to continue (vLLM's `should_continue_final_message`). */
function partialLast(input: readonly unknown[]): boolean {
  const last = input.at(-1) as { type?: unknown; status?: unknown } | null | undefined;
  if (last === null || typeof last !== 'object') return false;
  const type = last.type ?? 'message';
  return (type === 'message' || type === 'reasoning') && (last.status === 'in_progress' || last.status === 'incomplete');
}

/** One `input` item as chat messages: a message, a function call (an assistant tool call), or its output. */
function inputItem(item: unknown): Msg[] {
  if (item === null || typeof item !== 'object') throw invalid('input', 'Each input item must be an object');
  const it = item as { type?: unknown; role?: unknown; content?: unknown; call_id?: unknown; name?: unknown; arguments?: unknown; output?: unknown };
  const type = it.type ?? (typeof it.role === 'string' ? 'message' : undefined);
  switch (type) {
    case 'message': {
      if (typeof it.role !== 'string') throw invalid('input', 'A message item needs a `role`');
      return [{ role: it.role === 'developer' ? 'system' : it.role, content: it.content }];
    }
    case 'function_call':
      return [
        {
          role: 'assistant',
          tool_calls: [{ id: String(it.call_id), type: 'function', function: { name: String(it.name), arguments: String(it.arguments ?? '') } }],
        },
      ];
    case 'function_call_output':
      return [{ role: 'tool', tool_call_id: String(it.call_id), content: typeof it.output === 'string' ? it.output : JSON.stringify(it.output) }];
    default:
      // reasoning and other items carry nothing the sim's prompt counts.
      return [];
  }
}

function outputText(plan: ResponsesPlan): string {
  return plan.chat.outputs[0]?.text() ?? '';
}

/** The output item: in a full response (`streamed` false), or as the stream's item events show it. */
function outputItem(plan: ResponsesPlan, status: 'in_progress' | 'completed', full: boolean, streamed: boolean): unknown {
  const o = plan.chat.outputs[0]!;
  const id = streamed ? plan.streamItemId : plan.itemId;
  if (o.toolCall) {
    const callId = streamed ? plan.streamCallId : o.toolCall.id;
    return { arguments: full ? o.text() : '', call_id: callId, name: o.toolCall.name, type: 'function_call', id, status };
  }
  return {
    id,
    content: full ? [{ annotations: [], text: outputText(plan), type: 'output_text', logprobs: null }] : [],
    role: 'assistant',
    status,
    type: 'message',
  };
}

/**
 * vLLM's ResponseUsage: OpenAI's fields plus its per-turn lists (filled by multi-turn tool contexts only; a
 * plain generation leaves them empty) and tool_output_tokens.
 */
function usage(plan: ResponsesPlan): unknown {
  const c = plan.chat;
  const out = c.outputs[0]?.count ?? 0;
  return {
    input_tokens: c.promptTokens,
    input_tokens_details: { cached_tokens: c.cachedTokens, input_tokens_per_turn: [], cached_tokens_per_turn: [] },
    output_tokens: out,
    output_tokens_details: { reasoning_tokens: 0, tool_output_tokens: 0, output_tokens_per_turn: [], tool_output_tokens_per_turn: [] },
    total_tokens: c.promptTokens + out,
  };
}

/** The Response object, field for field in vLLM's ResponsesResponse order. */
function responseObject(plan: ResponsesPlan, id: string, created: number, done: boolean): Record<string, unknown> {
  const length = plan.chat.outputs[0]?.finishReason === 'length';
  return {
    id,
    created_at: created,
    incomplete_details: done && length ? { reason: 'max_output_tokens' } : null,
    instructions: plan.instructions,
    metadata: plan.metadata,
    model: plan.chat.model,
    object: 'response',
    output: done ? [outputItem(plan, 'completed', true, false)] : [],
    parallel_tool_calls: true,
    temperature: 1.0,
    tool_choice: plan.toolChoice,
    tools: plan.tools,
    top_p: 1.0,
    background: false,
    max_output_tokens: plan.maxOutputTokens,
    max_tool_calls: null,
    previous_response_id: null,
    prompt: null,
    reasoning: null,
    service_tier: 'auto',
    status: done ? (length ? 'incomplete' : 'completed') : 'in_progress',
    text: plan.text,
    top_logprobs: null,
    truncation: 'disabled',
    usage: done ? usage(plan) : null,
    user: null,
  };
}

export function responsesUnaryBody(plan: ResponsesPlan, id: string, created: number): string {
  return JSON.stringify(responseObject(plan, id, created, true));
}

function event(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

/**
 * The Responses stream as vLLM writes it (`event: <type>\ndata: <model_dump_json>\n\n`, no `[DONE]`):
 * response.created, response.in_progress, output_item.added, content_part.added, one output_text.delta per
 * token, output_text.done, content_part.done, output_item.done, response.completed with usage. A function call
 * streams function_call_arguments.delta / .done instead of the content events. Every event has its
 * sequence_number, counting from 0.
 */
export class ResponsesStream implements StreamBody {
  readonly steps: number;
  readonly finishReason: string;
  private readonly base: number;
  private readonly itemJson: string;
  private readonly tool: boolean;

  constructor(
    private readonly plan: ResponsesPlan,
    readonly id: string,
    private readonly created: number,
  ) {
    const o = plan.chat.outputs[0]!;
    this.steps = plan.chat.steps;
    this.finishReason = o.finishReason;
    this.tool = o.toolCall !== null;
    // Events before the first delta, less the tool call's name token (which sends no delta).
    this.base = this.tool ? 2 : 4;
    this.itemJson = JSON.stringify(plan.streamItemId);
  }

  /** One SSE event of the Responses stream, its fields as vLLM's event model dumps them. */
  private ev(type: string, fields: Record<string, unknown>, seq: number): string {
    return event(type, JSON.stringify({ ...fields, sequence_number: seq, type }));
  }

  head(): string {
    const pending = responseObject(this.plan, this.id, this.created, false);
    const item = outputItem(this.plan, 'in_progress', false, true);
    let s =
      this.ev('response.created', { response: pending }, 0) +
      this.ev('response.in_progress', { response: pending }, 1) +
      this.ev('response.output_item.added', { item, output_index: 0 }, 2);
    if (!this.tool) {
      const part = { annotations: [], text: '', type: 'output_text', logprobs: [] };
      s += this.ev('response.content_part.added', { content_index: 0, item_id: this.plan.streamItemId, output_index: 0, part }, 3);
    }
    return s;
  }

  step(k: number): string {
    const o = this.plan.chat.outputs[0]!;
    if (k >= o.count) return '';
    const seq = this.base + k;
    // The per-token events are written by hand: they are the hot path of a long stream.
    if (this.tool) {
      if (k === 0) return '';
      return event(
        'response.function_call_arguments.delta',
        `{"delta":${o.tokenJson(k)},"item_id":${this.itemJson},"output_index":0,"sequence_number":${seq},` +
          '"type":"response.function_call_arguments.delta"}',
      );
    }
    return event(
      'response.output_text.delta',
      `{"content_index":0,"delta":${o.tokenJson(k)},"item_id":${this.itemJson},"logprobs":[],"output_index":0,` +
        `"sequence_number":${seq},"type":"response.output_text.delta"}`,
    );
  }

  tokensIn(k: number): number {
    return k < (this.plan.chat.outputs[0]?.count ?? 0) ? 1 : 0;
  }

  tail(): string {
    const o = this.plan.chat.outputs[0]!;
    let seq = this.base + o.count;
    const text = o.text();
    const itemId = this.plan.streamItemId;
    let s = '';
    if (this.tool) {
      const done = { arguments: text, item_id: itemId, name: o.toolCall!.name, output_index: 0 };
      s += this.ev('response.function_call_arguments.done', done, seq++);
    } else {
      const part = { annotations: [], text, type: 'output_text', logprobs: null };
      s +=
        this.ev('response.output_text.done', { content_index: 0, item_id: itemId, logprobs: [], output_index: 0, text }, seq++) +
        this.ev('response.content_part.done', { content_index: 0, item_id: itemId, output_index: 0, part }, seq++);
    }
    s += this.ev('response.output_item.done', { item: outputItem(this.plan, 'completed', true, true), output_index: 0 }, seq++);
    s += this.ev('response.completed', { response: responseObject(this.plan, this.id, this.created, true) }, seq);
    return s;
  }

  /** A mid-stream failure, as OpenAI's `error` event (the sequence number follows the last delta sent). */
  errorFrame(err: SimError, sent: number): string {
    const seq = this.base + Math.min(sent, this.plan.chat.outputs[0]?.count ?? 0);
    return event('error', JSON.stringify({ code: err.type, message: err.message, param: err.param, sequence_number: seq, type: 'error' }));
  }
}
