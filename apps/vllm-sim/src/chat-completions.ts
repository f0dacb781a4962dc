import { completionTokens, type StreamBody, tokensInStep } from './generation-runner';
import { chatPromptTokenList } from './prefix-cache';
import { invalid, missing, optBool, optInt, streamFlags, usageJson, type Body, type StreamFlags } from './request-checks';
import { pythonJsonDumps, sampleFromSchema } from './schema-sample';
import { randomHex, resolveModel, type SimContext } from './sim-context';
import { SimError, validationError } from './sim-errors';
import type { ModelCounters } from './sim-metrics';
import { chatPromptTokens, contentWords, deliveredPieces, PieceOutput, splitPieces, WordOutput, words, type ChoiceOutput } from './sim-tokens';

/** A validated chat request and what each of its choices will generate. */
export interface ChatPlan {
  readonly model: string;
  readonly counters: ModelCounters;
  readonly flags: StreamFlags;
  readonly promptTokens: number;
  /** Prompt tokens served from the prefix cache. */
  readonly cachedTokens: number;
  readonly outputs: readonly ChoiceOutput[];
  /** Steps of generation: the longest choice. */
  readonly steps: number;
}

interface ToolDef {
  readonly name: string;
  readonly parameters: unknown;
}

/** Validates a chat request like vLLM (400 / 404 / context length) and plans its output. */
export function planChat(ctx: SimContext, body: Body): ChatPlan {
  const messages = body.messages;
  if (messages === undefined) throw missing('messages');
  if (!Array.isArray(messages)) throw invalid('messages', 'Input should be a valid list');
  for (const m of messages) {
    if (m === null || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string') {
      throw invalid('messages', 'Each message must be an object with a string `role`');
    }
  }
  const flags = streamFlags(body, 'ChatCompletionRequest');
  const n = optInt(body, 'n', 1) ?? 1;
  const maxTokens = optInt(body, 'max_completion_tokens', 1) ?? optInt(body, 'max_tokens', 1);
  const prefix = continuedPrefix(body, messages);
  const skip = prefix === undefined ? undefined : contentWords(prefix);
  const tools = parseTools(body);
  // What a continued generation would have been without its prefix: the choice of tool ignores the prefix.
  const tool = pickTool(body, tools, skip === undefined ? messages : messages.slice(0, -1));
  const counters = resolveModel(ctx, body);

  // A continued message is open: no end-of-turn after it and no generation prompt (its header stands in for it),
  // so the prompt is the earlier messages' plus the prefix's words: what an uninterrupted run had seen by then.
  const promptTokens = skip === undefined ? chatPromptTokens(messages, tools.length) : chatPromptTokens(messages.slice(0, -1), tools.length) + skip;
  checkContext(ctx.maxModelLen, promptTokens, maxTokens);
  const cap = maxTokens ?? ctx.maxModelLen - promptTokens;
  const cachedTokens = ctx.prefixCache?.admit(counters.model, chatPromptTokenList(messages, tools.map((t) => t.name))) ?? 0;

  const outputs: ChoiceOutput[] = [];
  const json = tool ? undefined : jsonContent(body, ctx.outputTokens);
  const pieces = tool ? splitPieces(pythonJsonDumps(sampleFromSchema(tool.parameters))) : json !== undefined ? splitPieces(json) : undefined;
  for (let i = 0; i < n; i++) {
    if (tool) outputs.push(new PieceOutput(pieces!, cap, { id: `chatcmpl-tool-${randomHex()}`, name: tool.name }));
    else if (pieces) outputs.push(new PieceOutput(pieces, cap, null, prefix === undefined ? 0 : deliveredPieces(pieces, contentText(prefix))));
    else outputs.push(new WordOutput(ctx.outputTokens, cap, 7 * i, skip ?? 0));
  }
  let steps = 0;
  for (const o of outputs) steps = Math.max(steps, o.count);
  return { model: counters.model, counters, flags, promptTokens, cachedTokens, outputs, steps };
}

/** The text of a message `content` (a string, or its text parts joined). */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let s = '';
  for (const p of content as unknown[]) {
    if (typeof p === 'string') s += p;
    else if (typeof (p as { text?: unknown } | null)?.text === 'string') s += (p as { text: string }).text;
  }
  return s;
}

