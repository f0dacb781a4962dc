import { invalid, missing, optInt, type Body } from './request-checks';
import { resolveModel, type SimContext } from './sim-context';
import { SimError } from './sim-errors';
import type { ModelCounters } from './sim-metrics';
import { countWords, wordsOf } from './sim-tokens';

/**
 * Cross-encoder scoring as vLLM serves it (vllm/entrypoints/openai/serving_score.py, protocol.py RerankRequest /
 * RerankResponse / ScoreRequest / ScoreResponse): POST /rerank, /v1/rerank, /v2/rerank (Jina/Cohere style) and
 * POST /score, /v1/score. A pair costs its words plus 2 (the [CLS] and [SEP] a cross-encoder adds); the score is
 * deterministic: the share of query words found in the document, nudged by a hash so ties differ.
 */
export interface ScoringPlan {
  readonly model: string;
  readonly counters: ModelCounters;
  readonly pairs: readonly (readonly [string, string])[];
  readonly promptTokens: number;
}

export function pairTokens(a: string, b: string): number {
  return countWords(a) + countWords(b) + 2;
}

/** A relevance in (0, 1): the same pair always scores the same. */
export function relevance(query: string, doc: string): number {
  const q = wordsOf(query.toLowerCase());
  const d = new Set(wordsOf(doc.toLowerCase()));
  let hit = 0;
  for (const w of q) if (d.has(w)) hit++;
  let h = 0x811c9dc5;
  const key = `${query}\u0000${doc}`;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  const jitter = ((h >>> 0) % 1000) / 1000;
  const overlap = q.length > 0 ? hit / q.length : 0;
  return Math.round((0.05 + 0.85 * overlap + 0.09 * jitter) * 1e6) / 1e6;
}

function docText(d: unknown): string {
  if (typeof d === 'string') return d;
  if (d !== null && typeof d === 'object' && typeof (d as { text?: unknown }).text === 'string') return (d as { text: string }).text;
  throw invalid('documents', 'Input should be a valid string or a text document');
}

function plan(ctx: SimContext, body: Body, pairs: [string, string][]): ScoringPlan {
  const counters = resolveModel(ctx, body);
  let promptTokens = 0;
  for (const [a, b] of pairs) {
    const n = pairTokens(a, b);
    if (n > ctx.maxModelLen) {
      throw new SimError(
        400,
        `This model's maximum context length is ${ctx.maxModelLen} tokens. However, you requested ${n} tokens in the ` +
          'input for scoring. Please reduce the length of the input.',
      );
    }
    promptTokens += n;
  }
  return { model: counters.model, counters, pairs, promptTokens };
}

export interface RerankPlan extends ScoringPlan {
  readonly topN: number;
}

export function planRerank(ctx: SimContext, body: Body): RerankPlan {
  const query = body.query;
  if (query === undefined || query === null) throw missing('query');
  if (typeof query !== 'string') throw invalid('query', 'Input should be a valid string');
  const docs = body.documents;
  if (docs === undefined || docs === null) throw missing('documents');
  if (!Array.isArray(docs)) throw invalid('documents', 'Input should be a valid list');
  const topN = optInt(body, 'top_n', 0) ?? 0;
  const p = plan(ctx, body, docs.map((d: unknown) => [query, docText(d)] as [string, string]));
  // vLLM: top_n 0 (the default) or more than the documents means all of them.
  return { ...p, topN: topN > 0 ? Math.min(topN, docs.length) : docs.length };
}

/**
 * vLLM's RerankResponse (`model_dump()`): results best first, each with its document (RerankDocument: `text`,
 * and `multi_modal` null for text); usage is RerankUsage (prompt_tokens, total_tokens; older vLLM had only
 * total_tokens).
 */
export function rerankBody(p: RerankPlan, id: string): string {
  const results = p.pairs
    .map(([q, d], index) => ({ index, document: { text: d, multi_modal: null }, relevance_score: relevance(q, d) }))
    .sort((a, b) => b.relevance_score - a.relevance_score || a.index - b.index)
    .slice(0, p.topN);
  return JSON.stringify({ id, model: p.model, usage: { prompt_tokens: p.promptTokens, total_tokens: p.promptTokens }, results });
}

function texts(body: Body, field: string): string[] {
  const v = body[field];
  if (v === undefined || v === null) throw missing(field);
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw invalid(field, 'Input should be a valid string or a list of strings');
}

/** `text_1` against `text_2`: 1:1, 1:N (the one text against each) or N:N (pairwise), as vLLM accepts. */
export function planScore(ctx: SimContext, body: Body): ScoringPlan {
  const a = texts(body, 'text_1');
  const b = texts(body, 'text_2');
  if (a.length === 0 || b.length === 0) throw new SimError(400, 'At least one text element must be given');
  if (a.length > 1 && a.length !== b.length) throw new SimError(400, 'Input lengths must be either 1:1, 1:N or N:N');
  return plan(ctx, body, b.map((t, i) => [a.length === 1 ? a[0]! : a[i]!, t] as [string, string]));
}

/** vLLM's ScoreResponse. */
export function scoreBody(p: ScoringPlan, id: string, created: number): string {
  const data = p.pairs.map(([q, d], index) => ({ index, object: 'score', score: relevance(q, d) }));
  return JSON.stringify({
    id,
    object: 'list',
    created,
    model: p.model,
    data,
    usage: { prompt_tokens: p.promptTokens, total_tokens: p.promptTokens, completion_tokens: 0, prompt_tokens_details: null },
  });
}
