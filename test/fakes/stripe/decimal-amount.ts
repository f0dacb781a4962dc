/**
 * Exact decimal arithmetic for money in the fake: a value is `units / 10^scale` with `units` a bigint,
 * so `0.1 + 0.2` is `0.3` and `1_000_000 * 0.0025` is `2500`, never a float artefact.
 */
export interface DecimalAmount {
  units: bigint;
  scale: number;
}

const DECIMAL = /^([+-])?(\d+)(?:\.(\d+))?$/;

/** True when `text` is a plain decimal number (`12`, `-3`, `0.0025`): no exponent, no spaces. */
export function isDecimalString(text: string): boolean {
  return DECIMAL.test(text);
}

/** Parses a plain decimal string; throws on anything else (callers validate with isDecimalString first). */
export function parseDecimal(text: string): DecimalAmount {
  const match = DECIMAL.exec(text);
  if (match === null) throw new Error(`not a decimal: ${text}`);
  const fraction = match[3] ?? '';
  const units = BigInt(match[2] + fraction);
  return { units: match[1] === '-' ? -units : units, scale: fraction.length };
}

function rescale(value: DecimalAmount, scale: number): bigint {
  return value.units * 10n ** BigInt(scale - value.scale);
}

export function addDecimal(a: DecimalAmount, b: DecimalAmount): DecimalAmount {
  const scale = Math.max(a.scale, b.scale);
  return { units: rescale(a, scale) + rescale(b, scale), scale };
}

export function mulDecimal(a: DecimalAmount, b: DecimalAmount): DecimalAmount {
  return { units: a.units * b.units, scale: a.scale + b.scale };
}

export const ZERO: DecimalAmount = { units: 0n, scale: 0 };

/** Rounds to an integer, to the nearest, ties away from zero (0.5 -> 1, -0.5 -> -1). */
export function roundHalfUp(value: DecimalAmount): bigint {
  if (value.scale === 0) return value.units;
  const divisor = 10n ** BigInt(value.scale);
  const negative = value.units < 0n;
  const magnitude = negative ? -value.units : value.units;
  let whole = magnitude / divisor;
  if ((magnitude % divisor) * 2n >= divisor) whole += 1n;
  return negative ? -whole : whole;
}

/** The shortest plain string for the value: trailing fractional zeros dropped (`2.50` -> `2.5`, `3.0` -> `3`). */
export function formatDecimal(value: DecimalAmount): string {
  const negative = value.units < 0n;
  const digits = (negative ? -value.units : value.units).toString().padStart(value.scale + 1, '0');
  const whole = digits.slice(0, digits.length - value.scale);
  const fraction = digits.slice(digits.length - value.scale).replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction.length > 0 ? `.${fraction}` : ''}`;
}