/**
 * `continue_final_message`: the final assistant message's content is a prefix the answer continues (undefined
 * when the request does not continue). Plain text resumes after the prefix's words (each sim token is one
 * word); JSON content after the whole pieces the prefix holds. A tool call is not continued.
 * vLLM refuses it with `add_generation_prompt: true` given explicitly (its pydantic check), and with the
 * default `add_generation_prompt` (true) when rendering the HF chat template (transformers' check, a 400
 * BadRequestError): a client must send `add_generation_prompt: false`. Without a final assistant message an HF
 * template would continue whatever the last message is; the sim refuses it (400), since continuing an
 * assistant prefix is the only use the gateway has for it.
 */
function continuedPrefix(body: Body, messages: readonly unknown[]): unknown {
  const cont = optBool(body, 'continue_final_message');
  const agp = body.add_generation_prompt;
  if (agp !== undefined && agp !== null && typeof agp !== 'boolean') {
    throw invalid('add_generation_prompt', 'Input should be a valid boolean');
  }
  if (!cont) return undefined;
  if (agp === true) {
    throw validationError(
      '1 validation error for ChatCompletionRequest\n  Value error, Cannot set both `continue_final_message` and ' +
        '`add_generation_prompt` to True. [type=value_error]',
    );
  }
  if (agp !== false) {
    throw new SimError(
      400,
      'continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when you want ' +
        'the model to continue the final message, and add_generation_prompt when you want to add a header that will ' +
        'prompt it to start a new assistant message instead.',
    );
  }
  const last = messages.at(-1) as { role?: unknown; content?: unknown } | undefined;
  if (last?.role !== 'assistant') {
    throw new SimError(400, 'continue_final_message is set but the final message is not an assistant message to continue.');
  }
  return last.content ?? '';
}

/** vLLM's `_validate_input` length checks. */
export function checkContext(maxModelLen: number, promptTokens: number, maxTokens: number | undefined): void {
  if (promptTokens >= maxModelLen) {
    throw new SimError(
      400,
      `This model's maximum context length is ${maxModelLen} tokens. However, your request has ` +
        `${promptTokens} input tokens. Please reduce the length of the input messages.`,
    );
  }
  if (maxTokens !== undefined && promptTokens + maxTokens > maxModelLen) {
    throw new SimError(
      400,
      `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context ` +
        `length is ${maxModelLen} tokens and your request has ${promptTokens} input tokens ` +
        `(${maxTokens} > ${maxModelLen} - ${promptTokens}).`,
    );
  }
}

function parseTools(body: Body): ToolDef[] {
  const tools = body.tools;
  if (tools === undefined || tools === null) return [];
  if (!Array.isArray(tools)) throw invalid('tools', 'Input should be a valid list');
  return tools.map((t: unknown) => {
    const fn = (t as { function?: { name?: unknown; parameters?: unknown } } | null)?.function;
    if (!fn || typeof fn.name !== 'string') throw invalid('tools', 'Each tool needs `function.name`');
    return { name: fn.name, parameters: fn.parameters ?? { type: 'object', properties: {} } };
  });
}

/** The tool the answer calls, or undefined for a plain answer (no tools, or `tool_choice: "none"`). */
function pickTool(body: Body, tools: readonly ToolDef[], messages: readonly unknown[]): ToolDef | undefined {
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null && body.tools == null) {
    throw validationError(
      '1 validation error for ChatCompletionRequest\n  Value error, When using `tool_choice`, `tools` must be set. [type=value_error]',
    );
  }
  if (tools.length === 0 || choice === 'none') return undefined;
  if (choice === 'required') return tools[0];
  if (choice === undefined || choice === null || choice === 'auto') {
    // Like a model that has just read a tool result, answer in words: lets a tool loop end.
    const last = messages.at(-1) as { role?: unknown } | undefined;
    return last?.role === 'tool' ? undefined : tools[0];
  }
  const name = (choice as { function?: { name?: unknown } }).function?.name;
  if (typeof name !== 'string') throw invalid('tool_choice', 'Invalid tool_choice');
  const tool = tools.find((t) => t.name === name);
  if (!tool) {
    throw validationError(
      `1 validation error for ChatCompletionRequest\n  Value error, Tool '${name}' has not been passed in \`tools\`. [type=value_error]`,
    );
  }
  return tool;
}

/** JSON content for `response_format` json_object / json_schema, else undefined. */
function jsonContent(body: Body, outputTokens: number): string | undefined {
  const rf = body.response_format as { type?: unknown; json_schema?: { schema?: unknown } } | null | undefined;
  if (!rf || typeof rf !== 'object') return undefined;
  if (rf.type === 'json_object') return pythonJsonDumps({ result: words(Math.min(outputTokens, 8)) });
  if (rf.type === 'json_schema') {
    const schema = rf.json_schema?.schema;
    if (schema === undefined) throw invalid('response_format', 'json_schema.schema is required');
    return pythonJsonDumps(sampleFromSchema(schema));
  }
  return undefined;
}

