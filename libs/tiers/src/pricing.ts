import type { ModelPrice } from './tiers-file';

/** Nano-USD (1e-9 USD) per token for a price in USD per 1M tokens: 0.05 $/M is 50 n$ a token. */
const NANOS_PER_TOKEN_PER_USD_PER_MTOK = 1_000;

/** Token counts of one request, as the engine reported them (cached tokens are part of the prompt). */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

/**
 * What a request costs at a price book entry, in nano-USD, rounded to a whole nano-dollar. Cached prompt
 * tokens are charged at `cached_input_per_mtok` when the entry has one, else as ordinary input.
 */
export function costNanos(price: ModelPrice, t: TokenCounts): number {
  const cached = price.cached_input_per_mtok === undefined ? 0 : Math.min(t.cachedTokens, t.promptTokens);
  const usd =
    (t.promptTokens - cached) * price.input_per_mtok +
    cached * (price.cached_input_per_mtok ?? 0) +
    t.completionTokens * price.output_per_mtok;
  return Math.round(usd * NANOS_PER_TOKEN_PER_USD_PER_MTOK);
}

/**
 * What prompt caching saved at a price book entry, in nano-USD: the cached tokens (at most the prompt) at the
 * input price less the same tokens at `cached_input_per_mtok`; 0 when the entry does not price them apart (then
 * they were billed as ordinary input).
 */
export function cachedSavingsNanos(price: ModelPrice, t: Pick<TokenCounts, 'promptTokens' | 'cachedTokens'>): number {
  if (price.cached_input_per_mtok === undefined) return 0;
  const cached = Math.min(t.cachedTokens, t.promptTokens);
  return Math.round(cached * (price.input_per_mtok - price.cached_input_per_mtok) * NANOS_PER_TOKEN_PER_USD_PER_MTOK);
}

/** The most a request may cost on any of `prices`: its prompt estimate and completion cap at the dearest rates. */
export function worstCaseNanos(prices: readonly ModelPrice[], promptTokens: number, completionTokens: number): number {
  let input = 0;
  let output = 0;
  for (const p of prices) {
    if (p.input_per_mtok > input) input = p.input_per_mtok;
    if (p.output_per_mtok > output) output = p.output_per_mtok;
  }
  return Math.ceil((promptTokens * input + completionTokens * output) * NANOS_PER_TOKEN_PER_USD_PER_MTOK);
}
