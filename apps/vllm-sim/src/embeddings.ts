import { parsePrompts } from './completions';
import { invalid, type Body } from './request-checks';
import { randomHex, resolveModel, type SimContext } from './sim-context';
import { SimError } from './sim-errors';
import type { ModelCounters } from './sim-metrics';
import { textPromptTokens } from './sim-tokens';

export interface EmbeddingPlan {
  readonly model: string;
  readonly counters: ModelCounters;
  readonly inputs: readonly (string | number[])[];
  readonly base64: boolean;
  readonly promptTokens: number;
}

export function planEmbedding(ctx: SimContext, body: Body): EmbeddingPlan {
  const inputs = parsePrompts(body.input, 'input');
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw invalid('encoding_format', "Input should be 'float' or 'base64'");
  }
  const counters = resolveModel(ctx, body);
  const dims = body.dimensions;
  if (dims !== undefined && dims !== null && dims !== ctx.embeddingDim) {
    throw new SimError(
      400,
      `Model "${counters.model}" does not support matryoshka representation, changing output dimensions will lead to poor results.`,
    );
  }
  let promptTokens = 0;
  for (const input of inputs) promptTokens += textPromptTokens(input);
  return { model: counters.model, counters, inputs, base64: format === 'base64', promptTokens };
}

/** A unit-length vector seeded by the input: same input, same vector (float32 values). */
export function embed(input: string | readonly number[], dim: number): Float32Array {
  const text = typeof input === 'string' ? input : input.join(',');
  let seed = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 0x01000193);
  const v = new Float32Array(dim);
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const x = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
    v[i] = x;
    norm += x * x;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < dim; i++) v[i] = v[i]! * scale;
  return v;
}

function toBase64(v: Float32Array): string {
  const buf = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString('base64');
}

/** vLLM's EmbeddingResponse. */
export function embeddingBody(plan: EmbeddingPlan, dim: number, created: number): string {
  const data = plan.inputs.map((input, index) => {
    const v = embed(input, dim);
    return { index, object: 'embedding', embedding: plan.base64 ? toBase64(v) : Array.from(v) };
  });
  return JSON.stringify({
    id: `embd-${randomHex()}`,
    object: 'list',
    created,
    model: plan.model,
    data,
    usage: { prompt_tokens: plan.promptTokens, total_tokens: plan.promptTokens, completion_tokens: 0, prompt_tokens_details: null },
  });
}