/** The non-streamed `chat.completion`, field for field as vLLM's `model_dump()`. */
export function chatUnaryBody(plan: ChatPlan, id: string, created: number): string {
  let completion = 0;
  const choices = plan.outputs.map((o, index) => {
    completion += o.count;
    const call = o.toolCall;
    return {
      index,
      message: {
        role: 'assistant',
        content: call ? null : o.text(),
        refusal: null,
        annotations: null,
        audio: null,
        function_call: null,
        tool_calls: call ? [{ id: call.id, type: 'function', function: { name: call.name, arguments: o.text() } }] : [],
        reasoning_content: null,
      },
      logprobs: null,
      finish_reason: o.finishReason,
      stop_reason: null,
      token_ids: null,
    };
  });
  return JSON.stringify({
    id,
    object: 'chat.completion',
    created,
    model: plan.model,
    choices,
    service_tier: null,
    system_fingerprint: null,
    usage: JSON.parse(usageJson(plan.promptTokens, completion, true, plan.cachedTokens)) as unknown,
    prompt_logprobs: null,
    prompt_token_ids: null,
    kv_transfer_params: null,
  });
}

/**
 * vLLM's chat stream (`model_dump_json(exclude_unset=True)`): a role chunk per choice with the first
 * token, one chunk per token, the finish_reason on the last token's chunk, a `choices: []` usage chunk
 * only when asked, then `[DONE]`. Content chunks carry no `usage` key unless continuous usage is on.
 */
export class ChatStream implements StreamBody {
  readonly steps: number;
  readonly finishReason: string;
  private readonly pre: string;
  private readonly post: string;
  private readonly idJson: string;

  constructor(
    private readonly plan: ChatPlan,
    id: string,
    created: number,
  ) {
    this.steps = plan.steps;
    this.finishReason = plan.outputs[0]?.finishReason ?? 'stop';
    this.pre =
      `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},` +
      `"model":${JSON.stringify(plan.model)},"choices":[{"index":`;
    this.post = `,"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(plan.model)},"choices":[],"usage":`;
    this.idJson = JSON.stringify(id);
  }

  head(): string {
    let s = '';
    const usage = this.plan.flags.continuousUsage ? `,"usage":${usageJson(this.plan.promptTokens, 0, false)}` : '';
    for (let i = 0; i < this.plan.outputs.length; i++) {
      s += `${this.pre}${i},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usage}}\n\n`;
    }
    return s;
  }

  step(k: number): string {
    const outputs = this.plan.outputs;
    let s = '';
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i]!;
      if (k >= o.count) continue;
      let delta: string;
      const call = o.toolCall;
      if (call === null) delta = `{"content":${o.tokenJson(k)}}`;
      else if (k === 0) {
        delta =
          `{"tool_calls":[{"id":"${call.id}","type":"function","index":0,` +
          `"function":{"name":${JSON.stringify(call.name)},"arguments":""}}]}`;
      } else delta = `{"tool_calls":[{"index":0,"function":{"arguments":${o.tokenJson(k)}}}]}`;
      const end =
        k === o.count - 1
          ? `,"logprobs":null,"finish_reason":"${o.finishReason}","stop_reason":null}]`
          : ',"logprobs":null,"finish_reason":null}]';
      const usage = this.plan.flags.continuousUsage ? `,"usage":${usageJson(this.plan.promptTokens, k + 1, false)}` : '';
      s += `${this.pre}${i},"delta":${delta}${end}${usage}}\n\n`;
    }
    return s;
  }

  tokensIn(k: number): number {
    return tokensInStep(this.plan.outputs, k);
  }

  tail(): string {
    // A choice with nothing left to generate (a continued message that was complete) still finishes.
    let s = '';
    const outputs = this.plan.outputs;
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i]!;
      if (o.count === 0) s += `${this.pre}${i},"delta":{"content":""},"logprobs":null,"finish_reason":"${o.finishReason}","stop_reason":null}]}\n\n`;
    }
    if (!this.plan.flags.includeUsage) return `${s}data: [DONE]\n\n`;
    const completion = completionTokens(outputs);
    const usage = usageJson(this.plan.promptTokens, completion, false, this.plan.cachedTokens);
    return `${s}data: {"id":${this.idJson}${this.post}${usage}}\n\ndata: [DONE]\n\n`;
  }
}
