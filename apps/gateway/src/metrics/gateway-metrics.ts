import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The gateway's Prometheus registry. Children are cached per label set so the hot path only increments. */
@Injectable()
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'gateway_requests_total',
    help: 'Requests answered, by route and HTTP status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'gateway_request_duration_seconds',
    help: 'Time from request received to last byte sent, by route',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly ttfb = new Histogram({
    name: 'gateway_time_to_first_byte_seconds',
    help: 'Time from request received to the first body byte relayed from the engine, by route',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'gateway_upstream_errors_total',
    help: 'Engine failures, by tier and kind (connect, status, midstream, timeout)',
    labelNames: ['tier', 'kind'] as const,
    registers: [this.registry],
  });
  readonly ejections = new Counter({
    name: 'gateway_endpoint_ejections_total',
    help: 'Engine endpoints taken out of rotation (circuit opened), by tier and replica (index in the tier\'s endpoints)',
    labelNames: ['tier', 'replica'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'gateway_upstream_retries_total',
    help: 'Attempts moved to another replica or tier before any byte reached the client, by the tier that failed',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly responsesStored = new Counter({
    name: 'gateway_responses_stored_total',
    help: 'Responses kept for previous_response_id and retrieval (store: true), by outcome: stored, failed (the write failed), too_large (body over 1 MiB)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly poison = new Counter({
    name: 'gateway_poison_requests_total',
    help: 'Request bodies that failed engines after being sent to them: struck (one failure), detected (refused from now on), refused (answered 502 without touching an engine)',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });
  readonly tierWakes = new Counter({
    name: 'gateway_tier_wakes_total',
    help: 'Wakes of sleeping tiers seen by this gateway, by tier and outcome (awake, deadline, error)',
    labelNames: ['tier', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly tierWakeSeconds = new Histogram({
    name: 'gateway_tier_wake_seconds',
    help: 'How long the wakes this gateway ran took, by tier',
    labelNames: ['tier'] as const,
    buckets: [0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly tierState = new Gauge({
    name: 'gateway_tier_state',
    help: 'State of a tier that may sleep, as this gateway sees it: 1 awake, 0.5 waking, 0 asleep',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: 'gateway_tokens_total',
    help: 'Tokens billed, by model, tier and direction',
    labelNames: ['model', 'tier', 'direction'] as const,
    registers: [this.registry],
  });
  readonly keyLookups = new Counter({
    name: 'gateway_key_lookups_total',
    help: 'API key lookups that went to Postgres (concurrent misses of one key share a lookup)',
    registers: [this.registry],
  });
  readonly limiterErrors = new Counter({
    name: 'gateway_rate_limiter_errors_total',
    help: 'Limiter commands that Redis did not answer in time (limits failed open, budgets were decided locally)',
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({
    name: 'gateway_redis_up',
    help: 'Whether Redis answers this gateway (1) or not (0: commands time out or the connection is down)',
    registers: [this.registry],
  });
  readonly budgetLocal = new Counter({
    name: 'gateway_budget_local_decisions_total',
    help: 'Budget checks decided from this gateway\'s own view because Redis did not answer, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly inflight = new Gauge({
    name: 'gateway_inflight_requests',
    help: 'Requests being proxied now',
    registers: [this.registry],
  });

  readonly usagePending = new Gauge({
    name: 'gateway_usage_events_pending',
    help: 'Usage events held in memory, not yet in Postgres',
    registers: [this.registry],
  });
  readonly usageSpooled = new Gauge({
    name: 'gateway_usage_events_spooled',
    help: 'Usage events spilled to the disk spool, not yet in Postgres',
    registers: [this.registry],
  });
  readonly usageWritten = new Gauge({
    name: 'gateway_usage_events_written',
    help: 'Usage events this process has written to Postgres',
    registers: [this.registry],
  });
  readonly usageFailures = new Gauge({
    name: 'gateway_usage_flush_failures',
    help: 'Failed usage flushes (retried; nothing is dropped)',
    registers: [this.registry],
  });

  private readonly requestChildren = new Map<string, ReturnType<Counter<'route' | 'status'>['labels']>>();
  private readonly tokenChildren = new Map<string, [ReturnType<Counter<'model' | 'tier' | 'direction'>['labels']>, ReturnType<Counter<'model' | 'tier' | 'direction'>['labels']>]>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'gateway_' });
  }

  /** Copies the usage recorder's counters into gauges (at scrape time). */
  observeRecorder(stats: { pending: number; spooledEvents: number; written: number; failures: number }): void {
    this.usagePending.set(stats.pending);
    this.usageSpooled.set(stats.spooledEvents);
    this.usageWritten.set(stats.written);
    this.usageFailures.set(stats.failures);
  }

  /** The duration and time-to-first-byte histograms of a route, labelled once. */
  routeTimers(route: string): { duration: ReturnType<Histogram<'route'>['labels']>; ttfb: ReturnType<Histogram<'route'>['labels']> } {
    return { duration: this.duration.labels(route), ttfb: this.ttfb.labels(route) };
  }

  /** Counts billed tokens; children cached per model and tier. */
  countTokens(model: string, tier: string, input: number, output: number): void {
    const id = `${model}\u0000${tier}`;
    let pair = this.tokenChildren.get(id);
    if (pair === undefined) {
      pair = [this.tokens.labels(model, tier, 'input'), this.tokens.labels(model, tier, 'output')];
      this.tokenChildren.set(id, pair);
    }
    if (input > 0) pair[0].inc(input);
    if (output > 0) pair[1].inc(output);
  }

  countRequest(route: string, status: number): void {
    const id = `${route}:${status}`;
    let child = this.requestChildren.get(id);
    if (child === undefined) {
      child = this.requests.labels(route, String(status));
      this.requestChildren.set(id, child);
    }
    child.inc();
  }
}
