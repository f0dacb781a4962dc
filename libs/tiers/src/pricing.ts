import type { ModelPrice } from './tiers-file';

/** Nano-USD (1e-9 USD) per token for a price in USD per 1M tokens: 0.05 $/M is 50 n$ a token. */
const NANOS_PER_TOKEN_PER_USD_PER_MTOK = 1_000;

/** Nano-USD per second of audio for a price in USD per minute. */
const NANOS_PER_SECOND_PER_USD_PER_MINUTE = 1e9 / 60;

/** Token counts of one request, as the engine reported them (cached tokens are part of the prompt). */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Seconds of audio the engine metered (speech-to-text billed by duration); absent: none. */
  audioSeconds?: number;
}

/**
 * What a request costs at a price book entry, in nano-USD, rounded to a whole nano-dollar. Cached prompt
 * tokens are charged at `cached_input_per_mtok` when the entry has one, else as ordinary input; audio seconds at
 * `audio_per_minute` / 60 each.
 */
export function costNanos(price: ModelPrice, t: TokenCounts): number {
  const cached = price.cached_input_per_mtok === undefined ? 0 : Math.min(t.cachedTokens, t.promptTokens);
  const usd =
    (t.promptTokens - cached) * price.input_per_mtok +
    cached * (price.cached_input_per_mtok ?? 0) +
    t.completionTokens * price.output_per_mtok;
  const audio = t.audioSeconds === undefined || t.audioSeconds === 0 ? 0 : t.audioSeconds * (price.audio_per_minute ?? 0) * NANOS_PER_SECOND_PER_USD_PER_MINUTE;
  return Math.round(usd * NANOS_PER_TOKEN_PER_USD_PER_MTOK + audio);
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

/**
 * The most a request may cost on any of `prices`: its prompt estimate and completion cap (and audio seconds cap)
 * at the dearest rates.
 */
export function worstCaseNanos(prices: readonly ModelPrice[], promptTokens: number, completionTokens: number, audioSeconds = 0): number {
  let input = 0;
  let output = 0;
  let audio = 0;
  for (const p of prices) {
    if (p.input_per_mtok > input) input = p.input_per_mtok;
    if (p.output_per_mtok > output) output = p.output_per_mtok;
    if ((p.audio_per_minute ?? 0) > audio) audio = p.audio_per_minute!;
  }
  return Math.ceil((promptTokens * input + completionTokens * output) * NANOS_PER_TOKEN_PER_USD_PER_MTOK + audioSeconds * audio * NANOS_PER_SECOND_PER_USD_PER_MINUTE);
}
