import { checkContext } from './chat-completions';
import { completionTokens, type StreamBody, tokensInStep } from './generation-runner';
import { invalid, missing, optInt, streamFlags, usageJson, type Body, type StreamFlags } from './request-checks';
import { textPromptTokenList } from './prefix-cache';
import { resolveModel, type SimContext } from './sim-context';
import type { ModelCounters } from './sim-metrics';
import { deliveredSuffix, textPromptTokens, WordOutput } from './sim-tokens';

/** vLLM's CompletionRequest default for `max_tokens`. */
const DEFAULT_MAX_TOKENS = 16;

export interface CompletionPlan {
  readonly model: string;
  readonly counters: ModelCounters;
  readonly flags: StreamFlags;
  /** Prompt tokens per prompt. */
  readonly promptTokens: readonly number[];
  /** Prompt tokens served from the prefix cache, over all prompts. */
  readonly cachedTokens: number;
  /** Choices in vLLM's order: prompt p, choice j at index p * n + j. */
  readonly outputs: readonly WordOutput[];
  /** Choices per prompt. */
  readonly n: number;
  readonly steps: number;
}

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x));
}

/** `prompt`: a string, strings, a token array, or token arrays (the shapes vLLM and OpenAI accept). */
export function parsePrompts(v: unknown, field: string): (string | number[])[] {
  if (v === undefined || v === null) throw missing(field);
  if (typeof v === 'string') return [v];
  if (isTokenArray(v)) return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' || isTokenArray(x))) {
    return v as (string | number[])[];
  }
  throw invalid(field, 'Input should be a string, a list of strings, or a list of token ids');
}

export function planCompletion(ctx: SimContext, body: Body): CompletionPlan {
  const prompts = parsePrompts(body.prompt, 'prompt');
  const flags = streamFlags(body, 'CompletionRequest');
  const n = optInt(body, 'n', 1) ?? 1;
  const maxTokens = optInt(body, 'max_tokens', 0) ?? DEFAULT_MAX_TOKENS;
  const counters = resolveModel(ctx, body);
  const promptTokens = prompts.map(textPromptTokens);
  const outputs: WordOutput[] = [];
  let steps = 0;
  let cachedTokens = 0;
  for (let p = 0; p < prompts.length; p++) {
    checkContext(ctx.maxModelLen, promptTokens[p]!, maxTokens);
    const prompt = prompts[p]!;
    if (ctx.prefixCache) cachedTokens += ctx.prefixCache.admit(counters.model, textPromptTokenList(prompt));
    for (let j = 0; j < n; j++) {
      // A prompt that ends with the start of the sequence is an interrupted generation re-sent: it continues.
      const skip = typeof prompt === 'string' ? deliveredSuffix(prompt, ctx.outputTokens, 7 * j) : 0;
      const o = new WordOutput(ctx.outputTokens, maxTokens, 7 * j, skip);
      steps = Math.max(steps, o.count);
      outputs.push(o);
    }
  }
  return { model: counters.model, counters, flags, promptTokens, cachedTokens, outputs, n, steps };
}

function totalPrompt(plan: CompletionPlan): number {
  let n = 0;
  for (const p of plan.promptTokens) n += p;
  return n;
}

/** The non-streamed `text_completion` as vLLM's `model_dump()`. */
export function completionUnaryBody(plan: CompletionPlan, id: string, created: number): string {
  let completion = 0;
  const choices = plan.outputs.map((o, index) => {
    completion += o.count;
    return {
      index,
      text: o.text(),
      logprobs: null,
      finish_reason: o.finishReason,
      stop_reason: null,
      prompt_logprobs: null,
      prompt_token_ids: null,
      token_ids: null,
    };
  });
  return JSON.stringify({
    id,
    object: 'text_completion',
    created,
    model: plan.model,
    choices,
    service_tier: null,
    system_fingerprint: null,
    usage: JSON.parse(usageJson(totalPrompt(plan), completion, true, plan.cachedTokens)) as unknown,
    kv_transfer_params: null,
  });
}

/**
 * vLLM's completions stream (`model_dump_json(exclude_unset=False)`): no role chunk, every chunk carries
 * `"usage":null` (or the running usage with continuous stats), a `choices: []` usage chunk when asked,
 * then `[DONE]`.
 */
export class CompletionStream implements StreamBody {
  readonly steps: number;
  readonly finishReason: string;
  private readonly pre: string;
  private readonly usageHead: string;

  constructor(
    private readonly plan: CompletionPlan,
    id: string,
    created: number,
  ) {
    this.steps = plan.steps;
    this.finishReason = plan.outputs[0]?.finishReason ?? 'stop';
    const head = `data: {"id":${JSON.stringify(id)},"object":"text_completion","created":${created},"model":${JSON.stringify(plan.model)},"choices":`;
    this.pre = `${head}[{"index":`;
    this.usageHead = `${head}[],"usage":`;
  }

  head(): string {
    return '';
  }

  step(k: number): string {
    const { outputs, n, flags, promptTokens } = this.plan;
    let s = '';
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i]!;
      if (k >= o.count) continue;
      const finish = k === o.count - 1 ? `"${o.finishReason}"` : 'null';
      const usage = flags.continuousUsage ? usageJson(promptTokens[Math.floor(i / n)]!, k + 1, true) : 'null';
      s +=
        `${this.pre}${i},"text":${o.tokenJson(k)},"logprobs":null,"finish_reason":${finish},"stop_reason":null,` +
        `"prompt_token_ids":null,"token_ids":null}],"usage":${usage}}\n\n`;
    }
    return s;
  }

  tokensIn(k: number): number {
    return tokensInStep(this.plan.outputs, k);
  }

  tail(): string {
    if (!this.plan.flags.includeUsage) return 'data: [DONE]\n\n';
    const completion = completionTokens(this.plan.outputs);
    return `${this.usageHead}${usageJson(totalPrompt(this.plan), completion, false, this.plan.cachedTokens)}}\n\ndata: [DONE]\n\n`;
  }
}
