import { createHash } from 'node:crypto';
import { type ModelPrice, type TiersFile, priceEntries } from '@spot/tiers';

/**
 * What a unit is billed as: a token of uncached prompt, of cached prompt (only when the price book prices it), of
 * completion, or a second of audio (speech-to-text metered by duration, only when the price book prices it).
 */
export type Direction = 'input' | 'cached_input' | 'output' | 'audio';

export const DIRECTIONS: readonly Direction[] = ['input', 'cached_input', 'output', 'audio'];

/** One billable price line: a model on a tier, one direction, at one unit price. */
export interface PriceLine {
  /** Stable across processes and Stripe accounts: model, tier, direction and unit price hashed. */
  lineKey: string;
  model: string;
  tier: string;
  direction: Direction;
  /** Cents per token (per second for `audio`) as Stripe takes it (`unit_amount_decimal`), e.g. 0.05 $/Mtok is "0.000005". */
  unitAmountDecimal: string;
  /** The Stripe meter's event name for this line. */
  eventName: string;
}

/** Thrown when a price cannot be expressed as Stripe's unit_amount_decimal (more than 12 decimal places). */
export class PriceNotBillableError extends Error {
  readonly code = 'price_not_billable';
}

const PLAIN = /^(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i;

/**
 * USD per 1M tokens to cents per token, exactly (decimal string arithmetic, no float rounding):
 * × 100 / 1e6 shifts the decimal point 4 places left. 0.05 → "0.000005", 2.5 → "0.00025", 0 → "0".
 */
export function centsPerToken(usdPerMtok: number): string {
  const match = PLAIN.exec(String(usdPerMtok));
  if (usdPerMtok < 0 || match === null) throw new PriceNotBillableError(`not a price: ${usdPerMtok}`);
  const digits = match[1] + (match[2] ?? '');
  const scale = (match[2] ?? '').length - Number(match[3] ?? 0) + 4;
  return formatScaled(BigInt(digits), scale);
}

/**
 * USD per minute of audio to cents per second, exactly when it is a decimal of at most 12 places (0.006 $/min is
 * "0.01"), else rounded half up to 12 places (1e-12 cents a second: under a cent in 300 000 years of audio).
 */
export function centsPerSecond(usdPerMinute: number): string {
  const match = PLAIN.exec(String(usdPerMinute));
  if (usdPerMinute < 0 || match === null) throw new PriceNotBillableError(`not a price: ${usdPerMinute}`);
  const digits = BigInt(match[1] + (match[2] ?? ''));
  // value = digits × 10^-scale USD/min = digits × 10^(2 - scale) / 60 cents/s; kept as units of 1e-12 cents
  const scale = (match[2] ?? '').length - Number(match[3] ?? 0);
  const shift = 14 - scale;
  const numerator = shift >= 0 ? digits * 10n ** BigInt(shift) : digits;
  const denominator = shift >= 0 ? 60n : 60n * 10n ** BigInt(-shift);
  let units = numerator / denominator;
  if ((numerator % denominator) * 2n >= denominator) units += 1n;
  return formatScaled(units, 12);
}

function formatScaled(units: bigint, scale: number): string {
  if (scale <= 0) return (units * 10n ** BigInt(-scale)).toString();
  const text = units.toString().padStart(scale + 1, '0');
  const whole = text.slice(0, text.length - scale);
  const fraction = text.slice(text.length - scale).replace(/0+$/, '');
  return fraction === '' ? whole : `${whole}.${fraction}`;
}

/** The price of one direction at a price book entry; undefined when the entry does not price it separately. */
export function unitPrice(price: ModelPrice, direction: Direction): number | undefined {
  switch (direction) {
    case 'input':
      return price.input_per_mtok;
    case 'cached_input':
      return price.cached_input_per_mtok;
    case 'output':
      return price.output_per_mtok;
    case 'audio':
      return price.audio_per_minute;
  }
}

/** The unit amount (Stripe's unit_amount_decimal) of one direction at a price book entry; undefined when unpriced. */
export function unitAmountOf(price: ModelPrice, direction: Direction): string | undefined {
  const usd = unitPrice(price, direction);
  if (usd === undefined) return undefined;
  return direction === 'audio' ? centsPerSecond(usd) : centsPerToken(usd);
}

/** The line for (model, tier, direction) at a unit price. */
export function priceLine(model: string, tier: string, direction: Direction, unitAmountDecimal: string): PriceLine {
  if (!/^\d+(\.\d{1,12})?$/.test(unitAmountDecimal)) {
    throw new PriceNotBillableError(`${model} on ${tier} (${direction}): ${unitAmountDecimal} cents a token has more than 12 decimal places`);
  }
  const hash = createHash('sha256').update(`${model}\n${tier}\n${direction}\n${unitAmountDecimal}`).digest('hex').slice(0, 20);
  return { lineKey: hash, model, tier, direction, unitAmountDecimal, eventName: `${direction === 'audio' ? 'spot_audio_seconds' : 'spot_tokens'}_${hash}` };
}

/** Every billable line of a price book, in file order (batch lines beside their tier's, see priceEntries). */
export function priceLines(file: TiersFile): PriceLine[] {
  const lines: PriceLine[] = [];
  for (const e of priceEntries(file)) {
    for (const direction of DIRECTIONS) {
      const unit = unitAmountOf(e.price, direction);
      if (unit !== undefined) lines.push(priceLine(e.model, e.tier, direction, unit));
    }
  }
  return lines;
}

/** Token totals (and audio seconds) of a rollup. */
export interface RollupTokens {
  promptTokens: bigint;
  completionTokens: bigint;
  cachedTokens: bigint;
  audioSeconds: bigint;
}

/**
 * A rollup's units per direction, by the price book's rule: cached tokens are split out only when they have a
 * price, audio seconds are billed only when they have one (without `audio_per_minute` they cost 0, as the gateway
 * priced them).
 */
export function tokensByDirection(t: RollupTokens, cachedPriced: boolean, audioPriced: boolean): Record<Direction, bigint> {
  const cached = cachedPriced ? (t.cachedTokens < t.promptTokens ? t.cachedTokens : t.promptTokens) : 0n;
  return { input: t.promptTokens - cached, cached_input: cached, output: t.completionTokens, audio: audioPriced ? t.audioSeconds : 0n };
}

/**
 * What `tokens` (seconds, on an audio line) cost on a line, in whole cents: tokens × unit_amount_decimal rounded to the nearest cent,
 * ties away from zero, per line (as Stripe rounds an invoice line; the invoice total is the sum of lines).
 */
export function lineAmountCents(tokens: bigint, unitAmountDecimal: string): bigint {
  const [whole, fraction = ''] = unitAmountDecimal.split('.');
  const units = BigInt(whole + fraction) * tokens;
  if (fraction.length === 0) return units;
  const divisor = 10n ** BigInt(fraction.length);
  let cents = units / divisor;
  if ((units % divisor) * 2n >= divisor) cents += 1n;
  return cents;
}
