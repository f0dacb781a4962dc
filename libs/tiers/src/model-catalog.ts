import { acceptsBatch, batchPrice } from './batch-pricing';
import { MODEL_APIS, type ModelApi, type ModelPrice, noticeUrls, type TierSpec, type TiersFile, type WakeSpec } from './tiers-file';

/** One way to serve a model: a tier, the engine's name for the model, and its price there. */
export interface ModelRoute {
  readonly tier: string;
  readonly kind: TierSpec['kind'];
  readonly endpoints: readonly string[];
  readonly apiKey: string | null;
  readonly upstreamModel: string;
  readonly price: ModelPrice;
  /** Set when the tier may sleep. */
  readonly wake: WakeSpec | null;
  readonly fallbackWhileWaking: boolean;
  /** The tier takes Batch API work (see {@link acceptsBatch}). */
  readonly batch: boolean;
  /** The model's batch price on this tier (see {@link batchPrice}). */
  readonly batchPrice: ModelPrice;
}

/** A tier as declared: its kind, replicas and the models it serves. */
export interface TierView {
  readonly name: string;
  readonly kind: TierSpec['kind'];
  readonly endpoints: readonly string[];
  readonly models: readonly string[];
  readonly wake: WakeSpec | null;
  readonly idleSleepS: number | null;
  /** The tier takes Batch API work. */
  readonly batch: boolean;
  /** Where each replica's preemption notice is polled (`notice` in the tiers file), or null. */
  readonly notice: TierNotice | null;
}

/** A tier's `notice` block, resolved: one URL per endpoint, in the order of `endpoints`. */
export interface TierNotice {
  readonly urls: readonly string[];
  readonly intervalMs: number;
  readonly defaultDeadlineS: number;
}

/**
 * The models clients may name, each with its routes in order of preference: the file's `preference` for the
 * model first, then spot before on-demand, then file order.
 */
export class ModelCatalog {
  private readonly routes = new Map<string, readonly ModelRoute[]>();
  /** Per API, the routes of the models some tier restricts to a list of APIs (`apis:`); empty when none does. */
  private readonly restricted = new Map<string, ReadonlyMap<ModelApi, readonly ModelRoute[]>>();
  private readonly tierViews: readonly TierView[];
  /** Per route list, its batch routes (made once). */
  private readonly batchLists = new WeakMap<readonly ModelRoute[], readonly ModelRoute[]>();

  constructor(file: TiersFile) {
    this.tierViews = file.tiers.map((t) => ({
      name: t.name,
      kind: t.kind,
      endpoints: t.endpoints.map((e) => e.replace(/\/+$/, '')),
      models: t.models.map((m) => m.id),
      wake: t.wake ?? null,
      idleSleepS: t.idle_sleep_s ?? null,
      notice:
        t.notice === undefined
          ? null
          : { urls: noticeUrls(t.notice, t.endpoints), intervalMs: t.notice.interval_ms, defaultDeadlineS: t.notice.default_deadline_s },
      batch: acceptsBatch(t),
    }));
    const byModel = new Map<string, ModelRoute[]>();
    const apisOf = new Map<ModelRoute, ReadonlySet<ModelApi>>();
    for (const tier of file.tiers) {
      for (const m of tier.models) {
        const list = byModel.get(m.id) ?? [];
        const route: ModelRoute = {
          tier: tier.name,
          kind: tier.kind,
          endpoints: tier.endpoints.map((e) => e.replace(/\/+$/, '')),
          apiKey: tier.api_key ?? null,
          upstreamModel: m.upstream ?? m.id,
          price: m.price,
          wake: tier.wake ?? null,
          fallbackWhileWaking: tier.fallback_while_waking ?? true,
          batch: acceptsBatch(tier),
          batchPrice: batchPrice(m.price, tier.batch_discount),
        };
        list.push(route);
        if (m.apis !== undefined) apisOf.set(route, new Set(m.apis));
        byModel.set(m.id, list);
      }
    }
    for (const [id, list] of byModel) {
      const preferred = file.preference?.[id] ?? [];
      const rank = (r: ModelRoute) => {
        const i = preferred.indexOf(r.tier);
        return i >= 0 ? i : preferred.length + (r.kind === 'spot' ? 0 : 1);
      };
      // stable sort: listed tiers in their order, then spot before on-demand, file order otherwise
      list.sort((a, b) => rank(a) - rank(b));
      this.routes.set(id, Object.freeze(list));
      if (!list.some((r) => apisOf.has(r))) continue;
      const perApi = new Map<ModelApi, readonly ModelRoute[]>();
      for (const api of MODEL_APIS) {
        const serving = list.filter((r) => apisOf.get(r)?.has(api) ?? true);
        if (serving.length > 0) perApi.set(api, Object.freeze(serving));
      }
      this.restricted.set(id, perApi);
    }
  }

  /**
   * Routes for a model id, or undefined when no tier serves it. With `api`, only the routes whose tier serves
   * the model on that API (a model without `apis:` serves every API), undefined when none does.
   */
  routesFor(model: string, api?: ModelApi): readonly ModelRoute[] | undefined {
    // a tiers file that restricts no model costs one size check
    if (api === undefined || this.restricted.size === 0) return this.routes.get(model);
    const perApi = this.restricted.get(model);
    return perApi === undefined ? this.routes.get(model) : perApi.get(api);
  }

  /**
   * The routes of a model on the tiers that take batch work, in the model's order of preference (the
   * interactive order: a batch line is routed, woken and failed over like a request), or undefined when none.
   */
  batchRoutesFor(model: string, api?: ModelApi): readonly ModelRoute[] | undefined {
    const routes = this.routesFor(model, api);
    if (routes === undefined) return undefined;
    let batch = this.batchLists.get(routes);
    if (batch === undefined) {
      batch = Object.freeze(routes.filter((r) => r.batch));
      this.batchLists.set(routes, batch);
    }
    return batch.length > 0 ? batch : undefined;
  }

  /** The tiers, in file order. */
  tiers(): readonly TierView[] {
    return this.tierViews;
  }

  /** The tier named `name`, or undefined. */
  tier(name: string): TierView | undefined {
    return this.tierViews.find((t) => t.name === name);
  }

  /** Every model id, sorted. */
  modelIds(): string[] {
    return [...this.routes.keys()].sort();
  }

  /** Distinct engine endpoints across all tiers. */
  endpoints(): string[] {
    const all = new Set<string>();
    for (const list of this.routes.values()) for (const r of list) for (const e of r.endpoints) all.add(e);
    return [...all];
  }
}
