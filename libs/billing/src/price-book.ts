import { type ModelPrice, type TiersFile, priceEntries } from '@spot/tiers';
import { DIRECTIONS, type Direction, type PriceLine, priceLine, unitAmountOf } from './price-lines';

/** The price book (tiers.yaml) as billing reads it: the current line of each (model, tier, direction). */
export class PriceBook {
  private loaded: Map<string, ModelPrice> | null = null;

  /** `file` is read on first use (so a CLI command that never bills does not need the tiers file). */
  constructor(private readonly file: TiersFile | (() => TiersFile)) {}

  private get prices(): Map<string, ModelPrice> {
    if (this.loaded === null) {
      const file = typeof this.file === 'function' ? this.file() : this.file;
      const prices = new Map<string, ModelPrice>();
      // batch usage is priced under `<tier>:batch` (its own lines, see batchTierName)
      for (const e of priceEntries(file)) prices.set(`${e.model}\n${e.tier}`, e.price);
      this.loaded = prices;
    }
    return this.loaded;
  }

  price(model: string, tier: string): ModelPrice | undefined {
    return this.prices.get(`${model}\n${tier}`);
  }

  /** Whether cached prompt tokens are a line of their own for this model and tier. */
  cachedPriced(model: string, tier: string): boolean {
    return this.price(model, tier)?.cached_input_per_mtok !== undefined;
  }

  /** Whether audio seconds are a line of their own for this model and tier (`audio_per_minute`). */
  audioPriced(model: string, tier: string): boolean {
    return this.price(model, tier)?.audio_per_minute !== undefined;
  }

  /** The current line, or undefined when the price book no longer prices it. */
  line(model: string, tier: string, direction: Direction): PriceLine | undefined {
    const price = this.price(model, tier);
    const unit = price === undefined ? undefined : unitAmountOf(price, direction);
    return unit === undefined ? undefined : priceLine(model, tier, direction, unit);
  }

  /** Every current line. */
  lines(): PriceLine[] {
    const lines: PriceLine[] = [];
    for (const [key, price] of this.prices) {
      const [model, tier] = key.split('\n');
      for (const direction of DIRECTIONS) {
        const unit = unitAmountOf(price, direction);
        if (unit !== undefined) lines.push(priceLine(model, tier, direction, unit));
      }
    }
    return lines;
  }
}
