import type { ModelApi, ModelPrice, TierSpec, TiersFile } from './tiers-file';

/**
 * The tier name batch usage is recorded and billed under: `<tier>:batch`. A tier name cannot hold `:` (see the
 * tiers file's schema), so it never meets a real tier, and rollups, price lines, Stripe meters and the bill keep
 * batch usage apart from interactive usage of the same tier without a column of their own.
 */
export function batchTierName(tier: string): string {
  return `${tier}:batch`;
}

/** The tier of a batch tier name, or null for an interactive one. */
export function tierOfBatch(name: string): string | null {
  return name.endsWith(':batch') ? name.slice(0, -':batch'.length) : null;
}

/** Whether a tier takes Batch API work: `batch:` in the tiers file, else spot tiers do. */
export function acceptsBatch(tier: Pick<TierSpec, 'batch' | 'kind'>): boolean {
  return tier.batch ?? tier.kind === 'spot';
}

/** The discount of a tier's batch prices where a model gives no explicit batch price. */
export const DEFAULT_BATCH_DISCOUNT = 0.5;

/** Rounds away float noise (0.1 * 0.5 = 0.05, not 0.05000000000000001), at a precision Stripe can bill. */
function tidy(usd: number): number {
  return Number(usd.toPrecision(12));
}

/**
 * A model's batch price on a tier: the explicit `batch_*_per_mtok` prices, else its prices less the tier's
 * `batch_discount` (default 0.5). A cached-input price exists only when the interactive one does or one is given.
 */
export function batchPrice(price: ModelPrice, discount: number = DEFAULT_BATCH_DISCOUNT): ModelPrice {
  const factor = 1 - discount;
  const cached = price.batch_cached_input_per_mtok ?? (price.cached_input_per_mtok === undefined ? undefined : tidy(price.cached_input_per_mtok * factor));
  const out: ModelPrice = {
    input_per_mtok: price.batch_input_per_mtok ?? tidy(price.input_per_mtok * factor),
    output_per_mtok: price.batch_output_per_mtok ?? tidy(price.output_per_mtok * factor),
  };
  if (cached !== undefined) out.cached_input_per_mtok = cached;
  return out;
}

/** The APIs a batch line may call (the Batch API's endpoints). */
const BATCH_APIS: readonly ModelApi[] = ['chat', 'completions', 'embeddings', 'responses'];

/** Whether a model can take batch lines: it names no APIs (all of them), or one of the Batch API's. */
export function servesBatchEndpoint(model: Pick<TierSpec['models'][number], 'apis'>): boolean {
  return model.apis === undefined || model.apis.some((api) => BATCH_APIS.includes(api));
}

/** One priced (model, tier) of the price book: the interactive entries and, for tiers that take batches, `<tier>:batch`. */
export interface PriceEntry {
  model: string;
  tier: string;
  price: ModelPrice;
}

/** Every price book entry of a tiers file, in file order: each model's interactive price, then its batch price. */
export function priceEntries(file: TiersFile): PriceEntry[] {
  const entries: PriceEntry[] = [];
  for (const tier of file.tiers) {
    for (const m of tier.models) {
      entries.push({ model: m.id, tier: tier.name, price: m.price });
      if (acceptsBatch(tier) && servesBatchEndpoint(m)) entries.push({ model: m.id, tier: batchTierName(tier.name), price: batchPrice(m.price, tier.batch_discount) });
    }
  }
  return entries;
}
