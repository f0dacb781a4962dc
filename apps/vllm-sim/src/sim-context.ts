import { randomUUID } from 'node:crypto';
import type { FaultController } from './fault-plan';
import type { PrefixCache } from './prefix-cache';
import { modelNotFound, type ErrorShape } from './sim-errors';
import type { ModelCounters, SimStats } from './sim-metrics';
import type { Body } from './request-checks';

/** Everything a handler needs, resolved once at start. */
export interface SimContext {
  readonly models: ReadonlyMap<string, ModelCounters>;
  readonly defaultModel: string;
  readonly ttftMs: number;
  readonly itlMs: number;
  readonly outputTokens: number;
  readonly maxModelLen: number;
  readonly embeddingDim: number;
  readonly errorShape: ErrorShape;
  readonly faults: FaultController;
  readonly stats: SimStats;
  /** Set when prefix caching is reported (SimOptions.prefixCaching). */
  readonly prefixCache: PrefixCache | undefined;
}

/** The served model a request names (vLLM serves its first name when `model` is absent). */
export function resolveModel(ctx: SimContext, body: Body): ModelCounters {
  const name = body.model;
  if (name === undefined || name === null || name === '') return ctx.models.get(ctx.defaultModel)!;
  const m = typeof name === 'string' ? ctx.models.get(name) : undefined;
  if (!m) throw modelNotFound(String(name));
  return m;
}

/** vLLM's request id: the client's X-Request-Id if given, else a random 32-hex id. */
export function requestId(header: string | string[] | undefined): string {
  return typeof header === 'string' && header !== '' ? header : randomHex();
}

export function randomHex(): string {
  return randomUUID().replace(/-/g, '');
}
